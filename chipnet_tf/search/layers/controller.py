"""ChipNetController: the mask logits, schedule state and penalties of a pruned model."""

import numpy as np

from chipnet_tf import tf_ops
from chipnet_tf.budgets import CostSpec, check_budget_type
from chipnet_tf.compat import keras, register, tf
from chipnet_tf.search import heaviside
from chipnet_tf.search.schedules import HeavisideSchedule
from chipnet_tf.validators import check_budget, check_gate_leak, check_weight

GATE_FORWARDS = ("soft", "hard")
GATE_LOGITS = ("absolute", "relative")

_NO_CALLBACK = (
    "chipnet_tf: training a pruned model needs the chipnet_tf.UpdatePruningStep() callback, which "
    "advances the Heaviside schedule: model.fit(..., callbacks=[chipnet_tf.UpdatePruningStep()]). "
    "In a custom training loop call callback.on_train_begin() once before the first step."
)


class ControllerLogic:
    """What :class:`ChipNetController` computes and keeps, for either Keras.

    A Keras' controller class mixes this into its ``Layer`` and sets ``_ops`` (the ops
    namespace its math runs in), ``_keras`` (its Keras) and the two hooks
    ``_check_started`` and ``_report``.
    """

    _ops = tf_ops
    _keras = keras
    _int_dtype = "int64"  # of the epoch/step counters
    _to_numpy = staticmethod(tf_ops.to_numpy)

    def to_numpy(self, value):
        """A tensor or variable of this controller as a numpy array (any backend)."""
        return np.asarray(self._to_numpy(value))

    def __init__(
        self,
        groups,
        cost_spec,
        budget,
        budget_type,
        budget_weight=30.0,
        crispness_weight=10.0,
        schedule=None,
        gate_forward="soft",
        gate_logits="absolute",
        gate_leak=0.0,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"  # mask math stays float32 under mixed precision
        kwargs.setdefault("name", "chipnet_controller")
        super().__init__(**kwargs)
        self.budget = check_budget(budget)
        self.budget_type = check_budget_type(budget_type)
        self.budget_weight = check_weight("budget_weight", budget_weight)
        self.crispness_weight = check_weight("crispness_weight", crispness_weight)
        if schedule is None:
            schedule = HeavisideSchedule()
        elif isinstance(schedule, dict):
            schedule = HeavisideSchedule.from_config(schedule.get("config", schedule))
        if not isinstance(schedule, HeavisideSchedule):
            raise TypeError(f"schedule must be a chipnet_tf.HeavisideSchedule or None. Received: {schedule!r}")
        self.schedule = schedule
        if gate_forward not in GATE_FORWARDS:
            raise ValueError(f"gate_forward must be one of {GATE_FORWARDS}. Received: gate_forward={gate_forward!r}")
        self.gate_forward = gate_forward
        self.gate_leak = check_gate_leak(gate_leak)
        if gate_logits not in GATE_LOGITS:
            raise ValueError(f"gate_logits must be one of {GATE_LOGITS}. Received: gate_logits={gate_logits!r}")
        self.gate_logits = gate_logits
        self.groups = [[str(n), int(s)] for n, s in groups]
        if not self.groups:
            raise ValueError("ChipNetController needs at least one prunable group. Received: groups=[]")
        self.spec = cost_spec if isinstance(cost_spec, CostSpec) else CostSpec.from_config(cost_spec)
        if [list(x) for x in zip(self.spec.group_names, self.spec.group_sizes.tolist())] != self.groups:
            raise ValueError("cost_spec groups do not match groups")
        self.sizes = [s for _, s in self.groups]
        self.total = int(sum(self.sizes))
        self._segment_ids = np.repeat(np.arange(len(self.sizes)), self.sizes)
        self.supports_masking = False

    @property
    def group_names(self):
        return [n for n, _ in self.groups]

    def build(self, input_shape):
        self.zeta = self.add_weight(
            name="zeta",
            shape=(self.total,),
            initializer=self._keras.initializers.RandomUniform(0.0, 0.01),
            trainable=True,
        )
        self.hard_mask = self.add_weight(name="hard_mask", shape=(self.total,), initializer="ones", trainable=False)
        self.use_hard = self.add_weight(name="use_hard", shape=(), initializer="zeros", trainable=False)
        init = self.schedule
        constant = self._keras.initializers.Constant
        self.beta = self.add_weight(name="beta", shape=(), initializer=constant(init.beta(0)), trainable=False)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer=constant(init.gamma(0)), trainable=False)
        self.steepness = self.add_weight(
            name="steepness", shape=(), initializer=constant(init.steepness(0)), trainable=False
        )
        self.pruning_epoch = self.add_weight(
            name="pruning_epoch", shape=(), dtype=self._int_dtype, initializer="zeros", trainable=False
        )
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype=self._int_dtype, initializer=constant(-1), trainable=False
        )
        # Progress schedules: the search's length in optimizer steps (0: not known yet) and
        # the factor on the logits that follows from it (HeavisideSchedule.logit_scale).
        # Per-epoch schedules have neither, so models saved before progress schedules existed
        # load unchanged.
        self.total_steps = self.logit_scale = None
        if self.schedule.unit == "progress":
            self.total_steps = self.add_weight(
                name="total_steps", shape=(), dtype=self._int_dtype, initializer="zeros", trainable=False
            )
            self.logit_scale = self.add_weight(name="logit_scale", shape=(), initializer="ones", trainable=False)
        # The budget loss's target, when the schedule ramps it (budget_ramp > 0).
        self.target = None
        if self.schedule.budget_ramp:
            self.target = self.add_weight(name="target", shape=(), initializer=constant(1.0), trainable=False)
        super().build(input_shape)

    # -- math, usable outside call() -------------------------------------------------
    def logits(self):
        """The logits the gates see: ``zeta`` times the schedule's logit scale, and with
        ``gate_logits="relative"`` minus the largest of the channel's group.

        Relative logits make a group's gates blind to a shift of all its logits, as a
        following BatchNormalization is blind to a common scale of its channels: the soft
        budget can then only be met by gates that fall *behind* their group's best channel,
        which the task loss sees, never by a group whose gates all shrink together (which
        the task loss does not see, so nothing resisted it and groups collapsed to one
        channel). The best channel of every group sits at the midpoint, so no group empties.
        """
        zeta = self._ops.convert_to_tensor(self.zeta)
        logits = zeta if self.logit_scale is None else zeta * self._ops.convert_to_tensor(self.logit_scale)
        if self.gate_logits == "relative":
            best = self._ops.segment_max(logits, self._segment_ids, num_segments=len(self.sizes))
            logits = logits - self._ops.take(best, self._segment_ids)
        return logits

    def scores(self):
        """``{group name: np.ndarray}``: the logits by group, what the hard cut ranks."""
        logits = self.to_numpy(self.logits()).astype(np.float64)
        return dict(zip(self.group_names, np.split(logits, np.cumsum(self.sizes)[:-1])))

    def soft_gates(self):
        """``(z, z_i)``: continuous Heaviside gates and their logistic, float32."""
        logits = self.logits()
        return (
            heaviside.continuous_heaviside(logits, self.beta, self.gamma, self._ops),
            heaviside.logistic(logits, self.beta, self._ops),
        )

    def soft_counts(self, z=None):
        """Soft kept-channel count per group, ``R_g = sum_j r_j``."""
        if z is None:
            z = self.soft_gates()[0]
        r = heaviside.smooth_round(z, self.steepness, self._ops)
        return self._ops.segment_sum(r, self._segment_ids, num_segments=len(self.sizes))

    def hard_counts(self):
        hard = self._ops.convert_to_tensor(self.hard_mask)
        return self._ops.segment_sum(hard, self._segment_ids, num_segments=len(self.sizes))

    def penalties(self):
        """``(budget fraction V, budget loss, crispness loss)`` at the current state."""
        return self._penalties(*self.soft_gates())

    def _penalties(self, z, z_i):
        ops = self._ops
        fraction = self.spec.ops_fraction(self.soft_counts(z), self.budget_type, ops)
        target = self.budget if self.target is None else ops.convert_to_tensor(self.target)
        budget_loss = ops.square(fraction - target)
        crisp = ops.square(z - z_i)
        if self.gate_logits == "relative":
            # Each group's best channel sits at the logistic's midpoint by construction: its
            # term is a constant (no gradient reaches it) and is left out of the mean.
            crisp = ops.where(z_i < 0.5, crisp, ops.zeros_like(crisp))
        crisp = ops.mean(crisp)
        if self.target is not None:
            # While the target ramps, no crispness: it pushes every gate below the midpoint
            # further down, and the gates it pushes far enough stop moving (the Heaviside's
            # slope underflows as gamma grows) before the task loss has said which channels
            # it needs. Crispness starts when the target reaches the budget.
            crisp = crisp * ops.cast(target <= self.budget + 1e-6, "float32")
        return fraction, budget_loss, crisp

    def _reported(self, fraction, crisp):
        """``(budget, crispness)`` as ``fit`` logs them: the soft values while searching, the
        hard masks' fraction (and no crispness) once they are fixed."""
        ops = self._ops
        hard = ops.convert_to_tensor(self.use_hard)
        hard_fraction = self.spec.ops_fraction(self.hard_counts(), self.budget_type, ops)
        return (1.0 - hard) * fraction + hard * hard_fraction, (1.0 - hard) * crisp

    def reported_values(self):
        """``(budget, crispness)`` now, as floats (what ``fit`` logs; computed outside a step)."""
        fraction, _, crisp = self.penalties()
        return tuple(float(self.to_numpy(v)) for v in self._reported(fraction, crisp))

    def call(self, inputs, training=None):
        if training is True:
            # Python-level check: fit() passes training=True, so this runs at trace time
            # only when the flag is known; the assert itself runs every step.
            self._check_started()
        ops = self._ops
        z, z_i = self.soft_gates()
        fraction, budget_loss, crisp = self._penalties(z, z_i)
        hard = ops.convert_to_tensor(self.use_hard)
        soft = 1.0 - hard
        self.add_loss(soft * (self.budget_weight * budget_loss + self.crispness_weight * crisp))
        self._report(*self._reported(fraction, crisp))
        if self.gate_forward == "hard":
            # Straight-through: the forward pass is the network with the channels whose
            # gate is below 1/2 removed, so a soft count is never met by a gate that merely
            # shrinks (a following BatchNormalization would undo the shrink); the gradient
            # of z flows as if the gate were soft.
            hard_z = ops.cast(z > 0.5, "float32")
            if self.gate_leak:
                # A closed channel passes gate_leak * x: a channel multiplied by exactly 0
                # feeds 0 into the ReLU after it, whose gradient there is 0, so the task
                # loss could never say that re-opening it would help; with the leak it can,
                # and the search re-allocates channels instead of freezing its first cuts.
                hard_z = hard_z + self.gate_leak * (1.0 - hard_z)
            z = z + ops.stop_gradient(hard_z - z)
        mask = soft * z + hard * ops.convert_to_tensor(self.hard_mask)
        if len(self.sizes) == 1:
            return [mask]
        return ops.split(mask, np.cumsum(self.sizes)[:-1].tolist())

    # -- schedule --------------------------------------------------------------------
    def set_schedule_state(self, epoch, fraction=0.0, step=None):
        """Sets beta, gamma and steepness for the search's current point.

        ``"epoch"`` schedules: beta/gamma for ``epoch`` completed epochs and the steepness at
        ``epoch + fraction``. ``"progress"`` schedules: all three at ``step`` (the optimizer
        steps so far; default: the controller's own count) of ``total_steps``.
        """
        self.pruning_epoch.assign(int(epoch))
        if step is not None:
            self.pruning_step.assign(int(step))
        total = 0 if self.total_steps is None else int(self.to_numpy(self.total_steps))
        if self.schedule.unit == "progress" and total <= 0:
            t = 0.0  # before the first fit: the schedule's start
        else:
            t = self.schedule.position(max(0, int(self.to_numpy(self.pruning_step))), total, epoch, fraction)
        self.set_schedule_values(t)

    def set_schedule_values(self, t):
        """Sets beta, gamma and steepness at schedule position ``t`` (see HeavisideSchedule)."""
        self.beta.assign(self.schedule.beta(t))
        self.gamma.assign(self.schedule.gamma(t))
        self.steepness.assign(self.schedule.steepness(t))
        if self.target is not None:
            self.target.assign(self.schedule.target(self.budget, t / self.schedule.span))

    def set_total_steps(self, total_steps):
        """Sets a progress search's length; rescales the logits so that no gate changes."""
        if self.schedule.unit != "progress":
            raise ValueError("set_total_steps applies to progress schedules only (HeavisideSchedule.progress()).")
        total_steps = int(total_steps)
        if total_steps <= 0:
            raise ValueError(f"total_steps must be a positive integer. Received: total_steps={total_steps!r}")
        old = float(self.to_numpy(self.logit_scale))
        new = float(self.schedule.logit_scale(total_steps))
        if new != old:
            self.zeta.assign(self.to_numpy(self.zeta) * np.float32(old / new))
            self.logit_scale.assign(new)
        self.total_steps.assign(total_steps)

    def search_config(self):
        """The search's settings (budget, penalties, schedule, gates), as in ``get_config``."""
        return {
            "budget": self.budget,
            "budget_type": self.budget_type,
            "budget_weight": self.budget_weight,
            "crispness_weight": self.crispness_weight,
            "schedule": self.schedule.get_config(),
            "gate_forward": self.gate_forward,
            "gate_logits": self.gate_logits,
            "gate_leak": self.gate_leak,
        }

    def get_config(self):
        config = {
            "groups": [list(g) for g in self.groups],
            "cost_spec": self.spec.get_config(),
            **self.search_config(),
        }
        base_config = super().get_config()
        base_config.pop("dtype", None)
        return {**base_config, **config}


