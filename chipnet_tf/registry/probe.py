"""Rules for custom layers nobody registered: a numerical probe, and the strip-time check.

A layer class with no :class:`~chipnet_tf.registry.LayerRule` (its own or a base class's)
used to stop channel groups. The analysis now probes it: it runs the layer on random
inputs of several scales and signs (normal, x100, x0.01, positive, negative), perturbs
one input channel at a time and records which output channels move. It runs both the
layer as it is and a copy from its config with random positive weights, so that a mixing
layer whose weights happen to start at the identity is not taken for a local one. Inputs are cut
to at most 4x4 positions when the layer accepts that (what the probe costs grows with
channels squared times positions). A layer whose output channel ``c`` moves only with
input channel ``c`` on every probe input, with as many output as input channels, is
treated as ``channelwise``: every weight whose last
dimension is the channel count is sliced along it (LayerScale, a custom hard-swish, a
per-channel bias). Anything else stays opaque. The probe runs once per layer
configuration (class, ``get_config()``, input shape) in a process.

The probe is also the path for function layers no exact rule sees through (an
``Activation`` of a user-registered function, a ``Lambda``, a TF-op call such as
``tf.image.resize``: see :mod:`chipnet_tf.registry.probe_calls`). Such a call has no weights
to slice, so it must also compute the same on any subset of its channels: the probe runs
it on half of the channels and compares. It is ``passthrough`` when it maps zeros to
zeros, else ``channelwise``; the stripped model calls it with the same arguments.

Inputs cut to 4x4 positions can hide a layer that mixes channels only on large inputs, so
a layer probed at a cut-down shape is probed again at its real shape, perturbing sets of
channels chosen by the bits of their index: any two channels differ in one bit, so every
channel is perturbed once without the other, in ``2 * ceil(log2(channels))`` runs.

A probe can miss what depends on rare inputs or on the channel count itself, so
:func:`chipnet_tf.strip_pruning` checks every inferred layer: the stripped layer on the
kept channels of random inputs must give the original layer's kept outputs, or it raises
a ``ValueError`` naming the layer. The analysis warns once per inferred layer with the
``register_layer`` line that pins the rule (and silences the warning).
"""

import json

import numpy as np

from chipnet_tf.compat import is_keras3_object, keras, keras3
from chipnet_tf.registry import behaviour, inherited, probe_calls
from chipnet_tf.registry.probe_calls import call_layer as _call
from chipnet_tf.registry.table import has_rule, lookup
from chipnet_tf.registry.vocabulary import Kind, LayerRule, take

# (class, config, input shape) -> None when the layer is channel-local, else the reason it
# is not; ("call", what it computes, input shape) -> (kind or None, reason or None).
_CACHE = {}
# Keras' own layers and ops (either Keras); keras.applications' custom layers are probed.
_NOT_PROBED = (
    "tf_keras.src.layers.",
    "tf_keras.src.engine.",
    "keras.src.layers.",
    "keras.src.models.",
    "keras.src.ops.",
    "keras.layers.",
    "keras.engine.",
    "chipnet_tf.",
)


def _per_channel_weights(weights, channels):
    return [i for i, w in enumerate(weights) if w.ndim and w.shape[-1] == channels]


def _per_channel_costs(builder, ctx):
    if not ctx.first_call:
        return
    channels = int(ctx.in_shape[-1])
    for w in ctx.layer.weights:
        shape = tuple(int(d) for d in w.shape)
        if shape and shape[-1] == channels:
            builder.add("params", ctx.name, int(np.prod(shape[:-1])), ctx.in_forms[0])
        else:
            builder.add("params", ctx.name, int(np.prod(shape)), builder.one)


def _per_channel_surgery(ctx):
    """Slices every weight whose last dimension is the input channel count; a config entry
    equal to the channel count (LayerScale's ``projection_dim``) becomes the kept count."""
    weights = list(ctx.weights)
    channels = ctx.in_channels[0]
    if ctx.in_keep is None:
        return ctx.config, weights
    for i in _per_channel_weights(weights, channels):
        weights[i] = take(weights[i], ctx.in_keep, weights[i].ndim - 1)
    for key, value in ctx.config.items():
        if type(value) is int and value == channels:
            ctx.config[key] = len(ctx.in_keep)
    return ctx.config, weights


def channel_local_rule():
    """The rule the probe infers for a channel-local layer: ``channelwise``, per-channel
    weights (last dimension = channel count) sliced along the channel axis, their
    parameters counted per kept channel.

    Pin it for a layer class (this also skips the probe and its warning)::

        chipnet_tf.register_layer(LayerScale, chipnet_tf.registry.channel_local_rule())
    """
    return LayerRule(Kind.CHANNELWISE, costs=_per_channel_costs, surgery=_per_channel_surgery)


_CHANNEL_LOCAL = channel_local_rule()


