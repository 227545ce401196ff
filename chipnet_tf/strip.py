"""strip_pruning: rebuild a physically smaller plain Keras model from hard masks.

Every layer of the (flattened) model is rebuilt from its config with the removed channels
sliced out of its weights: output channels by the mask of the group it writes, input
channels by the layout of the tensor it reads (see :mod:`chipnet_tf.graph`). Gates vanish:
under hard masks a kept channel is multiplied by 1 and a removed one is gone, so the
stripped model computes exactly what the wrapped model computes under its hard masks.

Layer surgery is looked up by class (nearest registered base class). Users register it
for their own layers with :func:`register_surgery` (together with a
:class:`chipnet_tf.registry.LayerRule` that tells the analysis how channels flow).
"""

import dataclasses

import numpy as np

from chipnet_tf import graph as graph_lib
from chipnet_tf.compat import keras, tf
from chipnet_tf.layers import (
    ChannelGate,
    ChipNetController,
    GatedBatchNormalization,
    GatedLayerNormalization,
    PruneLowBudget,
)
from chipnet_tf.masks import check_masks

L = keras.layers
_GATED = (GatedBatchNormalization, GatedLayerNormalization)


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
    """

    layer: object
    config: dict
    weights: list
    in_keeps: list
    out_keep: object

    @property
    def in_keep(self):
        return self.in_keeps[0] if self.in_keeps else None


_SURGERY = {}


def register_surgery(layer_class, surgery):
    """Registers how to slice channels out of ``layer_class`` (and its subclasses).

    ``surgery(ctx)`` receives a :class:`SurgeryContext` and returns ``(config, weights)`` for
    the smaller layer of the same class. Pair it with
    ``chipnet_tf.registry.register_layer(layer_class, LayerRule(kind, costs))``: the rule
    tells the analysis how channels flow through the layer, the surgery rebuilds it.

    Example::

        class Scale(keras.layers.Layer):          # y = x * w, one weight per channel
            def build(self, shape):
                self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")
            def call(self, x):
                return x * self.w

        chipnet_tf.registry.register_layer(Scale, chipnet_tf.registry.LayerRule("passthrough"))

        def scale_surgery(ctx):
            return ctx.config, [take(ctx.weights[0], ctx.out_keep, 0)]

        chipnet_tf.register_surgery(Scale, scale_surgery)
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_surgery expects a layer class. Received: {layer_class!r}")
    if not callable(surgery):
        raise TypeError(f"register_surgery expects a callable surgery(ctx). Received: {surgery!r}")
    _SURGERY[layer_class] = surgery


def _lookup(layer):
    for klass in type(layer).__mro__:
        if klass in _SURGERY:
            return _SURGERY[klass]
    return None


def take(array, keep, axis):
    """``array`` with only the ``keep`` indices along ``axis`` (None keeps everything)."""
    if keep is None:
        return array
    return np.take(array, keep, axis=axis)


def _count(keep, full):
    return full if keep is None else len(keep)


# -- surgery for built-in layers ------------------------------------------------------
def _conv_surgery(ctx):
    layer, w = ctx.layer, ctx.weights
    transpose = isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose))
    out_axis, in_axis = (-2, -1) if transpose else (-1, -2)
    if getattr(layer, "groups", 1) != 1 and (ctx.in_keep is not None or ctx.out_keep is not None):
        raise ValueError(f"Cannot strip channels of grouped convolution {layer.name!r} (groups={layer.groups}).")
    kernel = take(take(w[0], ctx.out_keep, out_axis), ctx.in_keep, in_axis)
    ctx.config["filters"] = int(kernel.shape[out_axis])
    return ctx.config, [kernel] + [take(b, ctx.out_keep, 0) for b in w[1:]]


def _dense_surgery(ctx):
    w = ctx.weights
    kernel = take(take(w[0], ctx.out_keep, 1), ctx.in_keep, 0)
    ctx.config["units"] = int(kernel.shape[1])
    return ctx.config, [kernel] + [take(b, ctx.out_keep, 0) for b in w[1:]]


