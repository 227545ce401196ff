"""Q4b: UpdatePruningStep-style callbacks assign layer variables between steps. Does the
next train step see the value, and can the callback read variables, on each backend?

A layer holds non-trainable `scale` (set by the callback at each batch begin to batch+1)
and `seen` (assigned scale inside call, and a step counter incremented inside call).
Usage: q4b_callback_assign.py [sync]   (sync: call model.jax_state_sync() on JAX first)
"""

import sys

import keras
import numpy as np
from keras import ops

SYNC = "sync" in sys.argv[1:]


class Probe(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="zeros", trainable=False)
        self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", trainable=False)
        self.step = self.add_weight(name="step", shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.seen.assign(self.scale)
            self.step.assign_add(1.0)
        return x * ops.cast(1.0 + 0.0 * self.scale, x.dtype)


class SetScale(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.rows = layer, []

    def _sync(self):
        if SYNC and hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()

    def on_train_batch_begin(self, batch, logs=None):
        self._sync()
        try:
            self.layer.scale.assign(float(batch + 1))
        except Exception as e:  # noqa: BLE001
            self.rows.append(("assign failed", type(e).__name__, str(e)[:80]))

    def on_train_batch_end(self, batch, logs=None):
        self._sync()
        try:
            self.rows.append(
                (batch + 1, float(ops.convert_to_numpy(self.layer.seen)), float(ops.convert_to_numpy(self.layer.step)))
            )
        except Exception as e:  # noqa: BLE001
            self.rows.append(("read failed", type(e).__name__, str(e)[:80]))


inp = keras.Input((4,))
probe = Probe(name="probe")
model = keras.Model(inp, keras.layers.Dense(1)(probe(inp)))
model.compile("sgd", "mse")
cb = SetScale(probe)
x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
print(f"backend={keras.backend.backend()} sync={SYNC}")
print("  (scale set at batch begin, seen by that step, step counter):", cb.rows)
print("  after fit: seen", float(ops.convert_to_numpy(probe.seen)), "step", float(ops.convert_to_numpy(probe.step)))
