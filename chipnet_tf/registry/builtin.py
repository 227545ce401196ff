"""The :class:`chipnet_tf.registry.LayerRule` of every built-in Keras layer: kind, cost
terms, surgery and constant propagation, in one plain dict (:data:`BUILTIN_RULES`) that
:mod:`chipnet_tf.registry` installs in the table.

A user's layer is added the same way, with :func:`chipnet_tf.register_layer`.
"""

import numpy as np

from chipnet_tf.compat import is_instance, keras, tf
from chipnet_tf.registry.contractions import einsum_dense_costs
from chipnet_tf.registry.heads import MULTI_HEAD_ATTENTION
from chipnet_tf.registry.vocabulary import (
    CHANNELWISE_ACTIVATIONS,
    ZERO_PRESERVING_ACTIVATIONS,
    Kind,
    LayerRule,
    activation_name,
    channels_last,
    elementwise_activation,
    prod,
    take,
)

L = keras.layers
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)


# -- kinds -----------------------------------------------------------------------------
def _grouped_depthwise(layer):
    """A grouped conv with one input and one output channel per conv group (ConvNeXt's
    ``Conv2D(C, 7, groups=C)``): a depthwise conv whose pruned channels remove conv groups."""
    groups = int(getattr(layer, "groups", 1) or 1)
    return groups > 1 and layer.built and int(layer.filters) == groups and int(layer.kernel.shape[-2]) == 1


def _conv_kind(layer, rank):
    if not channels_last(layer):
        return Kind.OPAQUE
    if _grouped_depthwise(layer):
        return Kind.DEPTHWISE if elementwise_activation(layer) else Kind.OPAQUE
    return Kind.PRODUCER


