"""The end-to-end test's search (test CNN, digits, 20 epochs of 44 steps) with the library's
defaults and a few settings changed; prints V, crispness and accuracy per epoch.
Outputs: e2e.txt beside this script (and in experiments/search-gate-leak-probe-2026-11/).

    PYTHONPATH=. python experiments/search-allocation-probe-2026-11/e2e_probe.py \
        LR EPOCHS CRISPNESS_WEIGHT no channels 0.3
"""

import sys

import numpy as np
from sklearn.datasets import load_digits

import chipnet_tf
from chipnet_tf.compat import keras
from tests.models import pruning_optimizer, residual_cnn

data = load_digits()
x = (data.images[..., None] / 16.0).astype("float32")
y = data.target.astype("int64")
o = np.random.default_rng(0).permutation(len(x))
x, y = x[o][:1400], y[o][:1400]
keras.utils.set_random_seed(0)
model = residual_cnn()
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=6, batch_size=64, verbose=0)
lr = float(sys.argv[1])
epochs = int(sys.argv[2])
keras.utils.set_random_seed(0)
pruned = chipnet_tf.prune_low_budget(
    model, budget=float(sys.argv[6]), budget_type=sys.argv[5], crispness_weight=float(sys.argv[3])
)
chipnet_tf.prune.controllers(pruned)[0].surrogate_gradient = sys.argv[4] == "sur"
pruned.compile(pruning_optimizer(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
h = pruned.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()]).history
print(
    lr, [round(v, 3) for v in h["budget"]], [round(v, 4) for v in h["crispness"]], [round(v, 3) for v in h["accuracy"]]
)
