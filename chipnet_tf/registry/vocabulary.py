"""The rule vocabulary: layer type -> one :class:`LayerRule`: how channels flow through it, what it costs and
how to slice channels out of it.

Every Keras layer the group analysis meets is classified by its rule's :class:`Kind`:

``producer``     writes a new channel space (Conv*, Conv*Transpose, Dense, SeparableConv*,
                 Embedding, MultiHeadAttention: see :mod:`chipnet_tf.registry.heads`)
``depthwise``    per-channel filter: output channels are the input channels (DepthwiseConv*)
``channelwise``  per-channel op that may turn a zero into a non-zero (BatchNormalization,
                 sigmoid, Rescaling, GaussianNoise)
``passthrough``  keeps channels and keeps zeros zero (ReLU family, pooling, padding, dropout)
``merge``        element-wise merge: all inputs share channels (Add, Multiply, ...)
``concat``       concatenation (channel axis: layouts are concatenated; otherwise a merge)
``reshape``      Flatten/Reshape (a flatten tiles the channel layout over positions)
``opaque``       anything the analysis cannot see through: its inputs and outputs are never
                 pruned (Lambda, softmax, LayerNormalization over other axes, TF ops other
                 than those of :mod:`chipnet_tf.registry.tfops`, custom layers that mix
                 channels; a custom layer with no rule is probed, see :mod:`chipnet_tf.registry.probe`)
A LayerNormalization over the channel axis is ``channelwise``: prune_low_budget replaces it
by a GatedLayerNormalization whose statistics skip pruned channels.

A rule may also carry its own layout handler (``LayerRule(layout=...)``, see
:class:`chipnet_tf.registry.layouts.LayoutContext`) for channel flows a kind alone does not say: a
grouped conv ties its channels per conv group, ``x[..., :k]`` cuts a channel space. Each
kind's default handler is in :data:`chipnet_tf.registry.layouts.DEFAULT_LAYOUT`.

A rule also carries the layer's cost terms (for the budgets and :func:`layer_flops`), its
surgery (how ``strip_pruning`` slices its weights) and, for elementwise layers, how it maps
a per-channel constant (a fully pruned branch). Adding a layer type is one call; for example
a custom per-channel scale ``y = x * w``::

    chipnet_tf.register_layer(
        Scale,
        chipnet_tf.registry.LayerRule(
            "passthrough",
            surgery=lambda ctx: (ctx.config, [chipnet_tf.registry.take(ctx.weights[0], ctx.out_keep, 0)]),
        ),
    )

The built-in rules are in :mod:`chipnet_tf.registry.builtin`.

This module imports nothing of chipnet_tf: the table (:mod:`chipnet_tf.registry.table`),
the FLOPs count (:mod:`chipnet_tf.registry.flops`) and every rule module build on it.
"""

import dataclasses
import enum
import math

import numpy as np


class Kind(enum.StrEnum):
    """How a layer passes channels (see the module docstring). A ``str``: ``Kind("merge")``
    and ``kind == "merge"`` work, and an unknown name raises."""

    PRODUCER = "producer"
    DEPTHWISE = "depthwise"
    CHANNELWISE = "channelwise"
    PASSTHROUGH = "passthrough"
    MERGE = "merge"
    CONCAT = "concat"
    RESHAPE = "reshape"
    OPAQUE = "opaque"


KINDS = tuple(k.value for k in Kind)

# Activations with f(0) == 0: a pruned (zeroed) channel stays zero through them. Keras 3
# adds hard_silu (its MobileNetV3's Activation("hard_swish")), celu and hard_tanh.
ZERO_PRESERVING_ACTIVATIONS = frozenset(
    {"relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "tanh", "linear", "leaky_relu", "mish", "softsign"}
    | {"hard_silu", "hard_swish", "celu", "hard_tanh"}
)
# Per-channel activations with f(0) != 0.
CHANNELWISE_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "softplus", "exponential", "log_sigmoid"})


def as_kind(value, owner=None):
    """``value`` as a :class:`Kind`; a ValueError listing the kinds when it is none."""
    try:
        return Kind(value)
    except ValueError:
        where = f" for {owner}" if owner else ""
        raise ValueError(f"Unknown layer kind {value!r}{where}. Accepted: {', '.join(KINDS)}.") from None


@dataclasses.dataclass
class CostContext:
    """What a cost function gets for one layer call.

    Attributes:
        layer, name: the layer and its flat name.
        kind: the :class:`Kind` the analysis gave this call.
        in_forms: per input, the builder form of its channel count.
        out_form: the builder form of the (first) output's channel count.
        out_shape, in_shape: shapes of the first output and input (batch included).
        first_call: False for the second and later calls of a shared layer (count
            parameters once).
        in_shapes: the shapes of every input (batch included).
        inner_forms: ``{label: form}`` of the layer's own prunable axes (see
            ``LayerRule(inner=...)``), e.g. ``{"heads": form}`` of an attention layer.
        call_args, call_kwargs: the call's arguments (input tensors included, as in
            ``node.call_args``), for costs that depend on more than the first input (the
            query, value and key of an attention layer, an einsum's operands).
    """

    layer: object
    name: str
    kind: str
    in_forms: list
    out_form: int
    out_shape: tuple
    in_shape: tuple
    first_call: bool
    in_shapes: list = dataclasses.field(default_factory=list)
    inner_forms: dict = dataclasses.field(default_factory=dict)
    call_args: tuple = ()
    call_kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SurgeryContext:
    """What a surgery function gets for one layer.

    Attributes:
        layer: the original layer (read its config and weights; do not modify it).
        config: a copy of ``layer.get_config()`` to modify and return.
        weights: ``layer.get_weights()`` (numpy arrays) to slice and return.
        in_keeps: per input tensor, the kept channel indices of its last axis (an int
            array), or None when all are kept.
        out_keep: kept channel indices of the (first) output's last axis, or None.
        call_args, call_kwargs: the call's arguments (input tensors included, as in
            ``node.call_args``). A surgery that must change a constant argument (the sizes
            of a ``tf.split``, a per-channel constant of ``x * c``) replaces them; the
            stripped model's calls then take their constants from here.
        in_channels: per input tensor, its channel count in the dense model.
        inner_keeps: ``{label: kept indices or None}`` of the layer's own prunable axes
            (``LayerRule(inner=...)``), e.g. the kept heads of an attention layer.
    """

    layer: object
    config: dict
    weights: list
    in_keeps: list
    out_keep: object
    call_args: tuple = ()
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    in_channels: list = dataclasses.field(default_factory=list)
    inner_keeps: dict = dataclasses.field(default_factory=dict)

    @property
    def in_keep(self):
        return self.in_keeps[0] if self.in_keeps else None