@register
class ChipNetController(ControllerLogic, keras.layers.Layer):
    """Owns the gates of one pruned network: logits, schedule state and penalties.

    One controller per pruned model holds a mask logit ``zeta`` per prunable channel (all
    groups concatenated, initialised uniformly in [0, 0.01)), the schedule state (beta,
    gamma, steepness, epoch, step) and, after :func:`chipnet_tf.apply_masks`, fixed hard
    masks. Called on the model input (whose values it ignores) it returns one soft mask per
    group, which :class:`ChannelGate` layers multiply into the channels. Each call adds
    ``budget_weight * (V - target)^2 + crispness_weight * mean((z - z_i)^2)`` (the target is
    the budget, or the schedule's ramp towards it, see ``budget_ramp``) to the layer's
    losses (so to ``model.losses``) and reports ``budget`` (V, the soft fraction of the chosen
    resource) and ``crispness`` as metrics.

    Users do not build controllers by hand: :func:`chipnet_tf.prune_low_budget` does.

    Example:
        >>> from chipnet_tf.budgets import CostSpecBuilder
        >>> b = CostSpecBuilder(["g"], [4])
        >>> b.add("channels", "conv", 1, b.form(0, {0: 1}))
        >>> ctl = ChipNetController([["g", 4]], b.build().get_config(), 0.5, "channels")
        >>> [m.shape.as_list() for m in ctl(tf.zeros((1, 1)))]
        [[4]]

    Args:
        groups: ``[[name, size], ...]`` of the prunable channel groups.
        cost_spec: config of a :class:`chipnet_tf.budgets.CostSpec` for those groups.
        budget: target fraction of the dense resource, in (0, 1].
        budget_type: one of ``"channels"``, ``"volume"``, ``"params"``, ``"flops"``.
        budget_weight: weight of the budget loss (paper: 30).
        crispness_weight: weight of the crispness loss (paper: 10).
        schedule: a :class:`HeavisideSchedule` (or its config); None for the default.
        gate_forward: ``"soft"`` (the paper: channels are multiplied by the soft gate
            ``z``) or ``"hard"`` (they are multiplied by ``z > 0.5``, the channel kept or
            removed, and the gradient passes straight through to ``z``).
        gate_logits: ``"absolute"`` (the paper: a channel's gate is its logit's) or
            ``"relative"`` (each group's logits are measured from the group's largest, so
            its best channel's gate sits at the logistic's midpoint; see :meth:`logits`).
        gate_leak: with ``gate_forward="hard"``, the factor a closed channel is multiplied
            by in the forward pass instead of 0 (the paper and 0: removed). A small leak
            lets the task loss reach closed channels (see :meth:`call`); no effect on soft
            gates, the masks or the budget.

    The constructor's defaults are the paper's, so that models saved before the other
    options existed load unchanged; :func:`chipnet_tf.prune_low_budget` chooses its own.
    """

    def _check_started(self):
        tf.debugging.assert_non_negative(self.pruning_step, message=_NO_CALLBACK)

    def _report(self, budget, crispness):
        self.add_metric(budget, name="budget", aggregation="mean")
        self.add_metric(crispness, name="crispness", aggregation="mean")

    def compute_output_shape(self, input_shape):
        return [tf.TensorShape([s]) for s in self.sizes]