def _depthwise_surgery(ctx):
    layer, w = ctx.layer, ctx.weights
    m = int(layer.depth_multiplier)
    if m != 1 and ctx.in_keep is not None:
        raise ValueError(f"Cannot strip channels of depthwise conv {layer.name!r} with depth_multiplier={m}.")
    kernel = take(w[0], ctx.in_keep, -2)
    return ctx.config, [kernel] + [take(b, ctx.out_keep, 0) for b in w[1:]]


def _separable_surgery(ctx):
    layer, w = ctx.layer, ctx.weights
    m = int(layer.depth_multiplier)
    depthwise = take(w[0], ctx.in_keep, -2)
    rows = None
    if ctx.in_keep is not None:
        rows = (np.asarray(ctx.in_keep)[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    pointwise = take(take(w[1], rows, -2), ctx.out_keep, -1)
    ctx.config["filters"] = int(pointwise.shape[-1])
    return ctx.config, [depthwise, pointwise] + [take(b, ctx.out_keep, 0) for b in w[2:]]


def _per_channel_surgery(ctx):
    """Every weight is a per-channel vector on the last axis (BatchNormalization, PReLU)."""
    out = []
    for v in ctx.weights:
        out.append(take(v, ctx.out_keep, v.ndim - 1) if v.ndim and v.shape[-1] != 1 else v)
    return ctx.config, out


def _rescaling_surgery(ctx):
    for key in ("scale", "offset"):
        value = np.asarray(ctx.config.get(key, 0.0))
        if value.ndim and value.shape[-1] != 1 and ctx.out_keep is not None:
            ctx.config[key] = take(value, ctx.out_keep, value.ndim - 1).tolist()
    return ctx.config, ctx.weights


def _reshape_surgery(ctx):
    if isinstance(ctx.layer, L.Reshape) and ctx.out_keep is not None:
        target = list(ctx.config["target_shape"])
        target[-1] = len(ctx.out_keep)
        ctx.config["target_shape"] = tuple(target)
    return ctx.config, ctx.weights


for _cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    register_surgery(_cls, _conv_surgery)
register_surgery(L.Dense, _dense_surgery)
for _cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    register_surgery(_cls, _depthwise_surgery)
for _cls in (L.SeparableConv1D, L.SeparableConv2D):
    register_surgery(_cls, _separable_surgery)
register_surgery(L.BatchNormalization, _per_channel_surgery)
register_surgery(L.PReLU, _per_channel_surgery)
register_surgery(L.LayerNormalization, _per_channel_surgery)
register_surgery(L.Rescaling, _rescaling_surgery)
register_surgery(L.Reshape, _reshape_surgery)
register_surgery(L.Flatten, _reshape_surgery)


# -- the dense view of a wrapped model ---------------------------------------------------
def _dense_view(graph):
    """The wrapped model's flat graph with gates, controllers and folded gates undone.

    Returns ``(view, gate_alias)``: a FlatGraph for the analysis, and ``{gate output key:
    gate input key}`` for the rebuild.
    """
    alias = {}

    def remap(k):
        while k in alias:
            k = alias[k]
        return k

    nodes = []
    for fnode in graph.nodes:
        layer = fnode.layer
        if isinstance(layer, PruneLowBudget):
            raise ValueError(
                f"strip_pruning cannot strip the single-layer wrapper {layer.name!r}: it works on models "
                "returned by chipnet_tf.prune_low_budget(model) (functional or Sequential), or on a dense "
                "model with masks: strip_pruning(dense_model, masks=masks)."
            )
        if isinstance(layer, ChipNetController):
            continue
        if isinstance(layer, ChannelGate):
            alias[fnode.out_keys[0]] = remap(fnode.in_keys[0])
            continue
        in_keys = [remap(k) for k in fnode.in_keys]
        in_shapes = list(fnode.in_shapes)
        if isinstance(layer, _GATED):
            in_keys, in_shapes = in_keys[:1], in_shapes[:1]
        nodes.append(dataclasses.replace(fnode, in_keys=in_keys, in_shapes=in_shapes))
    view = graph_lib.FlatGraph(
        nodes=nodes,
        input_keys=list(graph.input_keys),
        input_tensors=list(graph.input_tensors),
        output_keys=[remap(k) for k in graph.output_keys],
        layer_names=graph.layer_names,
    )
    view._alias = graph._alias
    return view, alias


def _keep_vectors(analysis, masks_by_group):
    """``{tensor key: kept channel indices or None}`` from the analysis layouts."""
    keeps = {}
    for key, (segments, repeat) in analysis.layouts.items():
        if all(g is None or masks_by_group[g] is None for g, _ in segments):
            keeps[key] = None
            continue
        pieces = []
        for g, n in segments:
            m = None if g is None else masks_by_group[g]
            pieces.append(np.ones(n, bool) if m is None else m)
        vector = np.tile(np.concatenate(pieces), repeat)
        keeps[key] = None if vector.all() else np.flatnonzero(vector)
    return keeps


def _resolve_masks(analysis, masks):
    """Per analysis group: a bool mask, or None when all its channels are kept.

    A group is named after one of its writers; which one can depend on the traversal order
    (a wrapped model's gates change node depths), so a mask is matched to the group that
    has a writer of that name.
    """
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{group name: bool array}}. Received: {type(masks).__name__}")
    names = [g.name for g in analysis.groups]
    owner = {}
    for i, g in enumerate(analysis.groups):
        for writer in g.writers:
            owner.setdefault(writer, i)
        owner[g.name] = i
    unknown = [n for n in masks if n not in owner]
    if unknown:
        raise ValueError(
            f"masks name groups the model does not have: {unknown}. The model's groups are: {names}. "
            "Masks transfer only between models of the same architecture (same layer names)."
        )
    by_index = {}
    for n in masks:
        i = owner[n]
        if i in by_index:
            raise ValueError(f"masks {by_index[i]!r} and {n!r} name the same channel group {names[i]!r}.")
        by_index[i] = n
    present = sorted(by_index)
    checked = check_masks(
        {by_index[i]: masks[by_index[i]] for i in present},
        [by_index[i] for i in present],
        [analysis.groups[i].size for i in present],
    )
    out = [None] * len(names)
    for i, m in zip(present, checked):
        out[i] = None if m.all() else m
    return out


def strip_pruning(model, masks=None, round_to=1):
    """Rebuilds ``model`` as a plain, physically smaller tf_keras functional model.

    Args:
        model: a model returned by :func:`chipnet_tf.prune_low_budget` (its budget-aware hard
            masks from :func:`chipnet_tf.get_masks` are used unless ``masks`` is given), or a
            dense tf_keras functional/Sequential model together with ``masks`` (the
            mask-transfer path: masks found on another run of the same architecture).
        masks: ``{group name: bool array}``; groups left out keep all their channels.
        round_to: when the masks come from the wrapped model, keep multiples of this many
            channels per group (see :func:`chipnet_tf.get_masks`).

    Returns:
        A flat functional ``keras.Model`` without chipnet_tf layers (built-in Keras layers,
        plus the model's own custom layers, which are opaque and kept as they are), whose
        removed channels are sliced out of every layer. Its predictions equal the wrapped
        model's under the hard masks (``chipnet_tf.apply_masks(model, masks)``).

    Raises:
        TypeError: ``model`` is not a tf_keras model, or masks is not a dict.
        ValueError: a dense model without masks; masks naming unknown groups, of the wrong
            length or removing a whole group; a layer with no registered surgery.

    Example:
        >>> small = chipnet_tf.strip_pruning(pruned)  # doctest: +SKIP
        >>> small = chipnet_tf.strip_pruning(dense_model, masks=chipnet_tf.load_masks("masks.npz"))  # doctest: +SKIP
    """
    from chipnet_tf.masks import get_masks
    from chipnet_tf.prune import controllers

    graph_lib.check_model(model)
    graph = graph_lib.flatten(model)
    wrapped = bool(controllers(model))
    if wrapped:
        view, gate_alias = _dense_view(graph)
        if masks is None:
            masks = get_masks(model, round_to=round_to)
    else:
        if masks is None:
            raise ValueError(
                f"Model {model.name!r} is not wrapped by chipnet_tf.prune_low_budget, so it has no masks of its "
                "own: pass them, e.g. strip_pruning(model, masks=chipnet_tf.load_masks(path))."
            )
        view, gate_alias = graph, {}
    analysis = graph_lib.analyze(view, warn=False)
    by_group = _resolve_masks(analysis, masks)
    keeps = _keep_vectors(analysis, by_group)
    return _rebuild(model, graph, gate_alias, keeps)


def _rebuild(model, graph, gate_alias, keeps):
    tensors = {}
    inputs = []
    for key, kt in zip(graph.input_keys, graph.input_tensors):
        layer = kt._keras_history.layer
        new = keras.Input(batch_shape=tuple(kt.shape), dtype=kt.dtype, name=layer.name)
        tensors[key] = new
        inputs.append(new)
    built = {}
    for fnode in graph.nodes:
        layer = fnode.layer
        if isinstance(layer, ChipNetController):
            continue
        if isinstance(layer, ChannelGate):
            tensors[fnode.out_keys[0]] = tensors[gate_alias[fnode.out_keys[0]]]
            continue
        in_keys = fnode.in_keys
        if isinstance(layer, _GATED):
            # Called as bn([x, *masks]): the masks come from the dropped controller.
            in_keys = in_keys[:1]
            args = (tensors[in_keys[0]],)
            kwargs = {k: v for k, v in fnode.node.call_kwargs.items() if k == "training"}
        else:
            args, kwargs = graph.resolve_args(fnode, tensors)
        in_keys = [_remap(k, gate_alias) for k in in_keys]
        if id(layer) not in built:
            built[id(layer)] = _new_layer(layer, fnode, in_keys, keeps)
        new_layer, weights = built[id(layer)]
        outputs = new_layer(*args, **kwargs)
        if weights is not None:
            new_layer.set_weights(weights)
            built[id(layer)] = (new_layer, None)
        for key, out in zip(fnode.out_keys, tf.nest.flatten(outputs)):
            tensors[key] = out
    outputs = tf.nest.pack_sequence_as(model.outputs, [tensors[_remap(k, gate_alias)] for k in graph.output_keys])
    return keras.Model(inputs, outputs, name=model.name)


def _is_mixed(dtype):
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if isinstance(dtype, keras.mixed_precision.Policy):
        dtype = dtype.name
    return isinstance(dtype, str) and dtype.startswith("mixed_")


def _remap(k, alias):
    while k in alias:
        k = alias[k]
    return k


def _new_layer(layer, fnode, in_keys, keeps):
    """``(new layer, weights to set after its first call)`` for one flat node."""
    in_keeps = [keeps.get(k) for k in in_keys]
    out_keep = keeps.get(fnode.out_keys[0]) if fnode.out_keys else None
    config = layer.get_config()
    config["name"] = fnode.name
    if _is_mixed(config.get("dtype")):
        config["dtype"] = "float32"  # GPU-trained mixed_float16 checkpoints strip to float32
    cls = type(layer)
    if isinstance(layer, _GATED):
        cls = L.BatchNormalization if isinstance(layer, GatedBatchNormalization) else L.LayerNormalization
        config.pop("segments", None)
        config.pop("repeat", None)
    weights = layer.get_weights()
    surgery = _lookup(layer)
    sliced = out_keep is not None or any(k is not None for k in in_keeps)
    if surgery is not None:
        config, weights = surgery(SurgeryContext(layer, config, weights, in_keeps, out_keep))
    elif sliced and weights:
        raise ValueError(
            f"Layer {fnode.name!r} of type {type(layer).__name__} has weights and pruned channels, but no "
            "surgery is registered for it. Register one with chipnet_tf.register_surgery."
        )
    try:
        new = cls.from_config(config)
    except Exception as e:  # noqa: BLE001 - re-raised with the layer's name
        raise ValueError(f"Could not rebuild layer {fnode.name!r} ({cls.__name__}) from its config: {e}") from e
    return new, (weights if weights else None)


__all__ = ["SurgeryContext", "register_surgery", "strip_pruning", "take"]
