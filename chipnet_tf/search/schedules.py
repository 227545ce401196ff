"""Schedules of the gate parameters beta, gamma and the rounding steepness."""

import math

from chipnet_tf.compat import register

SQRT2 = math.sqrt(2.0)
UNITS = ("progress", "epoch")

# The constructor's arguments, in order: get_config and validation read this one list.
_FIELDS = (
    "beta_initial",
    "beta_increment",
    "beta_max",
    "gamma_initial",
    "gamma_factor",
    "gamma_max",
    "steepness_initial",
    "steepness_increment",
    "steepness_max",
    "unit",
    "span",
    "reference_steps",
    "budget_ramp",
)
_POSITIVE = ("beta_initial", "beta_max", "gamma_initial", "gamma_max", "steepness_initial", "steepness_max")


@register
class HeavisideSchedule:
    """Schedule of ChipNet's ``beta``, ``gamma`` and rounding steepness ``s``.

    The paper's ramps, written for ``t`` pruning epochs: ``beta = min(6, 1 + 0.02 t)``,
    ``gamma = min(256, 2 * sqrt(2)^t)`` and ``s = min(60, 10 + 5 t)``.

    What ``t`` is depends on ``unit``:

    * ``"epoch"`` (default, the paper's reference implementation): ``t`` is the number of
      completed epochs for beta and gamma (they change once per epoch) and the fractional
      epoch for the steepness; the logits are not scaled. The search then depends on how
      many steps an epoch has: at 21 steps per epoch (digits) it never leaves its start.
      :meth:`paper` returns this configuration.
    * ``"progress"``: ``t = span * step / total_steps``, where ``total_steps``
      is the whole search (``epochs * steps_per_epoch`` of the ``fit`` that trains it; the
      :class:`chipnet_tf.UpdatePruningStep` callback reads it). The search passes through
      the same ``span`` (20) paper epochs whether ``fit`` cuts it into 20 epochs of 21 steps
      or 4 epochs of 1,500; all three values move every step. The mask logits are scaled
      too: the gates see ``zeta * reference_steps / total_steps``, so that under Adam
      (which moves a logit by about its learning rate per step, whatever its gradient's
      scale) the logits travel as far in a short search as in one of ``reference_steps``
      optimizer steps. Without it a 420-step search moves the logits ~0.4 and its gates
      never leave their start; the reference CIFAR run had ~28,000 steps.
      :meth:`progress` returns this configuration.

    Example:
        >>> s = HeavisideSchedule()
        >>> s.beta(10), s.gamma(2), s.steepness(1.5)
        (1.2, 4.000000000000001, 17.5)
        >>> s.position(step=500, total_steps=1000, epoch=3, fraction=0.5)
        3.5
        >>> p = HeavisideSchedule.progress()
        >>> p.position(step=500, total_steps=1000), p.logit_scale(total_steps=1000)
        (10.0, 10.0)

    Args:
        beta_initial, beta_increment, beta_max: linear ramp of the logistic slope.
        gamma_initial, gamma_factor, gamma_max: geometric ramp of the Heaviside sharpness.
        steepness_initial, steepness_increment, steepness_max: linear ramp of the smooth
            rounding used to count kept channels.
        unit: ``"progress"`` or ``"epoch"``, see above.
        span: paper epochs that one whole search spans (``"progress"`` only).
        reference_steps: optimizer steps whose logit travel every search gets
            (``"progress"`` only); ``logit_scale = reference_steps / total_steps``.
        budget_ramp: fraction of the search over which the budget loss's target falls
            from 1 to the budget (``"progress"`` only; 0, the paper: the target is the budget
            from the first step). The target is ``budget + (1 - budget) * (1 - p)^3`` at
            ``p = progress / budget_ramp`` (tfmot's polynomial decay): the soft budget
            follows a target that moves slowly, so the task loss has the time to decide which
            channels go, instead of a budget gradient that owns every logit's sign at the
            start. :meth:`progress` uses 0.5.

    Raises:
        ValueError: a non-positive initial value, maximum, span or reference_steps, a
            negative increment, a gamma factor below 1, a maximum below its initial value, or
            an unknown unit.
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
        unit="epoch",
        span=20.0,
        reference_steps=10_000,
        budget_ramp=0.0,
    ):
        values = {key: value for key, value in locals().items() if key in _FIELDS}
        if unit not in UNITS:
            raise ValueError(f"HeavisideSchedule: unit must be one of {UNITS}. Received: unit={unit!r}")
        numbers = {k: v for k, v in values.items() if k != "unit"}
        for key, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"HeavisideSchedule: {key} must be a finite number. Received: {key}={value!r}")
        for key in _POSITIVE + ("span", "reference_steps"):
            if values[key] <= 0:
                raise ValueError(f"HeavisideSchedule: {key} must be > 0. Received: {key}={values[key]!r}")
        if not 0 <= values["budget_ramp"] <= 1:
            raise ValueError(f"HeavisideSchedule: budget_ramp must be in [0, 1]. Received: budget_ramp={budget_ramp!r}")
        if budget_ramp and unit != "progress":
            raise ValueError(
                "HeavisideSchedule: budget_ramp needs unit='progress' (the search's length in steps). "
                f"Received: budget_ramp={budget_ramp!r}, unit={unit!r}"
            )
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
        self.unit = unit
        for key, value in numbers.items():
            setattr(self, key, float(value))

    @classmethod
    def paper(cls):
        """The reference implementation's per-epoch schedule (no logit scaling)."""
        return cls(unit="epoch")

    @classmethod
    def progress(cls, **kwargs):
        """The paper's ramps over the whole search's progress, with scaled logits and the
        budget's target ramped down over the first half (``budget_ramp=0.5``)."""
        kwargs.setdefault("budget_ramp", 0.5)
        return cls(unit="progress", **kwargs)

    @staticmethod
    def _check_position(t):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
            raise ValueError(f"epoch must be a number >= 0. Received: epoch={t!r}")

    def _stepped(self, t):
        # The paper moves beta and gamma once per completed epoch; progress moves them always.
        self._check_position(t)
        return int(t) if self.unit == "epoch" else float(t)

    def beta(self, t):
        """Logistic slope at position ``t`` (completed epochs, or paper epochs of progress)."""
        return min(self.beta_max, self.beta_initial + self.beta_increment * self._stepped(t))

    def gamma(self, t):
        """Heaviside sharpness at position ``t``."""
        return min(self.gamma_max, self.gamma_initial * self.gamma_factor ** self._stepped(t))

    def steepness(self, t):
        """Rounding steepness at position ``t`` (fractional epochs in both units)."""
        self._check_position(t)
        return min(self.steepness_max, self.steepness_initial + self.steepness_increment * float(t))

    def position(self, step, total_steps, epoch=0, fraction=0.0):
        """The schedule position ``t`` after ``step`` optimizer steps.

        ``"progress"``: ``span * min(step, total_steps) / total_steps``. ``"epoch"``:
        ``epoch + fraction`` (completed epochs plus the fraction of the current one).
        """
        if self.unit == "epoch":
            return float(epoch) + float(fraction)
        if not total_steps or total_steps <= 0:
            raise ValueError(f"A progress schedule needs the search's total_steps > 0. Received: {total_steps!r}")
        return self.span * min(max(float(step), 0.0), float(total_steps)) / float(total_steps)

    def logit_scale(self, total_steps):
        """Factor on the mask logits: ``reference_steps / total_steps`` (1 for ``"epoch"``)."""
        if self.unit == "epoch":
            return 1.0
        if not total_steps or total_steps <= 0:
            raise ValueError(f"A progress schedule needs the search's total_steps > 0. Received: {total_steps!r}")
        return self.reference_steps / float(total_steps)

    def target(self, budget, progress):
        """The budget loss's target at ``progress`` (0..1 of the search), see ``budget_ramp``.

        Example:
            >>> HeavisideSchedule.progress().target(0.1, 0.25), HeavisideSchedule.paper().target(0.1, 0.0)
            (0.2125, 0.1)
        """
        if not self.budget_ramp:
            return budget
        p = min(max(float(progress) / self.budget_ramp, 0.0), 1.0)
        return budget + (1.0 - budget) * (1.0 - p) ** 3

    def minimum_steps(self):
        """Optimizer steps below which a search with this schedule is not expected to converge.

        ``"epoch"``: 2,000. The logits move about ``lr`` (1e-3) per Adam step; on
        Fashion-MNIST the per-epoch schedule brought the soft budget from 0.88 to 0.22 by step
        1,350 and to 0.135 by step 2,100, and with 420 steps (digits) never below 1.0.
        ``"progress"``: 300, for Adam's noise to average out; with scaled logits a
        460-step digits search reached its target (docs/design/search-defaults.md).
        """
        return 2000 if self.unit == "epoch" else 300

    def get_config(self):
        return {key: getattr(self, key) for key in _FIELDS}

    @classmethod
    def from_config(cls, config):
        # Configs saved before ``unit`` existed describe the per-epoch schedule.
        config = dict(config)
        config.setdefault("unit", "epoch")
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, HeavisideSchedule) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"HeavisideSchedule({args})"
