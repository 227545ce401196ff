"""Q3: the ChipNet continuous Heaviside gate written with keras.ops only, three ways, on
whatever KERAS_BACKEND says; gradients checked against float64 finite differences and
today's tf.custom_gradient values (outputs/q3_ref.npz from q3_reference_chipnet.py).

  A  keras.ops.custom_gradient: a line-by-line port (grad(*args, upstream=None) signature,
     which TF, JAX and torch all accept).
  B  straight-through linear surrogate: z = sg(z) + sg(dz) * zeta - sg(sg(dz) * zeta);
     forward value exact (a - a == 0), gradient exactly sg(dz). Only ops.stop_gradient.
  C  plain analytic form, autodiff, beta/gamma under stop_gradient.
"""

import os
import sys

import keras
import numpy as np
from keras import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q3_grid import CASES, ZETA, dheaviside64, fd64, heaviside64  # noqa: E402

BACKEND = keras.backend.backend()


def _parts(zeta, beta, gamma):
    z_i = ops.sigmoid(beta * zeta)
    exp_g = ops.exp(-gamma)
    exp_gz = ops.exp(-gamma * z_i)
    z = 1.0 - exp_gz + z_i * exp_g
    dz = (gamma * exp_gz + exp_g) * beta * z_i * ops.sigmoid(-beta * zeta)
    return z, dz


def heaviside_a(zeta, beta, gamma):
    @ops.custom_gradient
    def f(zeta):
        z, dz = _parts(zeta, beta, gamma)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream * dz

        return z, grad

    return f(zeta)


def heaviside_b(zeta, beta, gamma):
    z, dz = _parts(zeta, ops.stop_gradient(beta), ops.stop_gradient(gamma))
    z, dz = ops.stop_gradient(z), ops.stop_gradient(dz)
    lin = dz * zeta
    return z + (lin - ops.stop_gradient(lin))


def heaviside_c(zeta, beta, gamma):
    beta, gamma = ops.stop_gradient(beta), ops.stop_gradient(gamma)
    z_i = ops.sigmoid(beta * zeta)
    return 1.0 - ops.exp(-gamma * z_i) + z_i * ops.exp(-gamma)


def value_and_grad(fn, zeta_np, beta, gamma):
    """(z, d sum(z) / d zeta) as numpy, with the backend's own autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        zeta = tf.Variable(zeta_np)
        with tf.GradientTape() as tape:
            z = fn(zeta, ops.convert_to_tensor(beta), ops.convert_to_tensor(gamma))
            s = ops.sum(z)
        return np.asarray(z), np.asarray(tape.gradient(s, zeta))
    if BACKEND == "jax":
        import jax

        def loss(zeta):
            z = fn(zeta, ops.convert_to_tensor(beta), ops.convert_to_tensor(gamma))
            return ops.sum(z), z

        (_, z), g = jax.value_and_grad(loss, has_aux=True)(ops.convert_to_tensor(zeta_np))
        return np.asarray(z), np.asarray(g)
    if BACKEND == "torch":
        import torch

        zeta = torch.tensor(zeta_np, requires_grad=True)
        z = fn(zeta, ops.convert_to_tensor(beta), ops.convert_to_tensor(gamma))
        z.sum().backward()
        return z.detach().cpu().numpy(), zeta.grad.cpu().numpy()
    raise SystemExit(f"no autodiff for backend {BACKEND}")


ref_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "outputs", "q3_ref.npz")
ref = np.load(ref_path) if os.path.exists(ref_path) else None
print(
    f"backend={BACKEND} keras={keras.__version__} points={ZETA.size} "
    f"(zeta in [-3,3] step 0.1 and +-8,+-20,+-100); reference npz: {ref is not None}"
)
np.seterr(over="ignore")
print(
    "max errors: |z - z64|, |g - analytic64| (abs), |g - FD64| (abs), rel to FD on |FD|>1e-4, |g - today's TF| abs and rel (where today's g != 0)"  # noqa: E501
)
worst = {}
for name, fn in [("A custom_gradient", heaviside_a), ("B straight-through", heaviside_b), ("C autodiff", heaviside_c)]:
    for i, (beta, gamma) in enumerate(CASES):
        z, g = value_and_grad(fn, ZETA, beta, gamma)
        z64 = heaviside64(ZETA.astype(np.float64), beta, gamma)
        a64 = dheaviside64(ZETA.astype(np.float64), beta, gamma)
        fd = fd64(ZETA, beta, gamma)
        big = np.abs(fd) > 1e-4
        rel = np.max(np.abs(g[big] - fd[big]) / np.abs(fd[big])) if big.any() else 0.0
        vs_today = np.max(np.abs(g - ref[f"g{i}"])) if ref is not None else float("nan")
        z_today = np.max(np.abs(z - ref[f"z{i}"])) if ref is not None else float("nan")
        # relative difference to today's gradient where it is nonzero (the saturated tails are
        # where plain autodiff of sigmoid, y * (1 - y), cancels and the custom grad does not)
        nz = ref[f"g{i}"] != 0 if ref is not None else np.zeros_like(g, bool)
        rel_today = np.max(np.abs(g[nz] - ref[f"g{i}"][nz]) / np.abs(ref[f"g{i}"][nz])) if nz.any() else float("nan")
        print(
            f"{name:19s} beta={beta:5.1f} gamma={gamma:6.1f}: z {np.max(np.abs(z - z64)):.1e}  "
            f"g-an {np.max(np.abs(g - a64)):.1e}  g-FD {np.max(np.abs(g - fd)):.1e}  rel {rel:.1e}  "
            f"vs today z {z_today:.1e} g {vs_today:.1e} rel {rel_today:.1e}"
        )
        worst[name] = max(worst.get(name, 0), rel)
print("worst relative error vs FD (|FD| > 1e-4):", {k: f"{v:.1e}" for k, v in worst.items()})
