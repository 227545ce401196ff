"""FLOPs of a layer call, and the cost terms of a layer whose rule has none.

chipnet_tf's convention (the paper's): multiply-accumulates of convolutions and dense
layers plus their bias adds. A conv/dense rule's own ``costs`` function is evaluated at the
full channel counts, so budgets and :func:`chipnet_tf.count_flops` share one formula.
"""

import contextlib
import weakref

from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import is_keras3_object, keras, keras3, tf
from chipnet_tf.registry.contractions import einsum_macs
from chipnet_tf.registry.table import lookup
from chipnet_tf.registry.vocabulary import CostContext, Kind, channels_last, prod


class PerRow:
    """A cost builder for a call that runs on ``rows`` batch rows per example (after a
    reshape that folds patches or windows into the batch axis): the FLOPs and activation
    volume terms it is given count ``rows`` times, parameters and channels once."""

    def __init__(self, builder, rows):
        self._builder, self._rows = builder, rows

    def __getattr__(self, name):
        return getattr(self._builder, name)

    def add(self, budget_type, layer_name, coef, f1, f2=None):
        scale = self._rows if budget_type in ("flops", "volume") else 1
        self._builder.add(budget_type, layer_name, coef * scale, f1, f2)


def add_costs(rule, builder, ctx, rows=1):
    """Adds one layer call's cost terms: the rule's own ``costs`` for a layer the analysis
    sees through, else the layer's parameters and FLOPs as constants. ``rows``: batch rows
    per example the call runs on (:class:`PerRow`). A custom layer whose rule counts no
    FLOPs (a probed channel-local one) adds the FLOPs of its traced call
    (:func:`_sublayer_flops`) per kept channel: what such a layer computes on its weights
    (kecam's Fourier position encoding projects a constant grid to its channels) shrinks
    with them."""
    if rule.costs is not None and ctx.kind != Kind.OPAQUE:
        rule.costs(PerRow(builder, rows) if rows != 1 else builder, ctx)
        flops = _sublayer_flops(ctx.layer, ctx.in_shape, rows) if not rule.flops and ctx.in_shape else 0
        if flops:
            builder.add("flops", ctx.name, flops / int(ctx.in_shape[-1]), ctx.in_forms[0])
        return
    # Opaque (or cost-less) layers: constants. A grouped conv or a depthwise conv with
    # depth_multiplier > 1 is opaque but still costs FLOPs.
    if ctx.first_call:
        n = ctx.layer.count_params() if getattr(ctx.layer, "built", False) else 0  # a keras.ops call has none
        builder.add("params", ctx.name, n, builder.one)
    call = (ctx.call_args, ctx.call_kwargs)
    flops = layer_flops(ctx.layer, ctx.in_shape, ctx.out_shape, ctx.in_shapes, call=call, rows=rows)
    builder.add("flops", ctx.name, flops, builder.one)


def layer_flops(layer, in_shape, out_shape, in_shapes=None, call=None, rows=1):
    """FLOPs of one call of ``layer`` from its input/output shapes (channels last).

    chipnet_tf's convention (the paper's): multiply-accumulates of convolutions
    (incl. transposed, depthwise, separable, grouped), dense layers, ``EinsumDense``,
    ``MultiHeadAttention`` (projections, ``QK^T`` and ``AV``) and einsum/matmul calls, plus
    their bias adds; every other layer costs 0. Batch dimension excluded. The count is the
    layer rule's own cost function evaluated at the full channel counts, so budgets and
    :func:`chipnet_tf.count_flops` share one formula.

    ``in_shapes`` lists every input's shape for a layer with several (an attention layer's
    query, value and key); ``call`` is the optional ``(args, kwargs)`` of the call
    (``node.call_args``/``call_kwargs``), for layers whose cost depends on more than their
    first input (which input is the query, an einsum's operands). ``rows``: batch rows per
    example the call runs on (a call after a reshape that folds windows into the batch).
    """
    if not in_shape or not out_shape:
        return 0
    rule = lookup(layer)
    if not rule.flops:
        return _sublayer_flops(layer, in_shape, rows, call)
    if not channels_last(layer):
        return 0
    builder = CostSpecBuilder([], [])
    in_shapes = [tuple(s) for s in (in_shapes or [in_shape])]
    ctx = CostContext(
        layer=layer,
        name=layer.name,
        kind=Kind.OPAQUE,
        in_forms=[builder.form(int(s[-1]) if s else 1, {}) for s in in_shapes],  # a scalar input: one value
        out_form=builder.form(int(out_shape[-1]), {}),
        out_shape=tuple(out_shape),
        in_shape=tuple(in_shape),
        first_call=False,
        in_shapes=in_shapes,
        call_args=tuple(call[0]) if call else (),
        call_kwargs=dict(call[1]) if call else {},
    )
    rule.costs(builder, ctx)
    return rows * int(round(builder.constant_value("flops")))


# Per layer object: {input shape: FLOPs} of a traced custom layer. Weak keys, so the
# cache neither keeps a user's layer alive nor stores anything on it.
_SUBLAYER_FLOPS = weakref.WeakKeyDictionary()


