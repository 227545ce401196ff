"""Layer type -> how channels flow through it and what it costs.

Every Keras layer the group analysis meets is classified by a :class:`LayerRule`:

``producer``     writes a new channel space (Conv*, Conv*Transpose, Dense, SeparableConv*)
``depthwise``    per-channel filter: output channels are the input channels (DepthwiseConv*)
``channelwise``  per-channel op that may turn a zero into a non-zero (BatchNormalization,
                 sigmoid, Rescaling, GaussianNoise)
``passthrough``  keeps channels and keeps zeros zero (ReLU family, pooling, padding, dropout)
``merge``        element-wise merge: all inputs share channels (Add, Multiply, ...)
``concat``       concatenation (channel axis: layouts are concatenated; otherwise a merge)
``reshape``      Flatten/Reshape (a flatten tiles the channel layout over positions)
``opaque``       anything the analysis cannot see through: its inputs and outputs are never
                 pruned (Lambda, TFOpLambda, custom layers, softmax, LayerNormalization over
                 other axes, ...)
A LayerNormalization over the channel axis is ``channelwise``: prune_low_budget replaces it
by a GatedLayerNormalization whose statistics skip pruned channels.

Users can describe their own layers with :func:`register_layer`; for example a custom
zero-preserving activation::

    chipnet_tf.registry.register_layer(MyActivation, chipnet_tf.registry.LayerRule("passthrough"))
"""

import math

from chipnet_tf.compat import keras

KINDS = ("producer", "depthwise", "channelwise", "passthrough", "merge", "concat", "reshape", "opaque")

# Activations with f(0) == 0: a pruned (zeroed) channel stays zero through them.
ZERO_PRESERVING_ACTIVATIONS = frozenset(
    {"relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "tanh", "linear", "leaky_relu", "mish", "softsign"}
)
# Per-channel activations with f(0) != 0.
CHANNELWISE_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "softplus", "exponential"})


L = keras.layers
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_COSTED = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D)
_COSTED += (L.SeparableConv2D,) + _TRANSPOSED


def _prod(values):
    return int(math.prod(int(v) for v in values))


def _activation_name(activation):
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


class LayerRule:
    """How a layer type passes channels and what it costs.

    Args:
        kind: one of ``KINDS``, or a callable ``(layer, input_rank) -> kind`` for
            config-dependent rules.
        costs: optional callable ``costs(builder, ctx)`` adding the layer's cost terms; when
            absent the layer's ``count_params()`` is counted as a constant.
    """

    def __init__(self, kind, costs=None):
        if not callable(kind) and kind not in KINDS:
            raise ValueError(f"Unknown layer kind {kind!r}. Accepted: {', '.join(KINDS)}.")
        self._kind = kind
        self._costs = costs

    def kind(self, layer, rank):
        """The layer's kind given the rank of its (first) input."""
        kind = self._kind(layer, rank) if callable(self._kind) else self._kind
        if kind not in KINDS:
            raise ValueError(f"Layer rule for {type(layer).__name__} returned unknown kind {kind!r}.")
        return kind

    def add_costs(self, builder, ctx):
        if self._costs is not None and ctx.kind != "opaque":
            self._costs(builder, ctx)
        else:
            # Opaque (or cost-less) layers: constants. A grouped conv or a depthwise conv
            # with depth_multiplier > 1 is opaque but still costs FLOPs.
            if ctx.first_call:
                n = ctx.layer.count_params() if ctx.layer.built else 0
                builder.add("params", ctx.name, n, builder.one)
            builder.add("flops", ctx.name, layer_flops(ctx.layer, ctx.in_shape, ctx.out_shape), builder.one)


_REGISTRY = {}


def register_layer(layer_class, rule):
    """Registers (or replaces) the :class:`LayerRule` for ``layer_class`` and subclasses."""
    if not isinstance(layer_class, type):
        raise TypeError(f"register_layer expects a layer class. Received: {layer_class!r}")
    if not isinstance(rule, LayerRule):
        raise TypeError(f"register_layer expects a LayerRule. Received: {rule!r}")
    _REGISTRY[layer_class] = rule


def lookup_class(table, layer, default=None):
    """``table[cls]`` for ``layer``'s class or its nearest base class in ``table``."""
    for klass in type(layer).__mro__:
        if klass in table:
            return table[klass]
    return default