# What the probe infers for a function layer (no weights, no constant to renumber).
_FUNCTION_RULES = {kind: LayerRule(kind) for kind in (Kind.PASSTHROUGH, Kind.CHANNELWISE)}


def inferred_message(name, class_name):
    if "(" in class_name or class_name == "Lambda":  # a function layer: see probe_calls.describe
        return (
            f"chipnet_tf: layer {name!r} ({class_name}) has no exact rule; a numerical probe found it channel-local "
            "on any subset of its channels, so channels are pruned through it and strip_pruning checks it "
            "numerically. To keep its channels unpruned, exclude the layer that writes them."
        )
    return (
        f"chipnet_tf: layer {name!r} ({class_name}) has no registered rule; a numerical probe found it "
        "channel-local, so it is pruned as channelwise with its per-channel weights sliced along the channel "
        "axis, and strip_pruning checks it numerically. Pin the rule (and silence this warning) with: "
        f"chipnet_tf.register_layer({class_name}, chipnet_tf.registry.channel_local_rule()); keep it unpruned "
        f'with: chipnet_tf.register_layer({class_name}, chipnet_tf.registry.LayerRule("opaque")).'
    )


def rules_of(graph):
    """The rule of every call in ``graph.nodes``: registered, inferred by the probe, or
    opaque. Returns ``(rules, {layer name: class name of each layer whose rule was inferred})``."""
    rules, inferred = [], {}
    for fnode in graph.nodes:
        rule = lookup(fnode.layer)
        if not has_rule(fnode.layer) and _probeable(fnode) and infer(fnode.layer, fnode.in_shapes[0]):
            rule = _CHANNEL_LOCAL
            inferred[fnode.name] = type(fnode.layer).__name__
        elif _opaque_function_call(fnode, rule) and (kind := infer_call(fnode)) is not None:
            rule = _FUNCTION_RULES[kind]
            inferred[fnode.name] = probe_calls.describe(fnode.layer)
        elif inherited.keras_base(fnode.layer) is not None:
            rule = inherited.checked_rule(fnode, rule)
        rules.append(rule)
    return rules, inferred


def _opaque_function_call(fnode, rule):
    """An Activation, Lambda or TF-op call that its rule (if any) cannot see through, with
    one output of as many channels as its (first) input."""
    if not probe_calls.is_function_layer(fnode.layer) or not fnode.in_shapes or len(fnode.out_keys) != 1:
        return False
    in_shape, out_shape = fnode.in_shapes[0], fnode.out_shapes[0]
    if len(in_shape) < 2 or None in in_shape[1:] or len(out_shape) < 2 or out_shape[-1] != in_shape[-1]:
        return False
    return in_shape[-1] > 1 and rule.kind(fnode.layer, len(in_shape)) == Kind.OPAQUE


def infer_call(fnode):
    """The kind of a function-layer call the probe finds channel-local on any subset of its
    channels (``passthrough`` when it maps zeros to zeros, else ``channelwise``), or None."""
    return _call_verdict(fnode)[0]


def _call_verdict(fnode):
    """``(kind or None, reason or None)`` of a function-layer call (cached per op, arguments
    and input shape; a Lambda, whose closure cannot be named, each time)."""
    made = probe_calls.numpy_function(fnode.layer, fnode.node)
    if made is None:
        return None, "has a tensor argument whose value is not known when the model is built"
    fn, name = made
    shape = tuple(int(d) for d in fnode.in_shapes[0][1:])
    key = ("call", name, shape) if name is not None else None
    if key is None:
        return behaviour.function_kind(fn, shape)
    if key not in _CACHE:
        _CACHE[key] = behaviour.function_kind(fn, shape)
    return _CACHE[key]


def explain(fnode, rule=None):
    """Why the call ``fnode`` is opaque to the analysis: a short reason, for warnings and
    reports (``"mixes channels under the probe"``, ...)."""
    layer = fnode.layer
    if inherited.keras_base(layer) is not None and (why := inherited.reason(fnode, lookup(layer))):
        return why
    rule = lookup(layer) if rule is None else rule
    rank = len(fnode.in_shapes[0]) if fnode.in_shapes else 0
    if rank and rule.kind(layer, rank) != Kind.OPAQUE:
        if rule.layout is not None and not probe_calls.is_function_layer(layer):
            return "its rule does not see through this call's arguments (e.g. attention with a mask tensor)"
        return "its inputs' channels cannot be matched (another channel count, or a flattened layout)"
    if probe_calls.is_function_layer(layer):
        if _opaque_function_call(fnode, rule):
            return _call_verdict(fnode)[1] or "is channel-local (probe)"
        if not fnode.in_shapes or len(fnode.out_keys) != 1:
            return "has several outputs or no input"
        if fnode.out_shapes[0][-1:] != fnode.in_shapes[0][-1:]:
            return "changes the channel count (its rule: opaque for these arguments)"
        return "its rule is opaque for these arguments"
    if has_rule(layer):
        return "its registered rule is opaque for this configuration"
    if not _probeable(fnode):
        return "not probed (Keras' own layer, several inputs or outputs, sublayers, or a new channel count)"
    return infer_reason(layer, fnode.in_shapes[0]) or "is channel-local (probe)"


