"""An independent FLOPs count: the TensorFlow profiler on the model's frozen inference graph.

The profiler counts a multiply-accumulate as 2 float ops in Conv2D/DepthwiseConv2dNative/
MatMul (and Conv2DBackpropInput for transposed convs) and one op per element in BiasAdd.
chipnet_tf counts MACs + bias adds, so ``macs_plus_bias = conv_ops / 2 + bias_ops``.
"""

import contextlib

from chipnet_tf.compat import keras, tf

MAC_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput")
BIAS_OPS = ("BiasAdd",)


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
    result = tf.compat.v1.profiler.profile(graph, options=opts, cmd="op")
    return int(result.total_float_ops)


@contextlib.contextmanager
def _grouped_convs_inline():
    """On CPU, Keras runs a grouped Conv2D as a call of an XLA-compiled function, whose op
    the profiler does not see (nor the shape of the bias add after it). The graph is only
    traced here, never run, so the grouped conv is traced as the plain Conv2D op it is."""
    conv_base = next(c for c in keras.layers.Conv2D.__mro__ if "_jit_compiled_convolution_op" in vars(c))
    original = conv_base._jit_compiled_convolution_op
    conv_base._jit_compiled_convolution_op = lambda self, inputs, kernel: self.convolution_op(inputs, kernel)
    try:
        yield
    finally:
        conv_base._jit_compiled_convolution_op = original


def profiler_flops(model):
    """MACs + bias adds of ``model`` at batch 1, counted by the TF profiler."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec((1,) + tuple(t.shape[1:]), t.dtype) for t in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    with _grouped_convs_inline():
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
    graph = frozen.graph
    macs = _profile(graph, MAC_OPS)
    bias = _profile(graph, BIAS_OPS)
    assert macs % 2 == 0, macs
    return macs // 2 + bias
