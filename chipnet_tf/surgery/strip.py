"""strip_pruning: rebuild a physically smaller plain Keras model from hard masks.

Every layer of the (flattened) model is rebuilt from its config with the removed channels
sliced out of its weights: output channels by the mask of the group it writes, input
channels by the layout of the tensor it reads (see :mod:`chipnet_tf.analysis.groups`). Gates vanish:
under hard masks a kept channel is multiplied by 1 and a removed one is gone, so the
stripped model computes exactly what the wrapped model computes under its hard masks.

Layer surgery is part of the layer's :class:`chipnet_tf.registry.LayerRule`, looked up by
class (nearest registered base class): ``chipnet_tf.register_layer(cls, LayerRule(kind,
surgery=...))`` describes a user's layer in one call (:func:`register_surgery` adds surgery
to an existing rule).
"""

import contextlib
import dataclasses
import functools

import numpy as np

from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.analysis.flat_graph import call_arguments, from_config, input_name
from chipnet_tf.analysis.keras3_graph import inputs_like
from chipnet_tf.compat import keras, keras_of, tf
from chipnet_tf.registry import SurgeryContext, probe, register_surgery, take  # public here too
from chipnet_tf.registry.keras3ops import resliced_call
from chipnet_tf.search.batch_norm import DEFAULT_STEPS, as_dataset, check_steps, recalibrate_batch_norm
from chipnet_tf.search.layers import PruneLowBudget
from chipnet_tf.search.layers.channel_gate import ChannelGateLogic
from chipnet_tf.search.layers.controller import ControllerLogic, controllers
from chipnet_tf.search.layers.gated_attention import MASK_ARGUMENTS, GatedAttentionLogic
from chipnet_tf.search.layers.gated_batch_norm import GatedBatchNormLogic
from chipnet_tf.search.layers.gated_layer_norm import GatedLayerNormLogic
from chipnet_tf.search.masks import check_masks, get_masks
from chipnet_tf.surgery.empty_groups import plan_empty_groups
from chipnet_tf.surgery.initializers import zero_initialized
from chipnet_tf.validators import first_line

# The chipnet_tf layers of either Keras (the tf_keras classes and their Keras 3 twins share these).
_GATED = (GatedBatchNormLogic, GatedLayerNormLogic)
_PLAIN = {GatedBatchNormLogic: "BatchNormalization", GatedLayerNormLogic: "LayerNormalization"}
_PLAIN[GatedAttentionLogic] = "MultiHeadAttention"


# -- the dense view of a wrapped model ---------------------------------------------------
def _dense_view(graph):
    """The wrapped model's flat graph with gates, controllers and folded gates undone.

    A FlatGraph for the analysis whose :attr:`~chipnet_tf.analysis.groups.FlatGraph.alias` also maps
    every gate's output to its input (the rebuild reads it there).
    """
    view = graph_lib.FlatGraph(
        nodes=[],
        input_keys=list(graph.input_keys),
        input_tensors=list(graph.input_tensors),
        output_keys=[],
        layer_names=graph.layer_names,
        alias=dict(graph.alias),
    )
    masks = set()  # the controllers' outputs: mask inputs of the gated layers
    for fnode in graph.nodes:
        layer = fnode.layer
        if isinstance(layer, PruneLowBudget):
            raise ValueError(
                f"strip_pruning cannot strip the single-layer wrapper {layer.name!r}: it works on models "
                "returned by chipnet_tf.prune_low_budget(model) (functional or Sequential), or on a dense "
                "model with masks: strip_pruning(dense_model, masks=masks)."
            )
        if isinstance(layer, ControllerLogic):
            masks.update(fnode.out_keys)
            continue
        if isinstance(layer, ChannelGateLogic):
            view.alias[fnode.out_keys[0]] = view.resolve(fnode.in_keys[0])
            continue
        data = [k not in masks for k in fnode.in_keys]
        in_keys = [view.resolve(k) for k, ok in zip(fnode.in_keys, data) if ok]
        in_shapes = [shape for shape, ok in zip(fnode.in_shapes, data) if ok]
        view.nodes.append(dataclasses.replace(fnode, in_keys=in_keys, in_shapes=in_shapes))
    view.output_keys = [view.resolve(k) for k in graph.output_keys]
    return view


def _keep_vectors(analysis, masks_by_group):
    """``{tensor key: kept channel indices or None}`` from the analysis layouts."""
    return {key: _keep_vector(glayout, masks_by_group) for key, glayout in analysis.layouts.items()}