def controllers(model):
    """All controllers (:class:`ChipNetController`, or a Keras 3 model's) in ``model``
    (including inside wrappers)."""
    if isinstance(model, ControllerLogic):
        return [model]
    found = []
    for layer in _submodules(model):
        if isinstance(layer, ControllerLogic) and layer not in found:
            found.append(layer)
    return found


def require_controllers(model, purpose):
    """:func:`controllers` of ``model``; a ValueError naming ``purpose`` when it has none.

    Example:
        >>> require_controllers(keras.Sequential(name="dense"), "reading its masks")
        Traceback (most recent call last):
        ...
        ValueError: 'dense' is not pruned by chipnet_tf (it has no chipnet_tf gates): wrap it with \
chipnet_tf.prune_low_budget before reading its masks.
    """
    found = controllers(model)
    if not found:
        raise ValueError(
            f"{getattr(model, 'name', model)!r} is not pruned by chipnet_tf (it has no chipnet_tf gates): "
            f"wrap it with chipnet_tf.prune_low_budget before {purpose}."
        )
    return found


def _submodules(model):
    """Every layer inside ``model``: tf_keras' ``submodules``, Keras 3's recursive
    ``_flatten_layers`` (Keras 3 models have no ``submodules``)."""
    if hasattr(model, "submodules"):
        return model.submodules
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if flatten else ()
