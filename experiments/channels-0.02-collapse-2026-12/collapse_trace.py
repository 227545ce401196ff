"""Where does a minimal network (channels 0.02) die in fine-tuning? Re-run a death (dense 1,
L1 masks, fine-tune seed 12) twice (reproducible?), log loss every 10 steps and, at the end,
the fraction of positions where each ReLU fires."""

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import methods as M
from benchmarks.latency.models import channel_scores
from chipnet_tf.compat import keras

data = acc_data.load("fashion_mnist")
x, y = data["train"]
dense = acc_data.model("fashion_mnist")
dense.load_weights("/work/s9/fashion_dense/dense_1.weights.h5")
analysis = chipnet_tf.analyze(dense, warn=False)
masks, _ = M.select_quietly(analysis.spec, channel_scores(dense, analysis, 1)[0], 0.02, "channels")
small = chipnet_tf.strip_pruning(dense, masks=masks)


class Log(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.step = 0
        self.losses = []
        self.prev = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        k = batch + 1
        cur = k * logs["loss"] - (k - 1) * self.prev if k > 1 else logs["loss"]
        self.prev = logs["loss"]
        if 170 <= self.step <= 260 and self.step % 3 == 0:
            d = self.model.layers[-1]
            self.losses.append(
                (
                    self.step,
                    round(cur, 2),
                    round(float(self.model.optimizer.learning_rate.numpy()), 4),
                    round(float(np.abs(d.kernel.numpy()).max()), 2),
                )
            )


def relus(m):
    return [
        lay
        for lay in m.layers
        if isinstance(lay, keras.layers.ReLU) or getattr(getattr(lay, "activation", None), "__name__", "") == "relu"
    ]


for rep in range(1):
    m = M.clone(small)
    m.compile(M._sgd(), M._loss(), metrics=["accuracy"])
    keras.utils.set_random_seed(12)
    log = Log()
    m.fit(x, y, batch_size=M.BATCH, epochs=2, shuffle=True, verbose=0, callbacks=[log, M._step_decay(2)])
    print("rep", rep, "acc", round(M.accuracy(m, data), 3), "loss/10 steps", log.losses, flush=True)
    rl = relus(m)
    outs = keras.Model(m.inputs, [lay.output for lay in rl]).predict(x[:2000], verbose=0)
    print("  fire:", [(lay.name, o.shape[-1], round(float((o > 0).mean()), 3)) for lay, o in zip(rl, outs)], flush=True)
    bns = [lay for lay in m.layers if isinstance(lay, keras.layers.BatchNormalization)]
    print("  last BN gamma/beta:", bns[-1].name, bns[-1].gamma.numpy(), bns[-1].beta.numpy(), flush=True)