def _keep_vector(glayout, masks_by_group):
    """The kept indices of one group layout (``(segments, repeat)``), or None for all."""
    segments, repeat = glayout
    if all(g is None or masks_by_group[g] is None for g, _ in segments):
        return None
    pieces = []
    for g, n in segments:
        m = None if g is None else masks_by_group[g]
        pieces.append(np.ones(n, bool) if m is None else m)
    vector = np.tile(np.concatenate(pieces), repeat)
    return None if vector.all() else np.flatnonzero(vector)


def _inner_keeps(analysis, masks_by_group):
    """``{layer name: {label: kept indices or None}}`` of the layers' inner groups (an
    attention layer's heads); a layer keeps at least one of each."""
    out = {}
    for name, axes in analysis.inner.items():
        out[name] = {label: _keep_vector(glayout, masks_by_group) for label, glayout in axes.items()}
        empty = [label for label, keep in out[name].items() if keep is not None and not len(keep)]
        if empty:
            raise ValueError(
                f"masks remove every one of layer {name!r}'s {empty[0]}; keep at least one "
                f"(group {name + '/' + empty[0]!r})."
            )
    return out


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
        allow_empty=True,
    )
    out = [None] * len(names)
    for i, m in zip(present, checked):
        out[i] = None if m.all() else m
    return out


def strip_pruning(model, masks=None, round_to=1, calibration_data=None, calibration_steps=DEFAULT_STEPS):
    """Rebuilds ``model`` as a plain, physically smaller tf_keras functional model.

    Args:
        model: a model returned by :func:`chipnet_tf.prune_low_budget` (its budget-aware hard
            masks from :func:`chipnet_tf.get_masks` are used unless ``masks`` is given), or a
            dense tf_keras functional/Sequential model together with ``masks`` (the
            mask-transfer path: masks found on another run of the same architecture).
        masks: ``{group name: bool array}``; groups left out keep all their channels.
        round_to: when the masks come from the wrapped model, keep multiples of this many
            channels per group (see :func:`chipnet_tf.get_masks`).
        calibration_data: training inputs to re-estimate the stripped model's
            BatchNormalization statistics on (a ``tf.data.Dataset`` of ``x`` or ``(x, y)``
            batches, an array of inputs or an ``(x, y)`` tuple; see
            :func:`chipnet_tf.recalibrate_batch_norm`), or None to copy the model's own.
            A search's statistics belong to no fixed network (its gates open and close from
            step to step) and a dense model's belong to the dense network, so the stripped
            model reports its true accuracy only with statistics re-estimated here or by
            ``apply_masks(..., calibration_data=...)`` before stripping. The wrapped model's
            statistics are left as they are.
        calibration_steps: batches of ``calibration_data`` to use (an array goes in batches
            of 64).

    Returns:
        A flat functional ``keras.Model`` without chipnet_tf layers (built-in Keras layers,
        plus the model's own custom layers, which are opaque and kept as they are), whose
        removed channels are sliced out of every layer. Its predictions equal the wrapped
        model's under the hard masks (``chipnet_tf.apply_masks(model, masks)``); with
        ``calibration_data``, under its re-estimated BatchNormalization statistics.

    Raises:
        TypeError: ``model`` is not a tf_keras model, masks is not a dict, or
            ``calibration_data`` is neither a dataset nor an array of inputs.
        ValueError: a dense model without masks; masks naming unknown groups, of the wrong
            length or removing a whole group; a layer with no registered surgery; a
            ``calibration_steps`` that is not a positive integer.

    Example:
        >>> small = chipnet_tf.strip_pruning(pruned)  # doctest: +SKIP
        >>> small = chipnet_tf.strip_pruning(dense_model, masks=chipnet_tf.load_masks("masks.npz"))  # doctest: +SKIP
        >>> small = chipnet_tf.strip_pruning(pruned, calibration_data=x_train[:640])  # doctest: +SKIP
    """
    graph_lib.check_any_model(model)
    if calibration_data is not None:
        check_steps(calibration_steps, "calibration_steps")
        calibration_data = as_dataset(calibration_data, "calibration_data")
    graph = graph_lib.flatten_any(model)
    wrapped = bool(controllers(model))
    if wrapped:
        view = _dense_view(graph)
        if masks is None:
            masks = get_masks(model, round_to=round_to)
    else:
        if masks is None:
            raise ValueError(
                f"Model {model.name!r} is not wrapped by chipnet_tf.prune_low_budget, so it has no masks of its "
                "own: pass them, e.g. strip_pruning(model, masks=chipnet_tf.load_masks(path))."
            )
        view = graph
    analysis = graph_lib.analyze(view, warn=False)
    by_group = _resolve_masks(analysis, masks)
    keeps = _keep_vectors(analysis, by_group)
    plan = plan_empty_groups(analysis, keeps)
    small = _rebuild(model, graph, analysis, (keeps, _inner_keeps(analysis, by_group)), plan)
    if calibration_data is not None:
        recalibrate_batch_norm(small, calibration_data, calibration_steps)
    return small


