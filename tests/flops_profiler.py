"""An independent FLOPs count: the TensorFlow profiler on the model's frozen inference graph.

The profiler counts a multiply-accumulate as 2 float ops in Conv2D/DepthwiseConv2dNative/
MatMul (and Conv2DBackpropInput for transposed convs) and one op per element in BiasAdd.
chipnet_tf counts MACs + bias adds, so ``macs_plus_bias = conv_ops / 2 + bias_ops``.
"""

from chipnet_tf.compat import tf

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


def profiler_flops(model):
    """MACs + bias adds of ``model`` at batch 1, counted by the TF profiler."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec((1,) + tuple(t.shape[1:]), t.dtype) for t in model.inputs]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
    graph = frozen.graph
    macs = _profile(graph, MAC_OPS)
    bias = _profile(graph, BIAS_OPS)
    assert macs % 2 == 0, macs
    return macs // 2 + bias
