"""The independent FLOPs count (:mod:`tests.flops_oracle`) against hand counts and against
the TF profiler on the ops the profiler counts."""

import numpy as np
import tensorflow as tf

import chipnet_tf
from chipnet_tf.compat import keras
from tests.flops_oracle import frozen_graph, graph_counts, profiler_graph_flops, profiler_visible_count
from tests.test_attention_flops import VIT_FLOPS, VIT_HEAD, VIT_MLP, VIT_PATCHES, _vit

L = keras.layers


def _convs_and_matmuls():
    """Every op the profiler counts: Conv2D (a plain, a grouped and a separable conv's
    pointwise), DepthwiseConv2dNative, Conv2DBackpropInput ("same" padding), MatMul, a
    BatchMatMulV2 between two activations, BiasAdd."""
    x = keras.Input((8, 8, 4))
    y = L.Conv2D(6, 3, padding="same", name="conv")(x)  # 64*(36*6) + 64*6
    y = L.Conv2D(6, 3, padding="same", groups=2, name="grouped")(y)  # 64*(27*6) + 64*6
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)  # 64*(9*6) + 64*6
    y = L.SeparableConv2D(4, 3, strides=2, padding="same", name="sep")(y)  # 16*(9*6) + 16*(6*4) + 16*4
    y = L.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(y)  # 16*(9*3*4) + 64*3
    t = L.Reshape((64, 3))(y)
    gram = tf.matmul(L.Permute((2, 1))(t), t)  # 3*3 outputs x 64
    y = L.Dense(5, name="fc")(L.Flatten()(gram))  # 9*5 + 5
    return keras.Model(x, y)


CONVS_AND_MATMULS = (
    64 * (36 * 6 + 6)
    + 64 * (27 * 6 + 6)
    + 64 * (9 * 6 + 6)
    + 16 * (9 * 6)
    + 16 * (6 * 4)
    + 16 * 4
    + 16 * (9 * 3 * 4)
    + 64 * 3
    + 9 * 64
    + 9 * 5
    + 5
)


def test_oracle_equals_the_profiler_on_the_ops_it_counts():
    model = _convs_and_matmuls()
    graph = frozen_graph(model)
    assert profiler_graph_flops(graph) == profiler_visible_count(graph) == CONVS_AND_MATMULS == 32_658
    assert graph_counts(graph) == {
        "weighted": 64 * 36 * 6 + 64 * 27 * 6 + 64 * 9 * 6 + 16 * 9 * 6 + 16 * 6 * 4 + 16 * 9 * 3 * 4 + 9 * 5,
        "activations": 9 * 64,  # the Gram matrix
        "bias": 64 * 6 * 3 + 16 * 4 + 64 * 3 + 5,
        "total": CONVS_AND_MATMULS,
    }
    assert chipnet_tf.count_flops(model) == CONVS_AND_MATMULS


def test_the_profiler_misses_attention_and_the_oracle_does_not():
    """On the ViT the profiler sees the stem, the MLPs and the head only: 3,302,858 of 7,793,610."""
    graph = frozen_graph(_vit(keras))
    seen = VIT_PATCHES + 4 * VIT_MLP + VIT_HEAD
    assert profiler_graph_flops(graph) == profiler_visible_count(graph) == seen == 3_302_858
    assert graph_counts(graph)["total"] == VIT_FLOPS == 7_793_610


def test_dilated_and_transposed_convolutions_at_their_real_positions():
    """TF runs a dilated conv on a space-to-batch copy of the input padded to a multiple of
    the rate, and the profiler counts a transposed conv at output positions / stride**2: the
    oracle counts a conv's MACs at its real output positions, a transposed conv's at its input
    positions, as chipnet_tf does."""
    x = keras.Input((9, 9, 3))
    y = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="dilated")(x)  # 81*(27*4) + 81*4
    y = L.DepthwiseConv2D(3, dilation_rate=2, name="dw")(y)  # 25*(9*4) + 25*4
    y = L.Conv2DTranspose(5, 3, strides=2, name="up")(y)  # 25*(9*5*4) + 121*5
    model = keras.Model(x, y)
    expected = 81 * (27 * 4 + 4) + 25 * (9 * 4 + 4) + 25 * 9 * 5 * 4 + 121 * 5
    graph = frozen_graph(model)
    assert graph_counts(graph)["total"] == chipnet_tf.count_flops(model) == expected == 15_177
    # the profiler: 4 * 25 positions of the dilated conv and 4 * 9 of the depthwise one (the
    # padded space-to-batch copies), 121 / 4 positions per tap of the transposed conv
    profiler = 100 * 27 * 4 + 81 * 4 + 36 * 9 * 4 + 25 * 4 + 121 * 9 * 5 * 4 // 4 + 121 * 5
    assert profiler_graph_flops(graph) == profiler


def test_constants_added_after_a_layer_are_not_biases():
    """``x + 3`` and ``x + c`` (per channel) after a bias-less Dense are TF ops of their own:
    not counted; an EinsumDense bias (AddV2 onto its Einsum) is."""
    x = keras.Input((5, 6))
    y = L.Dense(4, use_bias=False, name="fc")(x)  # 5*6*4
    y = y + 3.0
    y = y + np.arange(4, dtype="float32")
    y = L.EinsumDense("abc,cd->abd", output_shape=(None, 2), bias_axes="d", name="ed")(y)  # 5*4*2 + 5*2
    counts = graph_counts(frozen_graph(keras.Model(x, y)))
    assert counts == {"weighted": 120 + 40, "activations": 0, "bias": 10, "total": 170}