def removed_layers(model, masks):
    """Names of the layers ``strip_pruning(model, masks=masks)`` removes because a group in
    ``masks`` keeps no channel (an empty set when every group keeps one)."""
    if not any(not np.asarray(m).any() for m in masks.values()):
        return set()
    graph = graph_lib.flatten_any(model)
    view = _dense_view(graph) if controllers(model) else graph
    analysis = graph_lib.analyze(view, warn=False)
    keeps = _keep_vectors(analysis, _resolve_masks(analysis, masks))
    return plan_empty_groups(analysis, keeps).removed


def _rebuild(model, graph, analysis, keeps, plan):
    keeps, inner_keeps = keeps
    view = analysis.graph
    rules = {fnode.name: rule for fnode, rule in zip(view.nodes, analysis.rules)}
    k = keras_of(model)
    tensors = {}
    inputs = []
    for key, kt in zip(graph.input_keys, graph.input_tensors):
        new = k.Input(batch_shape=tuple(kt.shape), dtype=kt.dtype, name=input_name(kt))
        tensors[key] = new
        inputs.append(new)
    built = {}
    for fnode in graph.nodes:
        layer = fnode.layer
        if isinstance(layer, ControllerLogic):
            tensors.update(dict.fromkeys(fnode.out_keys))  # masks: the gated layers' calls drop them
            continue
        if fnode.name in plan.removed:
            continue
        if isinstance(layer, ChannelGateLogic):
            source = view.resolve(fnode.out_keys[0])
            if source in tensors:
                tensors[fnode.out_keys[0]] = tensors[source]
            continue
        if fnode.name in plan.adds or fnode.name in plan.concats:
            tensors[fnode.out_keys[0]] = _rebuild_merge(k, fnode, plan, tensors)
            continue
        in_keys = [view.resolve(key) for key in fnode.in_keys if tensors.get(key, 0) is not None]
        if id(layer) not in built:
            inner = inner_keeps.get(fnode.name, {})
            built[id(layer)] = _new_layer(k, layer, fnode, in_keys, (keeps, inner), rules[fnode.name])
        new_layer, weights, constants = built[id(layer)]
        if isinstance(layer, _GATED):
            # Called as bn([x, *masks]): the masks come from the dropped controller.
            args = (tensors[in_keys[0]],)
            kwargs = {key: v for key, v in call_arguments(fnode.node)[1].items() if key == "training"}
        else:
            args, kwargs = graph.resolve_args(fnode, tensors, constants)
            for name in MASK_ARGUMENTS.values():
                kwargs.pop(name, None)
        with zero_initialized(new_layer) if weights is not None else contextlib.nullcontext():
            outputs = new_layer(*args, **kwargs)
        if weights is not None:
            _set_weights(new_layer, weights, fnode, layer)
            built[id(layer)] = (new_layer, None, constants)
        if fnode.name in analysis.inferred and fnode.first_call:
            out_keep = keeps.get(fnode.out_keys[0])
            probe.check_stripped(fnode.name, layer, new_layer, fnode.in_shapes[0], keeps.get(in_keys[0]), out_keep)
        for key, out in zip(fnode.out_keys, tf.nest.flatten(outputs)):
            tensors[key] = out
    outputs = tf.nest.pack_sequence_as(model.outputs, [tensors[view.resolve(key)] for key in graph.output_keys])
    return k.Model(inputs_like(model, inputs), outputs, name=model.name)


def _set_weights(new_layer, weights, fnode, layer):
    try:
        new_layer.set_weights(weights)
    except ValueError as e:
        raise ValueError(
            f"strip_pruning: the sliced weights of layer {fnode.name!r} ({type(layer).__name__}) do not fit the "
            f"layer rebuilt from its sliced config: {first_line(e)}. Register a rule with a surgery for it."
        ) from e


def _rebuild_merge(k, fnode, plan, tensors):
    """An Add/Concatenate whose removed inputs are dropped (plus a constant offset)."""
    live, offset = plan.adds[fnode.name] if fnode.name in plan.adds else (plan.concats[fnode.name], None)
    xs = [tensors[key] for key in live]
    op = fnode.layer
    if len(xs) == 1:
        out = xs[0]
    elif not isinstance(op, k.layers.Layer):  # a Keras 3 keras.ops call: add(a, b) or concatenate([...])
        out = op(xs) if fnode.name in plan.concats else functools.reduce(op, xs)
    else:
        out = type(op).from_config(_plain_config(op, fnode.name))(xs)
    if offset is not None:
        out = k.layers.Rescaling(1.0, offset=[float(v) for v in offset], name=f"{fnode.name}_offset")(out)
    return out


