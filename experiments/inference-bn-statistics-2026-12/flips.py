"""Do gates open and close from step to step at the end of the search (so that BatchNorm's
moving statistics average networks that differ from the final one)?"""

import argparse
import json

import numpy as np
from repro import digits

import chipnet_tf
from chipnet_tf.compat import keras
from chipnet_tf.search.layers.controller import controllers
from tests.models import pruning_optimizer, residual_cnn


class OpenSets(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.sets = []

    def on_train_batch_end(self, batch, logs=None):
        ctl = controllers(self.model)[0]
        self.sets.append(ctl.soft_gates()[0].numpy() > 0.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    x, y, xt, yt = digits()
    keras.utils.set_random_seed(args.seed)
    dense = residual_cnn(16)
    dense.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    dense.fit(x, y, epochs=6, batch_size=64, verbose=0)
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.25, budget_type="flops")
    pruned.compile(pruning_optimizer(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rec = OpenSets()
    pruned.fit(x[:1260], y[:1260], batch_size=32, epochs=args.epochs, verbose=0,
               callbacks=[chipnet_tf.UpdatePruningStep(), rec])  # fmt: skip
    sets = np.array(rec.sets)  # steps x channels
    steps_per_epoch = len(sets) // args.epochs
    out = {"seed": args.seed, "steps": len(sets)}
    for window in (10, steps_per_epoch, 2 * steps_per_epoch):
        last = sets[-window:]
        changes = np.abs(np.diff(last.astype(int), axis=0)).sum(0)
        out[f"last_{window}_steps"] = {
            "channels_that_changed": int((changes > 0).sum()),
            "flips": int(changes.sum()),
            "open_min_max": [int(last.sum(1).min()), int(last.sum(1).max())],
            "final_open": int(last[-1].sum()),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