def _probeable(fnode):
    layer = fnode.layer
    module = type(layer).__module__
    # Keras' own layers without a rule (Lambda, Softmax, Attention, ...) stay opaque; the
    # custom layers of keras.applications (ConvNeXt's LayerScale) are probed like any other,
    # in either Keras.
    if module.startswith(_NOT_PROBED) or isinstance(layer, keras.Model):
        return False
    if is_keras3_object(layer) and isinstance(layer, keras3().Model):
        return False
    if len(fnode.in_keys) != 1 or len(fnode.out_keys) != 1 or not layer.built:
        return False
    if any(True for _ in layer._flatten_layers(include_self=False)):
        return False  # holds layers of its own (SE blocks, ...): not a per-channel op
    in_shape, out_shape = fnode.in_shapes[0], fnode.out_shapes[0]
    return (
        len(in_shape) >= 2
        and None not in in_shape[1:]
        and len(out_shape) >= 2
        and out_shape[-1] == in_shape[-1]
        and in_shape[-1] > 1
    )


def _key(layer, in_shape):
    try:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        config = json.dumps(config, sort_keys=True, default=repr)
    except (NotImplementedError, TypeError):
        config = f"id{id(layer)}"
    return (type(layer), config, tuple(in_shape[1:]))


def infer(layer, in_shape):
    """Whether ``layer`` is channel-local on inputs of ``in_shape`` (cached per config)."""
    return infer_reason(layer, in_shape) is None


def infer_reason(layer, in_shape):
    """None when ``layer`` is channel-local on inputs of ``in_shape``, else the reason."""
    key = _key(layer, in_shape)
    if key not in _CACHE:
        _CACHE[key] = _probe(layer, tuple(int(d) for d in in_shape[1:]))
    return _CACHE[key]


def _probe(layer, shape):
    """None when the layer, and a copy with random positive weights, are channel-local at a
    cut-down shape and at ``shape``; else the reason."""
    rng = np.random.default_rng(0)
    copies = [layer]
    small = behaviour.small_shape(lambda x: _call(layer, x), shape)
    clone = _random_clone(layer, small, rng)
    if clone is not None:
        copies.append(clone)
    for copy in copies:
        fn = lambda x, copy=copy: _call(copy, x)  # noqa: E731
        why = behaviour.channel_local(fn, small, rng)
        if why is None and small != shape:
            why = behaviour.channel_local_at_scale(fn, shape, rng)
        if why is not None:
            return why
    return None


def _random_clone(layer, shape, rng):
    """``layer`` rebuilt from its config with random positive weights, or None."""
    try:
        clone = type(layer).from_config(layer.get_config())
        _call(clone, np.zeros((1, *shape), "float32"))
        clone.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in clone.get_weights()])
    except Exception:  # noqa: BLE001 - a layer that cannot be cloned is probed as it is
        return None
    return clone


def _as_function(layer):
    """``layer``'s (last) call as a function of its channel input (a TF-op call keeps its
    other arguments), or the layer itself."""
    nodes = getattr(layer, "_inbound_nodes", None)
    if hasattr(layer, "symbol") and nodes:
        made = probe_calls.numpy_function(layer, nodes[-1])
        if made is not None:
            return made[0]
    return lambda x: _call(layer, x)


def check_stripped(name, layer, new_layer, in_shape, in_keep, out_keep):
    """Raises when the stripped ``new_layer`` on the kept input channels does not give
    ``layer``'s kept output channels (random inputs; see the module docstring)."""
    rng = np.random.default_rng(1)
    x = behaviour.probe_inputs(tuple(int(d) for d in in_shape[1:]), rng)
    expected = take(np.asarray(_as_function(layer)(x)), out_keep, -1)
    got = np.asarray(_as_function(new_layer)(take(x, in_keep, -1)))
    err = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not err <= 1e-4 * (1.0 + float(np.abs(expected).max())):
        raise ValueError(
            f"strip_pruning: layer {name!r} ({type(layer).__name__}) was inferred channel-local by a probe, but "
            f"its stripped copy differs from it on the kept channels by {err:.3g}. Register its rule: "
            f'chipnet_tf.register_layer({type(layer).__name__}, chipnet_tf.registry.LayerRule("opaque")) keeps '
            "it unpruned."
        )


__all__ = ["channel_local_rule", "check_stripped", "explain", "infer", "infer_call", "infer_reason", "rules_of"]
