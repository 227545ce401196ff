"""An independent FLOPs count: a walk over the ops of a model's frozen batch-1 inference graph.

chipnet_tf counts multiply-accumulates (MACs) plus bias adds. This count reads them from the
ops TensorFlow runs, with their static shapes, and knows nothing of layers or of chipnet_tf:

- ``Conv2D``/``Conv3D``: output elements x kernel taps x input channels;
  ``DepthwiseConv2dNative``: output elements x kernel taps; a dilated convolution, which TF
  runs between ``SpaceToBatchND`` and ``BatchToSpaceND`` on a padded copy of its input, is
  counted at the positions of its real output (after ``BatchToSpaceND``);
- ``Conv2DBackpropInput``/``Conv3DBackpropInputV2`` (transposed convolutions): every input
  element is multiplied by a kernel tap and output channel, whatever the padding;
- ``MatMul`` and ``BatchMatMul``/``V2``/``V3``: output elements x the inner dimension;
- ``Einsum``: the product of the sizes of all the indices of its equation;
- bias adds: the elements of a ``BiasAdd``, and of an ``AddV2``/``Add`` of a constant (not a
  scalar) onto the output of one of the ops above, through reshapes, in that op's name scope
  (both Kerases' ``EinsumDense`` biases, and the one-channel bias Keras 3 adds with ``AddV2``).

Each MAC op is one of two parts: ``weighted`` when an operand is a constant of the frozen
graph (a kernel), ``activations`` when both are computed (attention's ``QK^T`` and ``AV``).
The TF profiler counts the convolution and matmul ops but not ``Einsum``; on the ops it does
count, :func:`profiler_graph_flops` checks this count (:func:`profiler_visible_count`).
"""

import contextlib
import math

import numpy as np

from chipnet_tf.compat import is_keras3_object, keras, tf

CONVOLUTIONS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2")
MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")
# The ops the TF profiler counts (2 float ops per MAC) and its bias adds (one per element).
PROFILER_MAC_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput")
PROFILER_BIAS_OPS = ("BiasAdd",)
_THROUGH = ("Identity", "Reshape")
_CONSTANT_OF_CONSTANTS = ("Identity", "Reshape", "Cast", "Squeeze", "ExpandDims", "Transpose")


# -- the graph -------------------------------------------------------------------------
@contextlib.contextmanager
def _tf_keras_grouped_convs_inline():
    conv_base = next(c for c in keras.layers.Conv2D.__mro__ if "_jit_compiled_convolution_op" in vars(c))
    original = conv_base._jit_compiled_convolution_op
    conv_base._jit_compiled_convolution_op = lambda self, inputs, kernel: self.convolution_op(inputs, kernel)
    try:
        yield
    finally:
        conv_base._jit_compiled_convolution_op = original


@contextlib.contextmanager
def _keras3_grouped_convs_inline():
    from keras.src.backend.tensorflow import nn

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        if len(inputs.shape) != 4 or data_format not in (None, "channels_last"):
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(), data_format="NHWC", dilations=dilation_rate)

    nn.conv = conv
    try:
        yield
    finally:
        nn.conv = original


def grouped_convs_inline(model):
    """On CPU both Kerases run a grouped convolution as a call of an XLA-compiled function,
    whose op the graph does not show. The graph is only traced under this context, never
    run, so a grouped convolution is traced as the plain convolution op it is."""
    return _keras3_grouped_convs_inline() if is_keras3_object(model) else _tf_keras_grouped_convs_inline()


def frozen_graph(model):
    """The frozen inference graph of ``model`` (either Keras, TensorFlow backend) at batch 1."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec((1,) + tuple(t.shape[1:]), t.dtype) for t in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    with grouped_convs_inline(model):
        return convert_variables_to_constants_v2(fn.get_concrete_function(*specs)).graph


# -- the count -------------------------------------------------------------------------
def _elements(tensor):
    return math.prod(tensor.shape.as_list())


def is_constant(tensor):
    """Whether ``tensor`` is computed from constants only (a frozen weight, reshaped)."""
    op = tensor.op
    if op.type == "Const":
        return True
    return op.type in _CONSTANT_OF_CONSTANTS and all(is_constant(t) for t in op.inputs)


def _source(tensor):
    op = tensor.op
    while op.type in _THROUGH and op.inputs:
        op = op.inputs[0].op
    return op


def _real_output(op):
    """The output of ``op``, or of the ``BatchToSpaceND`` that undoes a dilated convolution's
    space-to-batch."""
    consumers = op.outputs[0].consumers()
    if len(consumers) == 1 and consumers[0].type == "BatchToSpaceND":
        return consumers[0].outputs[0]
    return op.outputs[0]


def einsum_macs(equation, shapes):
    """The product of the sizes of all the indices of ``equation`` on operands of ``shapes``:
    its letters' sizes times the elements of the broadcast shape of the axes ``...`` covers."""
    sizes, ellipses = {}, []
    for spec, shape in zip(equation.split("->")[0].split(","), shapes):
        head, dots, tail = spec.strip().partition("...")
        if not dots:
            head, tail = "", head
        covered = len(shape) - len(head) - len(tail)
        ellipses.append(tuple(shape[len(head) : len(head) + covered]))
        sizes.update(zip(head, shape[: len(head)]))
        sizes.update(zip(tail, shape[len(head) + covered :]))
    return math.prod(sizes.values()) * math.prod(np.broadcast_shapes(*ellipses))