def take(array, keep, axis):
    """``array`` with only the ``keep`` indices along ``axis`` (None keeps everything)."""
    if keep is None:
        return array
    return np.take(array, keep, axis=axis)


class LayerRule:
    """Everything chipnet_tf knows about one layer type.

    Args:
        kind: a :class:`Kind` or its name (``"passthrough"``), or a callable
            ``(layer, input_rank) -> kind`` for config-dependent rules.
        costs: optional ``costs(builder, ctx)`` adding the layer's cost terms from a
            :class:`CostContext`; when absent the layer's ``count_params()`` is counted as
            a constant.
        surgery: optional ``surgery(ctx) -> (config, weights)`` that slices the layer for
            ``strip_pruning`` from a :class:`SurgeryContext`. Needed when the layer has
            weights and pruned channels pass through it.
        constant: optional ``constant(layer, value, keep) -> value``: the layer applied (in
            inference) to a per-channel constant, for branches whose group is fully pruned.
        flops: True when ``costs`` counts multiply-accumulates (conv/dense-like layers):
            :func:`layer_flops` then evaluates ``costs``; otherwise the layer costs no
            FLOPs unless it holds such sublayers.
        layout: optional handler ``layout(ctx) -> Layout | [Layout, ...] | None`` given a
            :class:`chipnet_tf.spaces.LayoutContext`: the output channel layout(s) of one
            call, for layers whose channel flow the kind alone does not describe (a grouped
            conv ties its channels per conv group, ``x[..., :k]`` maps channels by index).
            ``ctx.out`` is what the kind gives by default; None makes the call opaque.
        inner: optional ``inner(layer) -> [(label, size), ...]``: axes inside the layer
            that are pruned as groups of their own, with no tensor of the graph carrying
            them (the heads of an attention layer). Each becomes a group named
            ``"<layer name>/<label>"``; its form reaches ``costs`` as
            ``ctx.inner_forms[label]``, its kept indices reach ``surgery`` as
            ``ctx.inner_keeps[label]``, and the wrapped model gates it through the layer's
            gated class (:func:`chipnet_tf.search.layers.inner_gated_class`).
        multi_input: a ``producer`` that reads several channel inputs (an attention
            layer's query, value and key); by default a producer has one input.
    """

    def __init__(
        self, kind, costs=None, surgery=None, constant=None, flops=False, layout=None, inner=None, multi_input=False
    ):
        self._kind = kind if callable(kind) and not isinstance(kind, str) else as_kind(kind)
        for name, fn in (
            ("costs", costs),
            ("surgery", surgery),
            ("constant", constant),
            ("layout", layout),
            ("inner", inner),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"LayerRule {name} must be callable or None. Received: {name}={fn!r}")
        if flops and costs is None:
            raise ValueError("LayerRule(flops=True) needs the costs function that counts those FLOPs.")
        self.costs = costs
        self.surgery = surgery
        self.constant = constant
        self.flops = bool(flops)
        self.layout = layout
        self.inner = inner
        self.multi_input = bool(multi_input)

    def kind(self, layer, rank):
        """The layer's :class:`Kind` given the rank of its (first) input."""
        if not callable(self._kind):
            return self._kind
        return as_kind(self._kind(layer, rank), owner=f"layer rule of {type(layer).__name__}")

    def replace(self, **changes):
        """A copy of this rule with some of ``costs``, ``surgery``, ``constant``, ``flops``,
        ``layout``, ``inner``, ``multi_input`` (or ``kind``) changed."""
        fields = {
            "kind": self._kind,
            "costs": self.costs,
            "surgery": self.surgery,
            "constant": self.constant,
            "flops": self.flops,
            "layout": self.layout,
            "inner": self.inner,
            "multi_input": self.multi_input,
        }
        return LayerRule(**{**fields, **changes})


# -- helpers for rules -----------------------------------------------------------------
def prod(values):
    return int(math.prod(int(v) for v in values))


def activation_name(activation):
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


def channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def elementwise_activation(layer):
    """True when the layer's own activation acts on each value separately (not softmax)."""
    name = activation_name(getattr(layer, "activation", None))
    return name is None or name in ZERO_PRESERVING_ACTIVATIONS or name in CHANNELWISE_ACTIVATIONS


def output_prunable(layer):
    """Whether a producer's output channels may be pruned: not when its own activation mixes
    channels (softmax), since the kept channels' values would change."""
    return elementwise_activation(layer)
