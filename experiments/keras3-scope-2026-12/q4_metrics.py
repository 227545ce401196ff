"""Q4: Keras 3 replacements for the controller's add_metric, checked in fit's history.

A toy controller layer (a logit vector zeta, soft gates sigmoid(zeta), budget = mean gate)
adds budget_weight * (budget - 0.5)^2 with add_loss and reports `budget` three ways:
  1 "tracked Mean": a keras.metrics.Mean attribute of the layer, update_state() in call();
    Model.metrics collects sublayer metrics, so fit logs it (mean over the epoch's batches,
    like add_metric(aggregation="mean")).
  2 "callback": a callback computes the value eagerly from the layer's variables at each
    epoch end and writes it into `logs` (History runs after user callbacks).
  3 "return from call": no metric at all, the value read after fit (control).
Run on any backend: KERAS_BACKEND=tensorflow|jax|torch.
"""

import sys

import keras
import numpy as np
from keras import ops

mode = sys.argv[1] if len(sys.argv) > 1 else "tracked"
keras.utils.set_random_seed(0)


class ToyController(keras.layers.Layer):
    def __init__(self, n=8, track=True, **kw):
        super().__init__(**kw)
        self.n = n
        self.budget_metric = keras.metrics.Mean(name="budget") if track else None

    def build(self, input_shape):
        self.zeta = self.add_weight(name="zeta", shape=(self.n,), initializer="ones", trainable=True)

    def budget(self):
        return ops.mean(ops.sigmoid(self.zeta))

    def call(self, x):
        b = self.budget()
        self.add_loss(30.0 * ops.square(b - 0.5))
        if self.budget_metric is not None:
            self.budget_metric.update_state(b)
        return x * ops.cast(ops.mean(ops.sigmoid(self.zeta)), x.dtype)


class LogBudget(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["budget"] = float(ops.convert_to_numpy(self.layer.budget()))


inp = keras.Input((4,))
ctl = ToyController(track=(mode == "tracked"), name="controller")
out = keras.layers.Dense(1)(ctl(inp))
model = keras.Model(inp, out)
model.compile(keras.optimizers.SGD(0.5), "mse")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
cbs = [LogBudget(ctl)] if mode == "callback" else []
h = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=cbs)
print(f"backend={keras.backend.backend()} mode={mode}")
print("  history keys:", sorted(h.history))
for k, v in sorted(h.history.items()):
    print(f"  {k}: {[round(float(a), 4) for a in v]}")
print("  model.metrics_names:", model.metrics_names)
print(
    "  budget after fit (eager):",
    round(float(ops.convert_to_numpy(ctl.budget())), 4),
    "| model.losses after fit:",
    len(model.losses),
)
print("  evaluate:", {k: round(float(v), 4) for k, v in model.evaluate(x, y, verbose=0, return_dict=True).items()})
