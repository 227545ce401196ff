"""Q3 reference: today's tf.custom_gradient Heaviside (chipnet_tf, tf_keras process).
Writes outputs/q3_ref.npz with z and dz/dzeta at the grid used by q3_heaviside_k3.py."""

import os
import sys

import numpy as np

import chipnet_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
from chipnet_tf.compat import tf
from chipnet_tf.search.heaviside import continuous_heaviside

sys.path.insert(0, os.path.dirname(__file__))
from q3_grid import CASES, ZETA  # noqa: E402

out = {}
for i, (beta, gamma) in enumerate(CASES):
    zeta = tf.Variable(ZETA)
    with tf.GradientTape() as tape:
        z = continuous_heaviside(zeta, beta, gamma)
        s = tf.reduce_sum(z)
    out[f"z{i}"] = z.numpy()
    out[f"g{i}"] = tape.gradient(s, zeta).numpy()
np.savez(os.path.join(os.path.dirname(__file__), "outputs", "q3_ref.npz"), **out)
print("wrote q3_ref.npz:", len(CASES), "cases x", ZETA.size, "points")
