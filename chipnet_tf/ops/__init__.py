"""Differentiable gate math (no Keras state)."""

from chipnet_tf.ops.heaviside import (
    continuous_heaviside,
    crispness_loss,
    logistic,
    smooth_round,
)

__all__ = ["continuous_heaviside", "crispness_loss", "logistic", "smooth_round"]
