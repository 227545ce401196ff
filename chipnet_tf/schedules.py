"""Schedules of the gate parameters beta, gamma and the rounding steepness."""

import math

from chipnet_tf.compat import register

SQRT2 = math.sqrt(2.0)


@register
class HeavisideSchedule:
    """Per-epoch schedule of ChipNet's ``beta``, ``gamma`` and steepness ``s``.

    Paper defaults: ``beta = min(6, 1 + 0.02 e)``, ``gamma = min(256, 2 * sqrt(2)^e)`` and
    ``s = min(60, 10 + 5 t)`` where ``e`` is the number of completed pruning epochs and ``t``
    the (fractional) number of epochs trained so far: beta and gamma change once per epoch,
    the steepness is advanced every step.

    Example:
        >>> s = HeavisideSchedule()
        >>> s.beta(10), s.gamma(2), s.steepness(1.5)
        (1.2, 4.000000000000001, 17.5)

    Args:
        beta_initial, beta_increment, beta_max: linear ramp of the logistic slope.
        gamma_initial, gamma_factor, gamma_max: geometric ramp of the Heaviside sharpness.
        steepness_initial, steepness_increment, steepness_max: linear ramp (per epoch) of
            the smooth rounding used to count kept channels.

    Raises:
        ValueError: a non-positive initial value or maximum, a negative increment, a
            gamma factor below 1, or a maximum below its initial value.
    """

    def __init__(
        self,
        beta_initial=1.0,
        beta_increment=0.02,
        beta_max=6.0,
        gamma_initial=2.0,
        gamma_factor=SQRT2,
        gamma_max=256.0,
        steepness_initial=10.0,
        steepness_increment=5.0,
        steepness_max=60.0,
    ):
        values = dict(
            beta_initial=beta_initial,
            beta_increment=beta_increment,
            beta_max=beta_max,
            gamma_initial=gamma_initial,
            gamma_factor=gamma_factor,
            gamma_max=gamma_max,
            steepness_initial=steepness_initial,
            steepness_increment=steepness_increment,
            steepness_max=steepness_max,
        )
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"HeavisideSchedule: {key} must be a finite number. Received: {key}={value!r}")
        for key in ("beta_initial", "beta_max", "gamma_initial", "gamma_max", "steepness_initial", "steepness_max"):
            if values[key] <= 0:
                raise ValueError(f"HeavisideSchedule: {key} must be > 0. Received: {key}={values[key]!r}")
        for key in ("beta_increment", "steepness_increment"):
            if values[key] < 0:
                raise ValueError(f"HeavisideSchedule: {key} must be >= 0. Received: {key}={values[key]!r}")
        if gamma_factor < 1:
            raise ValueError(f"HeavisideSchedule: gamma_factor must be >= 1. Received: gamma_factor={gamma_factor!r}")
        for name in ("beta", "gamma", "steepness"):
            if values[f"{name}_max"] < values[f"{name}_initial"]:
                raise ValueError(
                    f"HeavisideSchedule: {name}_max must be >= {name}_initial. Received: "
                    f"{name}_initial={values[f'{name}_initial']!r}, {name}_max={values[f'{name}_max']!r}"
                )
        for key, value in values.items():
            setattr(self, key, float(value))

    @staticmethod
    def _check_epoch(epoch):
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not epoch >= 0:
            raise ValueError(f"epoch must be a number >= 0. Received: epoch={epoch!r}")

    def beta(self, epoch):
        """Logistic slope after ``epoch`` completed epochs."""
        self._check_epoch(epoch)
        return min(self.beta_max, self.beta_initial + self.beta_increment * int(epoch))

    def gamma(self, epoch):
        """Heaviside sharpness after ``epoch`` completed epochs."""
        self._check_epoch(epoch)
        return min(self.gamma_max, self.gamma_initial * self.gamma_factor ** int(epoch))

    def steepness(self, epoch):
        """Rounding steepness at fractional epoch ``epoch`` (advanced every step)."""
        self._check_epoch(epoch)
        return min(self.steepness_max, self.steepness_initial + self.steepness_increment * float(epoch))

    def get_config(self):
        return {
            key: getattr(self, key)
            for key in (
                "beta_initial",
                "beta_increment",
                "beta_max",
                "gamma_initial",
                "gamma_factor",
                "gamma_max",
                "steepness_initial",
                "steepness_increment",
                "steepness_max",
            )
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, HeavisideSchedule) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"HeavisideSchedule({args})"
