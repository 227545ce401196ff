"""Logistic, continuous Heaviside and smooth rounding: the ChipNet gate math.

All functions compute in float32 whatever the inputs are, so that gates stay exact under a
``mixed_float16`` policy. For gamma up to 256 and any finite logit they return finite
values and finite gradients: ``exp(-gamma * z_i)`` only ever sees ``gamma * z_i >= 0``, so
it can underflow to zero but never overflow.

The math is written once against the ``keras.ops`` names: the functions take ``ops``,
``keras.ops`` for a Keras 3 layer (any backend) or :mod:`chipnet_tf.tf_ops` (the
default) for tf_keras.

Example:
    >>> import numpy as np
    >>> from chipnet_tf.search.heaviside import continuous_heaviside
    >>> z = continuous_heaviside(np.array([0.0, 100.0]), beta=1.0, gamma=2.0)
    >>> np.round(z.numpy(), 4).tolist()
    [0.7001, 1.0]
"""

from chipnet_tf import tf_ops


def _f32(ops, x):
    return ops.cast(ops.convert_to_tensor(x), "float32")  # no-op on float32


def logistic(zeta, beta, ops=tf_ops):
    """``z_i = 1 / (1 + exp(-beta * zeta))`` in float32."""
    return ops.sigmoid(_f32(ops, beta) * _f32(ops, zeta))


def _heaviside(ops, zeta, beta, gamma):
    """The gate's value with its analytic gradient, through ``stop_gradient`` only.

    ``z + (dz * zeta - stop(dz * zeta))`` with ``z`` and ``dz`` stopped: the forward value
    is ``z`` exactly (``a - a`` is 0) and the gradient with respect to ``zeta`` is ``dz``, the
    analytic derivative, on every backend (no backend's custom-gradient API). Autodiff of
    the formula would not do: where the logistic rounds to 1 its slope ``y(1 - y)`` is 0,
    while the analytic one keeps ``z_i * sigmoid(-x)``.
    """
    x = beta * zeta
    z_i = ops.sigmoid(x)
    exp_g = ops.exp(-gamma)
    exp_gz = ops.exp(-gamma * z_i)
    z = 1.0 - exp_gz + z_i * exp_g
    # dz/dzeta = (gamma * exp(-gamma z_i) + exp(-gamma)) * beta * z_i * (1 - z_i), with
    # sigmoid'(x) written as z_i * sigmoid(-x) so that it never cancels to 0 - 0. beta and
    # gamma are schedule constants: no gradient flows to them.
    dz = ops.stop_gradient((gamma * exp_gz + exp_g) * beta * z_i * ops.sigmoid(-x))
    slope = dz * zeta
    return ops.stop_gradient(z) + (slope - ops.stop_gradient(slope))


def continuous_heaviside(zeta, beta, gamma, ops=tf_ops):
    """Continuous Heaviside gate ``z = 1 - exp(-gamma z_i) + z_i exp(-gamma)``.

    ``z_i = logistic(zeta, beta)``. Maps ``z_i = 0 -> 0`` and ``z_i = 1 -> 1`` and tends to a
    step function as gamma grows. The gradient is the analytic one (see ``_heaviside``).

    Args:
        zeta: mask logits, any shape.
        beta: logistic slope (scalar).
        gamma: Heaviside sharpness (scalar), 0 < gamma <= 256 in the paper's schedule.
        ops: ``keras.ops`` or :mod:`chipnet_tf.tf_ops` (the default).

    Returns:
        float32 tensor shaped like ``zeta`` with values in [0, 1].
    """
    return _heaviside(ops, _f32(ops, zeta), _f32(ops, beta), _f32(ops, gamma))


def crispness_loss(zeta, beta, gamma, ops=tf_ops):
    """``mean((z - z_i)^2)``: zero only when every gate is exactly 0 or 1."""
    z_i = logistic(zeta, beta, ops)
    z = continuous_heaviside(zeta, beta, gamma, ops)
    return ops.mean(ops.square(z - z_i))


def smooth_round(z, steepness, ops=tf_ops):
    """``r = 1 / (1 + exp(-s (z - 0.5)))``, a differentiable 0/1 rounding of a gate."""
    return ops.sigmoid(_f32(ops, steepness) * (_f32(ops, z) - 0.5))
