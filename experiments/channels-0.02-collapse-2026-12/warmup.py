"""Channels 0.02 (17 channels, 16 groups): does the grid's fine-tuning (SGD lr 0.05 from step 0)
kill the minimal networks, and does a linear warm-up or gradient clipping keep them alive?
Random masks of the grid (reproducible from seed), dense models of the grid; several fine-tune
seeds per variant. Prints test accuracy and final train loss (ln 10 = 2.303 = dead)."""

import sys

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import methods as M
from benchmarks.latency.models import channel_scores
from chipnet_tf.compat import keras

data = acc_data.load("fashion_mnist")
x, y = data["train"]
steps_per_epoch = int(np.ceil(len(x) / M.BATCH))
EPOCHS = 2


class Warm(keras.callbacks.Callback):
    def __init__(self, warm):
        super().__init__()
        self.warm = warm
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        epoch_lr = M.LR * (0.1 ** int(self.step >= 0.5 * EPOCHS * steps_per_epoch))
        f = min(1.0, (self.step + 1) / self.warm) if self.warm else 1.0
        self.model.optimizer.learning_rate.assign(epoch_lr * f)
        self.step += 1


def run(small, variant, seed):
    m = M.clone(small)
    opt = keras.optimizers.SGD(
        M.LR,
        momentum=0.9,
        nesterov=True,
        weight_decay=M.WEIGHT_DECAY,
        **({"clipnorm": 1.0} if variant == "clip" else {}),
    )
    m.compile(opt, M._loss(), metrics=["accuracy"])
    warm = {"base": 0, "clip": 0, "warm50": 50, "warm100": 100}[variant]
    keras.utils.set_random_seed(seed)
    h = m.fit(x, y, batch_size=M.BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=[Warm(warm)])
    return M.accuracy(m, data), h.history["loss"][-1]


variants = sys.argv[1].split(",") if len(sys.argv) > 1 else ["base", "warm50", "warm100", "clip"]
for dseed in (1, 0):
    dense = acc_data.model("fashion_mnist")
    dense.load_weights(f"/work/s9/fashion_dense/dense_{dseed}.weights.h5")
    analysis = chipnet_tf.analyze(dense, warn=False)
    for name, scores in (
        ("random", M.random_scores(analysis, 1000 * dseed + 20)),
        ("l1", channel_scores(dense, analysis, dseed)[0]),
    ):
        masks, _ = M.select_quietly(analysis.spec, scores, 0.02, "channels")
        small = chipnet_tf.strip_pruning(dense, masks=masks)
        for variant in variants:
            res = [run(small, variant, s) for s in (dseed, 10, 11, 12)]
            accs = [a for a, _ in res]
            dead = sum(loss > 2.29 for _, loss in res)
            print(
                f"dense {dseed} {name:6s} {variant:8s}: acc {' '.join(f'{a:.3f}' for a in accs)} "
                f"mean {np.mean(accs):.3f}; dead {dead}/{len(res)}",
                flush=True,
            )
