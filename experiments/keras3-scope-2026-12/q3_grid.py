"""The grid shared by the Q3 scripts (no Keras/TF import)."""

import numpy as np

ZETA = np.concatenate([np.linspace(-3.0, 3.0, 61), [-100.0, -20.0, -8.0, 8.0, 20.0, 100.0]]).astype("float32")
CASES = [(1.0, 2.0), (5.0, 2.0), (5.0, 20.0), (20.0, 256.0)]  # (beta, gamma)


def heaviside64(zeta, beta, gamma):
    zi = 1.0 / (1.0 + np.exp(-beta * zeta))
    return 1.0 - np.exp(-gamma * zi) + zi * np.exp(-gamma)


def dheaviside64(zeta, beta, gamma):
    """The analytic derivative in float64 (what tf.custom_gradient's grad computes)."""
    zi = 1.0 / (1.0 + np.exp(-beta * zeta))
    return (gamma * np.exp(-gamma * zi) + np.exp(-gamma)) * beta * zi / (1.0 + np.exp(beta * zeta))


def fd64(zeta, beta, gamma, h=1e-6):
    z = zeta.astype(np.float64)
    return (heaviside64(z + h, beta, gamma) - heaviside64(z - h, beta, gamma)) / (2 * h)
