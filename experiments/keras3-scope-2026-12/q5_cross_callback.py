"""Q5: can one callback class serve both Kerases? A tf_keras Callback passed to a Keras 3
fit (TF backend), and the reverse. Decides whether callbacks must be duplicated per Keras."""

import keras
import numpy as np
import tf_keras  # Keras 2, imported directly (TF_USE_LEGACY_KERAS not needed for this)


def make(cls):
    class Probe(cls):
        seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(batch)

        def on_epoch_end(self, epoch, logs=None):
            logs["probe"] = float(len(self.seen))

    return Probe()


x, y = np.ones((32, 3), "float32"), np.ones((32, 1), "float32")
for label, k, cb_mod in [
    ("Keras 3 fit + tf_keras Callback", keras, tf_keras),
    ("tf_keras fit + Keras 3 Callback", tf_keras, keras),
]:
    m = k.Sequential([k.Input((3,)), k.layers.Dense(1)])
    m.compile("sgd", "mse")
    cb = make(cb_mod.callbacks.Callback)
    try:
        h = m.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb])
        print(f"{label}: OK, batches seen {len(cb.seen)}, history keys {sorted(h.history)}")
    except Exception as e:  # noqa: BLE001
        print(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
