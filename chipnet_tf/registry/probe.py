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

A probe can miss what depends on rare inputs or on the channel count itself, so
:func:`chipnet_tf.strip_pruning` checks every inferred layer: the stripped layer on the
kept channels of random inputs must give the original layer's kept outputs, or it raises
a ``ValueError`` naming the layer. The analysis warns once per inferred layer with the
``register_layer`` line that pins the rule (and silences the warning).
"""

import json

import numpy as np

from chipnet_tf.compat import is_keras3_object, keras, keras3, tf
from chipnet_tf.registry.table import has_rule, lookup
from chipnet_tf.registry.vocabulary import Kind, LayerRule, take

# (class, config, input shape) -> the inferred rule, or None when the layer mixes channels.
_CACHE = {}
_RTOL = 1e-5
_MAX_ELEMENTS = 1 << 22  # probe batches are chunked to about 16 MB of float32
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


def inferred_message(name, class_name):
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
        rules.append(rule)
    return rules, inferred


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
    key = _key(layer, in_shape)
    if key not in _CACHE:
        _CACHE[key] = _probe(layer, tuple(int(d) for d in in_shape[1:]))
    return _CACHE[key]


def _small_shape(layer, shape):
    """``shape`` with each spatial size cut to at most 4 when the layer accepts that (the
    probe's cost grows with channels x positions x channels); else ``shape``."""
    small = tuple(min(int(d), 4) for d in shape[:-1]) + (shape[-1],)
    if small == shape:
        return shape
    try:
        out = _call(layer, np.zeros((1, *small), "float32"))
    except Exception:  # noqa: BLE001 - e.g. per-position weights: probe at the real shape
        return shape
    return small if out.ndim == len(shape) + 1 and out.shape[-1] == shape[-1] else shape


def _probe(layer, shape):
    rng = np.random.default_rng(0)
    shape = _small_shape(layer, shape)
    copies = [layer]
    clone = _random_clone(layer, shape, rng)
    if clone is not None:
        copies.append(clone)
    return all(_is_channel_local(c, shape, rng) for c in copies)


def _random_clone(layer, shape, rng):
    """``layer`` rebuilt from its config with random positive weights, or None."""
    try:
        clone = type(layer).from_config(layer.get_config())
        _call(clone, np.zeros((1, *shape), "float32"))
        clone.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in clone.get_weights()])
    except Exception:  # noqa: BLE001 - a layer that cannot be cloned is probed as it is
        return None
    return clone


def _probe_inputs(shape, rng):
    base = rng.normal(size=(5, *shape))
    scales = np.array([1.0, 100.0, 0.01, 1.0, 1.0]).reshape(-1, *[1] * len(shape))
    x = base * scales
    x[3] = np.abs(x[3])
    x[4] = -np.abs(x[4])
    return x.astype("float32")


def _is_channel_local(layer, shape, rng):
    """Perturbs one input channel at a time; True when only that output channel moves."""
    channels = shape[-1]
    x = _probe_inputs(shape, rng)
    try:
        y = _call(layer, x)
    except Exception:  # noqa: BLE001 - a layer the probe cannot run stays opaque
        return False
    if y.shape != x.shape[:1] + y.shape[1:] or y.shape[-1] != channels or not np.all(np.isfinite(y)):
        return False
    per_chunk = max(1, _MAX_ELEMENTS // x.size)
    for start in range(0, channels, per_chunk):
        chans = np.arange(start, min(channels, start + per_chunk))
        xp = np.repeat(x[None], len(chans), axis=0)  # copy i perturbs channel chans[i] only
        scale = np.abs(np.moveaxis(x[..., chans], -1, 0)) + 1.0
        xp[np.arange(len(chans)), ..., chans] += rng.normal(size=scale.shape).astype("float32") * scale
        yp = _call(layer, xp.reshape(-1, *shape)).reshape(len(chans), *y.shape)
        if not np.all(np.isfinite(yp)):
            return False
        moved = np.abs(yp - y[None]).reshape(len(chans), -1, channels).max(axis=1)
        tol = _RTOL * (np.abs(y).reshape(-1, channels).max(axis=0) + 1.0)
        moved = moved > tol[None, :]
        moved[np.arange(len(chans)), chans] = False
        if moved.any():
            return False
    return True


def _call(layer, x):
    """``layer`` on the numpy array ``x`` (inference mode), as a numpy array."""
    if is_keras3_object(layer):  # any Keras 3 backend
        ops = keras3().ops
        return np.asarray(ops.convert_to_numpy(layer(ops.convert_to_tensor(x), training=False)))
    return np.asarray(layer(tf.constant(x), training=False))


def check_stripped(name, layer, new_layer, in_shape, in_keep, out_keep):
    """Raises when the stripped ``new_layer`` on the kept input channels does not give
    ``layer``'s kept output channels (random inputs; see the module docstring)."""
    rng = np.random.default_rng(1)
    x = _probe_inputs(tuple(int(d) for d in in_shape[1:]), rng)
    expected = take(_call(layer, x), out_keep, -1)
    got = _call(new_layer, take(x, in_keep, -1))
    err = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not err <= 1e-4 * (1.0 + float(np.abs(expected).max())):
        raise ValueError(
            f"strip_pruning: layer {name!r} ({type(layer).__name__}) was inferred channel-local by a probe, but "
            f"its stripped copy differs from it on the kept channels by {err:.3g}. Register its rule: "
            f'chipnet_tf.register_layer({type(layer).__name__}, chipnet_tf.registry.LayerRule("opaque")) keeps '
            "it unpruned."
        )


__all__ = ["channel_local_rule", "check_stripped", "infer", "rules_of"]
