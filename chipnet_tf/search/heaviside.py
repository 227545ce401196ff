"""Logistic, continuous Heaviside and smooth rounding: the ChipNet gate math.

All functions compute in float32 whatever the inputs are, so that gates stay exact under a
``mixed_float16`` policy. For gamma up to 256 and any finite logit they return finite
values and finite gradients: ``exp(-gamma * z_i)`` only ever sees ``gamma * z_i >= 0``, so
it can underflow to zero but never overflow.

Example:
    >>> import numpy as np
    >>> from chipnet_tf.search.heaviside import continuous_heaviside
    >>> z = continuous_heaviside(np.array([0.0, 100.0]), beta=1.0, gamma=2.0)
    >>> np.round(z.numpy(), 4).tolist()
    [0.7001, 1.0]
"""

from chipnet_tf.compat import tf


def _f32(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def logistic(zeta, beta):
    """``z_i = 1 / (1 + exp(-beta * zeta))`` in float32."""
    return tf.math.sigmoid(_f32(beta) * _f32(zeta))


@tf.custom_gradient
def _heaviside(zeta, beta, gamma):
    z_i = tf.math.sigmoid(beta * zeta)
    exp_g = tf.exp(-gamma)
    exp_gz = tf.exp(-gamma * z_i)
    z = 1.0 - exp_gz + z_i * exp_g

    def grad(upstream):
        # dz/dzeta = (gamma * exp(-gamma z_i) + exp(-gamma)) * beta * z_i * (1 - z_i)
        # sigmoid'(x) is written as z_i * sigmoid(-x) so that it never cancels to 0 - 0.
        dzi = beta * z_i * tf.math.sigmoid(-beta * zeta)
        dz = (gamma * exp_gz + exp_g) * dzi
        # beta and gamma are schedule constants: no gradient flows to them.
        return upstream * dz, tf.zeros_like(beta), tf.zeros_like(gamma)

    return z, grad


def continuous_heaviside(zeta, beta, gamma):
    """Continuous Heaviside gate ``z = 1 - exp(-gamma z_i) + z_i exp(-gamma)``.

    ``z_i = logistic(zeta, beta)``. Maps ``z_i = 0 -> 0`` and ``z_i = 1 -> 1`` and tends to a
    step function as gamma grows. The gradient is analytic (``tf.custom_gradient``).

    Args:
        zeta: mask logits, any shape.
        beta: logistic slope (scalar).
        gamma: Heaviside sharpness (scalar), 0 < gamma <= 256 in the paper's schedule.

    Returns:
        float32 tensor shaped like ``zeta`` with values in [0, 1].
    """
    return _heaviside(_f32(zeta), _f32(beta), _f32(gamma))


def crispness_loss(zeta, beta, gamma):
    """``mean((z - z_i)^2)``: zero only when every gate is exactly 0 or 1."""
    z_i = logistic(zeta, beta)
    z = continuous_heaviside(zeta, beta, gamma)
    return tf.reduce_mean(tf.square(z - z_i))


def smooth_round(z, steepness):
    """``r = 1 / (1 + exp(-s (z - 0.5)))``, a differentiable 0/1 rounding of a gate."""
    return tf.math.sigmoid(_f32(steepness) * (_f32(z) - 0.5))