def _grouped_layout(ctx):
    """A grouped conv (``groups=G > 1``) keeps the same input and output channels in every
    conv group: its input and output spaces are tied with periods ``C_in / G`` and
    ``C_out / G`` (see :mod:`chipnet_tf.registry.layouts`), so the stripped layer is again a valid
    grouped conv with G groups. Tying offsets was chosen over removing whole conv groups:
    it keeps G, the kernel layout and every conv group's receptive field, and lets the
    smallest network keep one channel per conv group (RegNet: C/8) rather than one conv
    group (8 channels per layer). An input that is not one space is not pruned. A grouped
    conv with one input and output channel per group is a depthwise conv (its kind is
    ``depthwise``): there the pruned channels remove whole conv groups."""
    groups = int(getattr(ctx.fnode.layer, "groups", 1) or 1)
    if groups == 1 or ctx.kind != Kind.PRODUCER or ctx.out is None:
        return ctx.out
    if not ctx.spaces.tie_period(ctx.in_lays[0], ctx.in_lays[0].length // groups):
        ctx.spaces.fix_all(ctx.in_lays[0])
    ctx.spaces.tie_period(ctx.out, ctx.out.length // groups)
    return ctx.out


def _depthwise_kind(layer, rank):
    if not channels_last(layer) or int(layer.depth_multiplier) != 1 or not elementwise_activation(layer):
        return Kind.OPAQUE
    return Kind.DEPTHWISE


def _separable_kind(layer, rank):
    return Kind.PRODUCER if channels_last(layer) else Kind.OPAQUE


def _last_axis_kind(layer, rank):
    """Batch/LayerNormalization: channelwise over the channel axis only."""
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return Kind.CHANNELWISE if rank and [a % rank for a in axis] == [rank - 1] else Kind.OPAQUE


def _activation_kind(layer, rank):
    name = activation_name(layer.activation)
    if name in ZERO_PRESERVING_ACTIVATIONS:
        return Kind.PASSTHROUGH
    if name in CHANNELWISE_ACTIVATIONS:
        return Kind.CHANNELWISE
    return Kind.OPAQUE


def _relu_kind(layer, rank):
    threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
    return Kind.PASSTHROUGH if threshold >= 0 else Kind.CHANNELWISE


def _pool_kind(layer, rank):
    return Kind.PASSTHROUGH if channels_last(layer) else Kind.OPAQUE


# -- costs -----------------------------------------------------------------------------
# Each conv/dense cost function is the one FLOPs formula of its layer type: the budgets
# evaluate it on channel-count forms, registry.layer_flops on the full counts (which is
# also how depth multipliers, opaque to the analysis, are counted). A grouped conv's
# C_in * C_out / G is exact when every conv group keeps the same channels.
def _spatial(ctx):
    return prod(ctx.out_shape[1:-1])


def _writer_terms(builder, ctx, out_form):
    builder.add("channels", ctx.name, 1, out_form)
    builder.add("volume", ctx.name, _spatial(ctx), out_form)


def _conv_costs(builder, ctx):
    layer = ctx.layer
    k = prod(layer.kernel_size)
    a = _spatial(ctx)
    # A transposed conv does its multiply-accumulates at the input positions.
    macs_at = prod(ctx.in_shape[1:-1]) if is_instance(layer, _TRANSPOSED) else a
    groups = int(getattr(layer, "groups", 1) or 1)
    bias = 1 if layer.use_bias else 0
    fin, fout = ctx.in_forms[0], ctx.out_form
    if _grouped_depthwise(layer):  # one channel per conv group: the groups are pruned
        if ctx.first_call:
            builder.add("params", ctx.name, k + bias, fout)
        builder.add("flops", ctx.name, a * (k + bias), fout)
        _writer_terms(builder, ctx, fout)
        return
    if ctx.first_call:
        builder.add("params", ctx.name, k / groups, fin, fout)
        builder.add("params", ctx.name, bias, fout)
    builder.add("flops", ctx.name, macs_at * k / groups, fin, fout)
    builder.add("flops", ctx.name, a * bias, fout)
    _writer_terms(builder, ctx, fout)


def _dense_costs(builder, ctx):
    a = _spatial(ctx)
    bias = 1 if ctx.layer.use_bias else 0
    fin, fout = ctx.in_forms[0], ctx.out_form
    if ctx.first_call:
        builder.add("params", ctx.name, 1, fin, fout)
        builder.add("params", ctx.name, bias, fout)
    builder.add("flops", ctx.name, a, fin, fout)
    builder.add("flops", ctx.name, a * bias, fout)
    _writer_terms(builder, ctx, fout)


def _depthwise_costs(builder, ctx):
    layer = ctx.layer
    k = prod(layer.kernel_size)
    m = int(layer.depth_multiplier)  # > 1 only when opaque (counted by layer_flops)
    a = _spatial(ctx)
    bias = 1 if layer.use_bias else 0
    f = ctx.in_forms[0]
    if ctx.first_call:
        builder.add("params", ctx.name, (k + bias) * m, f)
    builder.add("flops", ctx.name, a * (k + bias) * m, f)
    _writer_terms(builder, ctx, f)


def _separable_costs(builder, ctx):
    layer = ctx.layer
    k = prod(layer.kernel_size)
    m = int(layer.depth_multiplier)
    a = _spatial(ctx)
    bias = 1 if layer.use_bias else 0
    fin, fout = ctx.in_forms[0], ctx.out_form
    if ctx.first_call:
        builder.add("params", ctx.name, k * m, fin)
        builder.add("params", ctx.name, m, fin, fout)
        builder.add("params", ctx.name, bias, fout)
    builder.add("flops", ctx.name, a * k * m, fin)
    builder.add("flops", ctx.name, a * m, fin, fout)
    builder.add("flops", ctx.name, a * bias, fout)
    _writer_terms(builder, ctx, fout)


def _embedding_costs(builder, ctx):
    """A lookup: no multiply-accumulate; a row of ``output_dim`` weights per token id."""
    if ctx.first_call:
        builder.add("params", ctx.name, int(ctx.layer.input_dim), ctx.out_form)
    _writer_terms(builder, ctx, ctx.out_form)


def _batchnorm_costs(builder, ctx):
    if ctx.first_call:
        per_channel = 2 + int(bool(ctx.layer.scale)) + int(bool(ctx.layer.center))
        builder.add("params", ctx.name, per_channel, ctx.out_form)


def _layernorm_costs(builder, ctx):
    if ctx.first_call:
        per_channel = int(bool(ctx.layer.scale)) + int(bool(ctx.layer.center))
        builder.add("params", ctx.name, per_channel, ctx.out_form)


def _prelu_costs(builder, ctx):
    if not ctx.first_call:
        return
    shared = {int(a) for a in (ctx.layer.shared_axes or [])}
    dims = list(ctx.out_shape[1:])
    other = prod(d for axis, d in enumerate(dims[:-1], start=1) if axis not in shared)
    builder.add("params", ctx.name, other, ctx.out_form)


# -- surgery ---------------------------------------------------------------------------
def _conv_surgery(ctx):
    layer, w = ctx.layer, ctx.weights
    out_axis, in_axis = (-2, -1) if is_instance(layer, _TRANSPOSED) else (-1, -2)
    in_keep = ctx.in_keep
    groups = int(getattr(layer, "groups", 1) or 1)
    if groups != 1 and in_keep is not None and not _grouped_depthwise(layer):
        # The kernel holds C_in / G input channels per conv group: every conv group keeps
        # the same offsets (the analysis ties them), so slice by the first group's offsets.
        per_group = int(w[0].shape[in_axis])
        in_keep = np.asarray(in_keep)[np.asarray(in_keep) < per_group]
        expected = (in_keep[None, :] + per_group * np.arange(groups)[:, None]).reshape(-1)
        if not np.array_equal(expected, ctx.in_keep):
            raise ValueError(
                f"Cannot strip grouped convolution {layer.name!r} (groups={groups}): its kept input channels "
                "are not the same in every conv group."
            )
    if _grouped_depthwise(layer):
        in_keep = None  # the kernel holds one input channel per conv group
        if ctx.out_keep is not None:
            ctx.config["groups"] = len(ctx.out_keep)
    kernel = take(take(w[0], ctx.out_keep, out_axis), in_keep, in_axis)
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
    m = int(ctx.layer.depth_multiplier)
    w = ctx.weights
    depthwise = take(w[0], ctx.in_keep, -2)
    rows = None
    if ctx.in_keep is not None:
        rows = (np.asarray(ctx.in_keep)[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    pointwise = take(take(w[1], rows, -2), ctx.out_keep, -1)
    ctx.config["filters"] = int(pointwise.shape[-1])
    return ctx.config, [depthwise, pointwise] + [take(b, ctx.out_keep, 0) for b in w[2:]]


def _embedding_surgery(ctx):
    table = take(ctx.weights[0], ctx.out_keep, 1)
    ctx.config["output_dim"] = int(table.shape[1])
    return ctx.config, [table] + ctx.weights[1:]


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
    if is_instance(ctx.layer, L.Reshape) and ctx.out_keep is not None:
        target = list(ctx.config["target_shape"])
        target[-1] = len(ctx.out_keep)
        ctx.config["target_shape"] = tuple(target)
    return ctx.config, ctx.weights


# -- constants through elementwise layers (fully pruned branches) ---------------------
def _call_on_constant(layer, value, keep):
    """An elementwise layer maps a per-channel constant to a per-channel constant."""
    return layer(tf.constant(value[None], tf.float32), training=False).numpy()[0]


def _batchnorm_constant(layer, value, keep):
    weights = {w.name.split("/")[-1].split(":")[0]: take(w.numpy(), keep, 0) for w in layer.weights}
    gamma = weights.get("gamma", 1.0)
    beta = weights.get("beta", 0.0)
    return gamma * (value - weights["moving_mean"]) / np.sqrt(weights["moving_variance"] + layer.epsilon) + beta


# -- the table -------------------------------------------------------------------------
def _rule(kind, costs=None, surgery=None, constant=None, flops=False):
    return LayerRule(kind, costs=costs, surgery=surgery, constant=constant, flops=flops)


_CONV = LayerRule(_conv_kind, _conv_costs, _conv_surgery, flops=True, layout=_grouped_layout)
_DEPTHWISE = _rule(_depthwise_kind, _depthwise_costs, _depthwise_surgery, flops=True)
_SEPARABLE = _rule(_separable_kind, _separable_costs, _separable_surgery, flops=True)
_POOL = _rule(_pool_kind)
_ELEMENTWISE = _rule(Kind.PASSTHROUGH, constant=_call_on_constant)
_NOISE = _rule(Kind.CHANNELWISE, constant=_call_on_constant)
_RESHAPE = _rule(Kind.RESHAPE, surgery=_reshape_surgery)

BUILTIN_RULES = {
    **dict.fromkeys((L.Conv1D, L.Conv2D, L.Conv3D) + _TRANSPOSED, _CONV),
    L.Dense: _rule(Kind.PRODUCER, _dense_costs, _dense_surgery, flops=True),
    # Opaque to the analysis; their FLOPs are constants of the budgets.
    L.EinsumDense: _rule(Kind.OPAQUE, einsum_dense_costs, flops=True),
    L.DepthwiseConv1D: _DEPTHWISE,
    L.DepthwiseConv2D: _DEPTHWISE,
    L.SeparableConv1D: _SEPARABLE,
    L.SeparableConv2D: _SEPARABLE,
    L.BatchNormalization: _rule(_last_axis_kind, _batchnorm_costs, _per_channel_surgery, _batchnorm_constant),
    L.LayerNormalization: _rule(_last_axis_kind, _layernorm_costs, _per_channel_surgery),
    L.Activation: _rule(_activation_kind, constant=_call_on_constant),
    L.ReLU: _rule(_relu_kind, constant=_call_on_constant),
    L.PReLU: _rule(Kind.PASSTHROUGH, _prelu_costs, _per_channel_surgery),
    **dict.fromkeys((L.LeakyReLU, L.ELU, L.ThresholdedReLU), _ELEMENTWISE),
    L.ActivityRegularization: _rule(Kind.PASSTHROUGH),
    **dict.fromkeys(
        (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout), _ELEMENTWISE
    ),
    L.GaussianNoise: _NOISE,
    L.AlphaDropout: _NOISE,
    L.Rescaling: _rule(Kind.CHANNELWISE, surgery=_rescaling_surgery),
    **dict.fromkeys(
        (
            L.MaxPooling1D,
            L.MaxPooling2D,
            L.MaxPooling3D,
            L.AveragePooling1D,
            L.AveragePooling2D,
            L.AveragePooling3D,
            L.GlobalMaxPooling1D,
            L.GlobalMaxPooling2D,
            L.GlobalMaxPooling3D,
            L.GlobalAveragePooling1D,
            L.GlobalAveragePooling2D,
            L.GlobalAveragePooling3D,
            L.UpSampling1D,
            L.UpSampling2D,
            L.UpSampling3D,
            L.ZeroPadding1D,
            L.ZeroPadding2D,
            L.ZeroPadding3D,
            L.Cropping1D,
            L.Cropping2D,
            L.Cropping3D,
        ),
        _POOL,
    ),
    **dict.fromkeys((L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average), _rule(Kind.MERGE)),
    L.Concatenate: _rule(Kind.CONCAT),
    L.Embedding: _rule(Kind.PRODUCER, _embedding_costs, _embedding_surgery),
    L.MultiHeadAttention: MULTI_HEAD_ATTENTION,
    L.Flatten: _RESHAPE,
    L.Reshape: _RESHAPE,
}
