"""Channels 0.02 minimal networks: how often does the grid's fine-tuning (unchanged) end
collapsed, and would keeping the epoch with the best *validation* accuracy rescue it?
Dense 1 and 0 of the grid, random and L1 masks, fine-tune seeds 20..25."""

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import methods as M
from benchmarks.latency.models import channel_scores
from chipnet_tf.compat import keras
from chipnet_tf.search.callbacks import recalibrate_batch_norm, restore_batch_norm

data = acc_data.load("fashion_mnist")
x, y = data["train"]


class PerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.val = []
        self.test = []
        self.recal = []
        self.loss = []

    def _acc(self, split):
        xs, ys = data[split]
        return float((self.model.predict(xs, batch_size=256, verbose=0).argmax(-1) == ys).mean())

    def on_epoch_end(self, epoch, logs=None):
        self.loss.append(round(logs["loss"], 3))
        self.val.append(self._acc("val"))
        self.test.append(self._acc("test"))
        saved = recalibrate_batch_norm(self.model, x, steps=10)
        self.recal.append(self._acc("test"))
        restore_batch_norm(saved)


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
        for s in range(20, 26):
            m = M.clone(small)
            m.compile(M._sgd(), M._loss())
            keras.utils.set_random_seed(s)
            cb = PerEpoch()
            m.fit(x, y, batch_size=M.BATCH, epochs=2, shuffle=True, verbose=0, callbacks=[M._step_decay(2), cb])
            best = int(np.argmax(cb.val))
            print(
                f"dense {dseed} {name:6s} seed {s}: test per epoch {cb.test[0]:.3f} {cb.test[1]:.3f}; "
                f"BN re-estimated {cb.recal[0]:.3f} {cb.recal[1]:.3f}; train loss {cb.loss}; "
                f"best-by-val {cb.test[best]:.3f}",
                flush=True,
            )
