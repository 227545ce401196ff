"""PruneLowBudget: a single-layer ChipNet wrapper for custom (subclassed) model code."""

from chipnet_tf.budgets import CostSpecBuilder, check_budget_type
from chipnet_tf.compat import keras, register, tf
from chipnet_tf.search.layers.controller import ChipNetController
from chipnet_tf.search.schedules import HeavisideSchedule
from chipnet_tf.validators import check_budget, check_weight

WRAPPABLE = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Dense,
)


@register
class PruneLowBudget(keras.layers.Wrapper):
    """Gates the output channels of one Conv/Dense layer with ChipNet masks.

    For models whose graph cannot be analysed (subclassed models): each wrapped layer gets
    its own gates and its own penalties, and meets the budget on its own, which meets a
    channels or volume budget for the whole network too. Params/flops budgets couple
    layers, so they need :func:`chipnet_tf.prune_low_budget` on a functional model.

    Example:
        >>> conv = PruneLowBudget(keras.layers.Conv2D(8, 3), budget=0.5)
        >>> conv(tf.zeros((1, 6, 6, 3))).shape.as_list()
        [1, 4, 4, 8]
        >>> len(conv.losses)
        1

    Args:
        layer: a ``Conv1D``/``Conv2D``/``Conv3D`` (or transpose) or ``Dense`` layer.
        budget: fraction of the layer's channels to keep, in (0, 1].
        budget_type: ``"channels"`` or ``"volume"`` (identical for one layer).
        budget_weight, crispness_weight, schedule, gate_forward, gate_logits, gate_leak: as in
            :func:`chipnet_tf.prune_low_budget` (the defaults here are the paper's, so that
            configs saved before the options existed load unchanged).

    Raises:
        TypeError: ``layer`` is not a supported layer.
        ValueError: a bad budget, budget type or weight.
    """

    def __init__(
        self,
        layer,
        budget=0.5,
        budget_type="channels",
        budget_weight=30.0,
        crispness_weight=10.0,
        schedule=None,
        gate_forward="soft",
        gate_logits="absolute",
        gate_leak=0.0,
        **kwargs,
    ):
        if not isinstance(layer, WRAPPABLE):
            raise TypeError(
                "PruneLowBudget wraps Conv1D/2D/3D, their transposes and Dense layers. "
                f"Received: {type(layer).__name__} {getattr(layer, 'name', layer)!r}"
            )
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            raise ValueError(f"PruneLowBudget supports channels_last layers only. Received: {layer.name!r}")
        check_budget_type(budget_type)
        if budget_type not in ("channels", "volume"):
            raise ValueError(
                f"A single wrapped layer supports budget_type 'channels' or 'volume'. Received: "
                f"budget_type={budget_type!r}. Params and flops budgets couple layers: use "
                "chipnet_tf.prune_low_budget on a functional or Sequential model."
            )
        kwargs.setdefault("name", f"prune_low_budget_{layer.name}")
        super().__init__(layer, **kwargs)
        self.budget = check_budget(budget)
        self.budget_type = budget_type
        self.budget_weight = check_weight("budget_weight", budget_weight)
        self.crispness_weight = check_weight("crispness_weight", crispness_weight)
        if isinstance(schedule, dict):
            schedule = HeavisideSchedule.from_config(schedule)
        self.schedule = schedule or HeavisideSchedule()
        self.gate_forward = gate_forward
        self.gate_logits = gate_logits
        self.gate_leak = gate_leak

        channels = int(layer.units if isinstance(layer, keras.layers.Dense) else layer.filters)
        builder = CostSpecBuilder([self.name], [channels])
        for t in ("channels", "volume"):
            builder.add(t, layer.name, 1, builder.form(0, {0: 1}))
        # Created here, not in build(), so callbacks find it before the first step.
        self.controller = ChipNetController(
            [[self.name, channels]],
            builder.build(),
            budget=self.budget,
            budget_type=self.budget_type,
            budget_weight=self.budget_weight,
            crispness_weight=self.crispness_weight,
            schedule=self.schedule,
            gate_forward=self.gate_forward,
            gate_logits=self.gate_logits,
            gate_leak=self.gate_leak,
            name="chipnet_controller",
        )
        self.controller.build(None)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        outputs = self.layer(inputs)
        (mask,) = self.controller(inputs, training=training)
        return outputs * tf.cast(mask, outputs.dtype)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), **self.controller.search_config()}