def _sublayer_flops(layer, in_shape, rows=1, call=None):
    """FLOPs of a custom (opaque) layer that holds conv/dense/attention sublayers, e.g.
    keras-cv's SqueezeAndExcite2D or keras-hub's transformer encoder blocks, or weights of
    its own (kecam's Swin V2 position-bias MLP): its call is traced at batch 1 and 2 and the
    conv/matmul/einsum/bias-add ops of the graph are counted from their static shapes. What
    grows with the batch counts ``rows`` times, what does not (a computation on weights
    alone) once. Keras' own layers and layers without such sublayers or weights cost 0.
    ``call``: the call's ``(args, kwargs)``; arguments other than its input tensor (keras-hub
    Swin's ``patch_merging(x, H, W)``) are passed as they were.
    """
    try:
        subs = [s for s in layer._flatten_layers(include_self=False) if lookup(s).flops]
    except AttributeError:
        return 0
    custom = not type(layer).__module__.startswith(_KERAS_MODULES)
    if not subs and not (custom and getattr(layer, "weights", None)):
        return 0
    key = tuple(in_shape)
    cache = _SUBLAYER_FLOPS.setdefault(layer, {})
    if key not in cache:
        try:
            cache[key] = (_traced_flops(layer, in_shape, 1, call), _traced_flops(layer, in_shape, 2, call))
        except Exception as e:  # noqa: BLE001 - a layer of weights alone that cannot be traced on its own
            if subs:
                raise ValueError(
                    f"count_flops cannot trace the call of layer {layer.name!r} ({type(layer).__name__}) on an input "
                    f"of shape {tuple(in_shape)}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}. Register a "
                    "rule with its costs: chipnet_tf.register_layer(cls, chipnet_tf.registry.LayerRule(...))."
                ) from None
            cache[key] = (0, 0)
    one, two = cache[key]
    return one + (rows - 1) * (two - one)


@contextlib.contextmanager
def _grouped_convs_inline(layer):
    """On CPU both Kerases run a grouped convolution (a depthwise ``Conv2D(groups=C)``, as in
    keras-hub's MobileNetV3 blocks) as a call of an XLA-compiled function whose ops the
    traced graph does not show. The graph is only traced here, never run, so the
    convolution is traced as the plain Conv2D op it is."""
    if is_keras3_object(layer):
        if keras3().backend.backend() != "tensorflow":
            yield
            return
        from keras.src.backend.tensorflow import nn as owner  # the TF backend's conv

        original = owner.conv

        def replacement(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
            if len(inputs.shape) != 4 or data_format not in (None, "channels_last"):
                return original(inputs, kernel, strides, padding, data_format, dilation_rate)
            return tf.nn.convolution(inputs, kernel, strides, padding.upper(), dilations=dilation_rate)

        name = "conv"
    else:
        owner = next(c for c in keras.layers.Conv2D.__mro__ if "_jit_compiled_convolution_op" in vars(c))
        original = owner._jit_compiled_convolution_op

        def replacement(self, inputs, kernel):
            return self.convolution_op(inputs, kernel)

        name = "_jit_compiled_convolution_op"
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _other_arguments(call):
    """The call's arguments after its input tensor, when none of them is a tensor (Python
    values such as keras-hub Swin's ``H, W``); none otherwise."""
    if not call:
        return (), {}
    args, kwargs = tuple(call[0])[1:], {k: v for k, v in dict(call[1]).items() if k != "training"}
    if any(hasattr(v, "shape") or hasattr(v, "_keras_history") for v in (*args, *kwargs.values())):
        return (), {}
    return args, kwargs


# Keras' own layers (their weights are counted by their rules) and chipnet_tf's gated ones.
_KERAS_MODULES = ("keras.", "tf_keras.", "keras_core.", "chipnet_tf.")


def _traced_flops(layer, in_shape, batch, call=None):
    """The MACs and bias adds of ``layer``'s call at ``batch``, every element counted."""
    spec = tf.TensorSpec((batch,) + tuple(in_shape[1:]), tf.float32)
    args, kwargs = _other_arguments(call)
    with _grouped_convs_inline(layer):
        graph = tf.function(lambda x: layer(x, *args, training=False, **kwargs)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "Conv3D"):
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            total += prod(out) * prod(kernel[:-1])
        elif op.type == "DepthwiseConv2dNative":
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            total += prod(out) * prod(kernel[:2])
        elif op.type == "Einsum":
            total += einsum_macs(op.get_attr("equation").decode(), [t.shape.as_list() for t in op.inputs])
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a = op.inputs[0].shape
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = a[-2] if transpose_a else a[-1]
            total += prod(op.outputs[0].shape) * int(inner)
        elif op.type == "BiasAdd" or (op.type in ("AddV2", "Add") and _is_bias_add(op)):
            total += prod(op.outputs[0].shape)
    return int(total)


_PRODUCER_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")


def _through_reshapes(tensor):
    op = tensor.op
    while op.type in ("Reshape", "Identity") and op.inputs:
        op = op.inputs[0].op
    return op


def _is_bias_add(op):
    """A bias added with AddV2 rather than BiasAdd: both Kerases' EinsumDense (attention's
    query, key and value projections; Keras 3 computes them as a reshaped BatchMatMulV2) and
    Keras 3's bias of one channel. One operand is a weight (not a scalar), the other a conv's,
    matmul's or einsum's output."""
    if len(op.inputs) != 2 or any(t.shape.rank == 0 for t in op.inputs):
        return False
    sources = [_through_reshapes(t) for t in op.inputs]
    weights = [s.type in ("ReadVariableOp", "Const") for s in sources]
    return sum(weights) == 1 and sources[weights.index(False)].type in _PRODUCER_OPS