def op_macs(op):
    """The multiply-accumulates of one op (0 for an op that is neither a convolution nor a
    matmul)."""
    if op.type in ("Conv2D", "Conv3D"):
        return _elements(_real_output(op)) * math.prod(op.inputs[1].shape.as_list()[:-1])
    if op.type == "DepthwiseConv2dNative":
        return _elements(_real_output(op)) * math.prod(op.inputs[1].shape.as_list()[:2])
    if op.type in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        return _elements(op.inputs[2]) * math.prod(op.inputs[1].shape.as_list()[:-1])
    if op.type == "MatMul":
        a = op.inputs[0].shape.as_list()
        return _elements(op.outputs[0]) * a[0 if op.get_attr("transpose_a") else 1]
    if op.type.startswith("BatchMatMul"):
        a = op.inputs[0].shape.as_list()
        return _elements(op.outputs[0]) * a[-2 if op.get_attr("adj_x") else -1]
    if op.type == "Einsum":
        return einsum_macs(op.get_attr("equation").decode(), [t.shape.as_list() for t in op.inputs])
    return 0


def _bias_elements(op):
    """The elements of a bias add: a ``BiasAdd``, or an ``AddV2`` of a constant of rank >= 1
    onto a convolution's or matmul's output (through reshapes) in the same name scope as that
    op (the layer's own bias; ``x + c`` after a layer is an op of its own scope)."""
    if op.type == "BiasAdd":
        return _elements(op.outputs[0])
    if op.type not in ("AddV2", "Add") or len(op.inputs) != 2 or is_constant(op.inputs[0]) == is_constant(op.inputs[1]):
        return 0
    constant, computed = op.inputs if is_constant(op.inputs[0]) else op.inputs[::-1]
    source, scope = _source(computed), op.name.rsplit("/", 1)[0] + "/"
    if constant.shape.rank and source.type in CONVOLUTIONS + MATMULS and source.name.startswith(scope):
        return _elements(op.outputs[0])
    return 0


def graph_counts(graph):
    """``{"weighted": MACs of the ops with a constant operand, "activations": MACs of the
    matmuls and einsums between two computed tensors, "bias": bias-add elements, "total"}``
    of a frozen batch-1 graph."""
    counts = {"weighted": 0, "activations": 0, "bias": 0}
    for op in graph.get_operations():
        if op.type in CONVOLUTIONS + MATMULS:
            weighted = op.type in CONVOLUTIONS or any(is_constant(t) for t in op.inputs)
            counts["weighted" if weighted else "activations"] += op_macs(op)
        else:
            counts["bias"] += _bias_elements(op)
    counts["total"] = sum(counts.values())
    return counts


def oracle_counts(model):
    """:func:`graph_counts` of ``model``'s frozen batch-1 inference graph."""
    return graph_counts(frozen_graph(model))


def oracle_flops(model):
    """MACs + bias adds of one batch-1 forward pass of ``model``, from its graph's ops."""
    return oracle_counts(model)["total"]


# -- the TF profiler, on the ops it sees -----------------------------------------------
def _profile(graph, op_types):
    opts = (
        tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .account_displayed_op_only(True)
        .select(["float_ops"])
        .with_node_names(show_name_regexes=[".*"])
        .with_accounted_types(["^" + t + "$" for t in op_types])
        .build()
    )
    return int(tf.compat.v1.profiler.profile(graph, options=opts, cmd="op").total_float_ops)


def profiler_graph_flops(graph):
    """The TF profiler's count of ``graph`` by chipnet_tf's convention: MACs of the ops of
    :data:`PROFILER_MAC_OPS` (it counts 2 float ops per MAC) + ``BiasAdd`` elements."""
    macs = _profile(graph, PROFILER_MAC_OPS)
    assert macs % 2 == 0, macs
    return macs // 2 + _profile(graph, PROFILER_BIAS_OPS)


def profiler_flops(model):
    """The TF profiler's count of ``model``'s frozen batch-1 graph (:func:`profiler_graph_flops`)."""
    return profiler_graph_flops(frozen_graph(model))


def profiler_visible_count(graph):
    """This module's count of the ops the TF profiler counts (:data:`PROFILER_MAC_OPS` and
    ``BiasAdd``), to check against :func:`profiler_graph_flops`. They agree on a graph
    without dilated convolutions (the profiler counts a dilated one at the padded positions
    TF computes) whose transposed convolutions have ``"same"`` padding (the profiler counts
    ``output positions / stride**2`` of them per kernel tap) and whose ``BatchMatMulV2`` ops
    do not transpose their first operand (the profiler takes its last axis as the inner one)."""
    total = 0
    for op in graph.get_operations():
        if op.type in PROFILER_MAC_OPS:
            total += op_macs(op)
        elif op.type in PROFILER_BIAS_OPS:
            total += _elements(op.outputs[0])
    return total