def _plain_config(layer, name):
    """``layer``'s config renamed to ``name``; a mixed-precision policy becomes float32, so
    GPU-trained mixed_float16 checkpoints strip into float32 models."""
    config = {**layer.get_config(), "name": name}
    if _is_mixed(config.get("dtype")):
        config["dtype"] = "float32"
    return config


def _is_mixed(dtype):
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if isinstance(dtype, keras.mixed_precision.Policy):
        dtype = dtype.name
    return isinstance(dtype, str) and dtype.startswith("mixed_")


def _new_layer(k, layer, fnode, in_keys, keeps, rule):
    """``(new layer, weights to set after its first call, call constants or None)`` for one
    flat node (the constants are the surgery's, see ``SurgeryContext.call_args``).
    ``keeps``: ``(tensor keeps, this layer's inner keeps)``."""
    keeps, inner_keeps = keeps
    in_keeps = [keeps.get(k) for k in in_keys]
    out_keep = keeps.get(fnode.out_keys[0]) if fnode.out_keys else None
    if not isinstance(layer, k.layers.Layer):
        return _reused_operation(layer, fnode, in_keeps, out_keep)
    config = _plain_config(layer, fnode.name)
    cls = type(layer)
    gated = next((base for base in _PLAIN if isinstance(layer, base)), None)
    if gated is not None:
        cls = getattr(k.layers, _PLAIN[gated])
        config.pop("segments", None)
        config.pop("repeat", None)
    weights = layer.get_weights()
    surgery = rule.surgery
    sliced = out_keep is not None or any(k is not None for k in in_keeps)
    constants = None
    if surgery is not None:
        ctx = SurgeryContext(
            layer,
            config,
            weights,
            in_keeps,
            out_keep,
            call_args=call_arguments(fnode.node)[0],
            call_kwargs=dict(call_arguments(fnode.node)[1]),
            in_channels=[int(s[-1]) if s else 1 for s in fnode.in_shapes],
            inner_keeps=dict(inner_keeps),
        )
        config, weights = surgery(ctx)
        constants = (ctx.call_args, ctx.call_kwargs)
    elif sliced and weights:
        raise ValueError(
            f"Layer {fnode.name!r} of type {type(layer).__name__} has weights and pruned channels, but no "
            "surgery is registered for it. Register a rule with one: chipnet_tf.register_layer(cls, "
            "chipnet_tf.registry.LayerRule(kind, surgery=...)), or chipnet_tf.register_surgery."
        )
    try:
        new = from_config(cls, config, layer)
    except Exception as e:  # noqa: BLE001 - re-raised with the layer's name
        raise ValueError(f"Could not rebuild layer {fnode.name!r} ({cls.__name__}) from its config: {e}") from e
    return new, (weights if weights else None), constants


def _reused_operation(op, fnode, in_keeps, out_keep):
    """A Keras 3 ``keras.ops`` call (an Operation: no weights, no config to slice) is called
    again as it is: fine for the element-wise, merge and reduction calls whose rules keep
    the channel axis; a channel ``Split`` or slice is called with the kept sizes or bounds
    (:func:`chipnet_tf.registry.keras3ops.resliced_call`); refused for any other call whose
    constants would need slicing."""
    args, kwargs = call_arguments(fnode.node)
    resliced = resliced_call(op, args, kwargs, in_keeps[0] if in_keeps else None)
    if resliced is not None:
        return resliced[0], None, resliced[1]
    constants = [a for a in keras_of(op).tree.flatten(call_arguments(fnode.node)) if not hasattr(a, "_keras_history")]
    sliced = out_keep is not None or any(keep is not None for keep in in_keeps)
    if (
        sliced
        and type(op).__name__ in ("Reshape", "GetItem", "Split")
        or (sliced and any(getattr(c, "shape", ()) for c in constants))
    ):
        raise ValueError(
            f"strip_pruning cannot yet slice the keras.ops call {fnode.name!r} ({type(op).__name__}) of a Keras 3 "
            "model: its constants depend on the channels it keeps. Exclude the layer that writes its input "
            "(prune_low_budget(..., exclude=[...]))."
        )
    return op, None, None


__all__ = ["SurgeryContext", "register_surgery", "strip_pruning", "take"]