def lookup(layer):
    """The rule for ``layer``: its class or nearest registered base class, else opaque."""
    return lookup_class(_REGISTRY, layer, _OPAQUE)


def is_known(layer):
    return any(k in _REGISTRY for k in type(layer).__mro__)


_OPAQUE = LayerRule("opaque")


# -- cost functions ------------------------------------------------------------------
def layer_flops(layer, in_shape, out_shape):
    """FLOPs of one call of ``layer`` from its input/output shapes (channels last).

    chipnet_tf's convention (the paper's): multiply-accumulates of convolutions
    (incl. transposed, depthwise, separable, grouped) and dense layers, plus their bias
    adds; every other layer costs 0. Batch dimension excluded.
    """
    if not in_shape or not out_shape:
        return 0
    if not isinstance(layer, _COSTED):
        return _sublayer_flops(layer, in_shape)
    if not _channels_last(layer):
        return 0
    cin, cout = int(in_shape[-1]), int(out_shape[-1])
    out_positions = _prod(out_shape[1:-1])
    bias = _prod(out_shape[1:]) if getattr(layer, "use_bias", False) else 0
    if isinstance(layer, L.Dense):
        return out_positions * cin * cout + bias
    k = _prod(layer.kernel_size)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _prod(in_shape[1:-1]) * k * cin * cout + bias
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        m = int(layer.depth_multiplier)
        return out_positions * (k * cin * m + cin * m * cout) + bias
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return out_positions * k * cin * int(layer.depth_multiplier) + bias
    return out_positions * k * (cin // int(getattr(layer, "groups", 1) or 1)) * cout + bias


def _spatial(ctx):
    return _prod(ctx.out_shape[1:-1])


def _writer_terms(builder, ctx, out_form):
    builder.add("channels", ctx.name, 1, out_form)
    builder.add("volume", ctx.name, _spatial(ctx), out_form)


def _conv_costs(builder, ctx):
    layer = ctx.layer
    k = _prod(layer.kernel_size)
    a = _spatial(ctx)
    # A transposed conv does its multiply-accumulates at the input positions.
    macs_at = _prod(ctx.in_shape[1:-1]) if isinstance(layer, _TRANSPOSED) else a
    bias = 1 if layer.use_bias else 0
    fin, fout = ctx.in_forms[0], ctx.out_form
    if ctx.first_call:
        builder.add("params", ctx.name, k, fin, fout)
        builder.add("params", ctx.name, bias, fout)
    builder.add("flops", ctx.name, macs_at * k, fin, fout)
    builder.add("flops", ctx.name, a * bias, fout)
    _writer_terms(builder, ctx, fout)


def _dense_costs(builder, ctx):
    layer = ctx.layer
    a = _spatial(ctx)
    bias = 1 if layer.use_bias else 0
    fin, fout = ctx.in_forms[0], ctx.out_form
    if ctx.first_call:
        builder.add("params", ctx.name, 1, fin, fout)
        builder.add("params", ctx.name, bias, fout)
    builder.add("flops", ctx.name, a, fin, fout)
    builder.add("flops", ctx.name, a * bias, fout)
    _writer_terms(builder, ctx, fout)


def _depthwise_costs(builder, ctx):
    layer = ctx.layer
    k = _prod(layer.kernel_size)
    a = _spatial(ctx)
    bias = 1 if layer.use_bias else 0
    f = ctx.in_forms[0]
    if ctx.first_call:
        builder.add("params", ctx.name, k + bias, f)
    builder.add("flops", ctx.name, a * (k + bias), f)
    _writer_terms(builder, ctx, f)


def _separable_costs(builder, ctx):
    layer = ctx.layer
    k = _prod(layer.kernel_size)
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
    other = _prod(d for axis, d in enumerate(dims[:-1], start=1) if axis not in shared)
    builder.add("params", ctx.name, other, ctx.out_form)


def _sublayer_flops(layer, in_shape):
    """FLOPs of a custom (opaque) layer that holds conv/dense sublayers, e.g. keras-cv's
    SqueezeAndExcite2D: its call is traced at batch 1 and the conv/matmul/bias-add ops of
    the graph are counted from their static shapes. Layers without such sublayers cost 0.
    """
    try:
        subs = [s for s in layer._flatten_layers(include_self=False) if isinstance(s, _COSTED)]
    except AttributeError:
        return 0
    if not subs:
        return 0
    from chipnet_tf.compat import tf

    key = tuple(in_shape)
    cache = layer.__dict__.setdefault("_chipnet_flops_cache", {})
    if key in cache:
        return cache[key]
    spec = tf.TensorSpec((1,) + tuple(in_shape[1:]), tf.float32)
    graph = tf.function(lambda x: layer(x, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "Conv3D"):
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            total += _prod(out[1:]) * _prod(kernel[:-1])
        elif op.type == "DepthwiseConv2dNative":
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            total += _prod(out[1:]) * _prod(kernel[:2])
        elif op.type in ("MatMul", "BatchMatMulV2"):
            a = op.inputs[0].shape
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = a[-2] if transpose_a else a[-1]
            total += _prod(op.outputs[0].shape) * int(inner)
        elif op.type == "BiasAdd":
            total += _prod(op.outputs[0].shape[1:])
    cache[key] = int(total)
    return cache[key]


# -- kind functions ------------------------------------------------------------------
def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _elementwise_activation(layer):
    """True when the layer's own activation acts on each value separately (not softmax)."""
    name = _activation_name(getattr(layer, "activation", None))
    return name is None or name in ZERO_PRESERVING_ACTIVATIONS or name in CHANNELWISE_ACTIVATIONS


def output_prunable(layer):
    """Whether a producer's output channels may be pruned: not when its own activation mixes
    channels (softmax), since the kept channels' values would change."""
    return _elementwise_activation(layer)


def _conv_kind(layer, rank):
    if not _channels_last(layer) or getattr(layer, "groups", 1) != 1:
        return "opaque"
    return "producer"


def _depthwise_kind(layer, rank):
    if not _channels_last(layer) or int(layer.depth_multiplier) != 1 or not _elementwise_activation(layer):
        return "opaque"
    return "depthwise"


def _separable_kind(layer, rank):
    return "producer" if _channels_last(layer) else "opaque"


def _batchnorm_kind(layer, rank):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axis = [a % rank if rank else a for a in axis]
    return "channelwise" if rank and axis == [rank - 1] else "opaque"


def _layernorm_kind(layer, rank):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return "channelwise" if rank and [a % rank for a in axis] == [rank - 1] else "opaque"


def _activation_kind(layer, rank):
    name = _activation_name(layer.activation)
    if name in ZERO_PRESERVING_ACTIVATIONS:
        return "passthrough"
    if name in CHANNELWISE_ACTIVATIONS:
        return "channelwise"
    return "opaque"


def _relu_kind(layer, rank):
    threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
    return "passthrough" if threshold >= 0 else "channelwise"


def _pool_kind(layer, rank):
    return "passthrough" if _channels_last(layer) else "opaque"


def _concat_kind(layer, rank):
    return "concat"


for _cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    register_layer(_cls, LayerRule(_conv_kind, _conv_costs))
register_layer(L.Dense, LayerRule("producer", _dense_costs))
for _cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    register_layer(_cls, LayerRule(_depthwise_kind, _depthwise_costs))
for _cls in (L.SeparableConv1D, L.SeparableConv2D):
    register_layer(_cls, LayerRule(_separable_kind, _separable_costs))
register_layer(L.BatchNormalization, LayerRule(_batchnorm_kind, _batchnorm_costs))
register_layer(L.LayerNormalization, LayerRule(_layernorm_kind, _layernorm_costs))
register_layer(L.Activation, LayerRule(_activation_kind))
register_layer(L.ReLU, LayerRule(_relu_kind))
register_layer(L.PReLU, LayerRule("passthrough", _prelu_costs))
for _cls in (L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.ActivityRegularization):
    register_layer(_cls, LayerRule("passthrough"))
for _cls in (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout):
    register_layer(_cls, LayerRule("passthrough"))
for _cls in (L.GaussianNoise, L.AlphaDropout, L.Rescaling):
    register_layer(_cls, LayerRule("channelwise"))
for _cls in (
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
):
    register_layer(_cls, LayerRule(_pool_kind))
for _cls in (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D):
    register_layer(_cls, LayerRule(_pool_kind))
for _cls in (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average):
    register_layer(_cls, LayerRule("merge"))
register_layer(L.Concatenate, LayerRule(_concat_kind))
for _cls in (L.Flatten, L.Reshape):
    register_layer(_cls, LayerRule("reshape"))
