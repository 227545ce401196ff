"""count_flops of attention and tensor contractions, on tf_keras and Keras 3 (TensorFlow backend).

Every count is written out by hand and equals the independent count of the traced graph's ops
(:mod:`tests.flops_oracle`): ``MultiHeadAttention`` (its query, key, value and output
projections with their biases, ``QK^T`` and ``AV``), ``EinsumDense``, and the einsum and matmul
calls between layers (tf_keras' ``tf.einsum``/``tf.matmul``/``tf.linalg.matmul``/``a @ b``
TF-op layers, Keras 3's ``keras.ops.einsum``/``keras.ops.matmul``).
"""

import os

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.registry import layer_flops
from chipnet_tf.registry.contractions import einsum_macs
from tests.flops_oracle import oracle_counts
from tests.twins import keras_of_flavour

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="the oracle reads a TF graph"
)
FLAVOURS = ("tf_keras", "keras3")


def _counts(model):
    """``(count_flops, the oracle's total, the dense FLOPs of budget_report)``."""
    return (
        chipnet_tf.count_flops(model),
        oracle_counts(model)["total"],
        chipnet_tf.budget_report(model).totals["flops"]["dense"],
    )


# -- a small ViT (tf_keras) ------------------------------------------------------------
TOKENS, WIDTH, HEADS, KEY_DIM, MLP, BLOCKS, CLASSES = 49, 64, 4, 16, 128, 4, 10


def _vit(K):
    """Patch-4 conv stem on 28x28x1 (49 tokens of width 64), 4 pre-norm blocks of 4-head
    attention and a 128-wide MLP, mean pooling, a 10-class head."""
    L = K.layers
    x = K.Input((28, 28, 1))
    y = L.Reshape((TOKENS, WIDTH))(L.Conv2D(WIDTH, 4, strides=4, name="patches")(x))
    for i in range(BLOCKS):
        h = L.LayerNormalization(name=f"ln{i}a")(y)
        y = L.Add()([y, L.MultiHeadAttention(HEADS, KEY_DIM, name=f"mha{i}")(h, h)])
        h = L.Dense(MLP, activation="gelu", name=f"fc{i}a")(L.LayerNormalization(name=f"ln{i}b")(y))
        y = L.Add()([y, L.Dense(WIDTH, name=f"fc{i}b")(h)])
    y = L.GlobalAveragePooling1D()(L.LayerNormalization(name="ln")(y))
    return K.Model(x, L.Dense(CLASSES, name="head")(y))


VIT_PATCHES = TOKENS * (4 * 4 * 1 * WIDTH) + TOKENS * WIDTH
VIT_ATTENTION = (
    3 * (TOKENS * WIDTH * WIDTH + TOKENS * WIDTH)  # query, key, value projections + biases
    + 2 * HEADS * TOKENS * TOKENS * KEY_DIM  # QK^T and AV
    + TOKENS * WIDTH * WIDTH
    + TOKENS * WIDTH  # output projection + bias
)
VIT_MLP = TOKENS * (WIDTH * MLP + MLP) + TOKENS * (MLP * WIDTH + WIDTH)
VIT_HEAD = WIDTH * CLASSES + CLASSES
VIT_FLOPS = VIT_PATCHES + BLOCKS * (VIT_ATTENTION + VIT_MLP) + VIT_HEAD


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_vit_count_flops_counts_attention(flavour):
    K, _ = keras_of_flavour(flavour)
    model = _vit(K)
    assert _counts(model) == (VIT_FLOPS,) * 3 == (7_793_610,) * 3
    counts = oracle_counts(model)
    assert counts["activations"] == BLOCKS * 2 * HEADS * TOKENS * TOKENS * KEY_DIM
    # the multiply-accumulates without the bias adds (stem, q/k/v/output, MLPs, head)
    biases = TOKENS * WIDTH + BLOCKS * (4 * TOKENS * WIDTH + TOKENS * (MLP + WIDTH)) + CLASSES
    assert counts["bias"] == biases and counts["weighted"] + counts["activations"] == 7_702_656
    mha = model.get_layer("mha0")
    tokens = (None, TOKENS, WIDTH)
    assert layer_flops(mha, tokens, tokens, in_shapes=[tokens, tokens]) == VIT_ATTENTION


# -- MultiHeadAttention ----------------------------------------------------------------
def _cross_attention(K, **kwargs):
    """A query of 6 positions x 10 features attending over a value of 9 x 7 and a key of
    9 x 5: 3 heads, key_dim 4, value_dim 2, 8 output features."""
    q, v, k = K.Input((6, 10)), K.Input((9, 7)), K.Input((9, 5))
    mha = K.layers.MultiHeadAttention(3, 4, value_dim=2, output_shape=8, name="mha", **kwargs)
    return K.Model([q, v, k], mha(q, v, key=k))


CROSS_MACS = (
    6 * 10 * 3 * 4  # query projection
    + 9 * 5 * 3 * 4  # key projection
    + 9 * 7 * 3 * 2  # value projection
    + 3 * 6 * 9 * 4  # QK^T
    + 3 * 6 * 9 * 2  # AV
    + 6 * 3 * 2 * 8  # output projection
)
CROSS_BIASES = 6 * 3 * 4 + 9 * 3 * 4 + 9 * 3 * 2 + 6 * 8


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_cross_attention_with_different_lengths_and_head_sizes(flavour, use_bias):
    K, _ = keras_of_flavour(flavour)
    model = _cross_attention(K, use_bias=use_bias)
    expected = CROSS_MACS + (CROSS_BIASES if use_bias else 0)
    assert (CROSS_MACS, CROSS_BIASES) == (2898, 282)
    assert _counts(model) == (expected,) * 3
    mha = model.get_layer("mha")
    shapes = [(None, 6, 10), (None, 9, 7), (None, 9, 5)]  # query, value, key
    assert layer_flops(mha, shapes[0], (None, 6, 8), in_shapes=shapes) == expected


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_attention_over_one_axis_of_a_grid(flavour):
    """attention_axes=(2,) on a (2, 3, 4) input: the 2 rows attend separately over 3 columns."""
    K, _ = keras_of_flavour(flavour)
    x = K.Input((2, 3, 4))
    model = K.Model(x, K.layers.MultiHeadAttention(2, 3, attention_axes=(2,), name="mha")(x, x))
    projections = 3 * (6 * 4 * 2 * 3 + 6 * 2 * 3) + 6 * 2 * 3 * 4 + 6 * 4
    attention = 2 * (2 * 2 * 3 * 3 * 3)  # QK^T and AV: 2 rows x 2 heads x 3 x 3 pairs x 3
    assert _counts(model) == (projections + attention,) * 3 == (924,) * 3


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_self_attention_called_with_keywords_and_shared(flavour):
    """One MultiHeadAttention called twice, on query/value keywords, at two sequence lengths."""
    K, _ = keras_of_flavour(flavour)
    a, b = K.Input((4, 8)), K.Input((7, 8))
    mha = K.layers.MultiHeadAttention(2, 4, name="mha")
    model = K.Model([a, b], [mha(query=a, value=b), mha(query=b, value=b)])

    def flops(tq, tv):
        return tq * (8 * 8 + 8) + 2 * tv * (8 * 8 + 8) + 2 * tq * tv * 2 * 4 + tq * (8 * 8 + 8)

    assert _counts(model) == (flops(4, 7) + flops(7, 7),) * 3


# -- EinsumDense -----------------------------------------------------------------------
EINSUM_DENSE = [
    # (input shape, equation, output_shape, bias_axes, MACs + bias adds)
    ((5, 6), "abc,cd->abd", (None, 4), "d", 5 * 6 * 4 + 5 * 4),
    ((5, 6), "abc,cde->abde", (None, 2, 3), "de", 5 * 6 * 6 + 5 * 6),
    ((3, 5, 6), "...b,bc->...c", 4, "c", 3 * 5 * 6 * 4 + 3 * 5 * 4),
    ((5, 6), "abc,cd->ad", 4, None, 5 * 6 * 4),  # sums over the positions
]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("shape,equation,output_shape,bias_axes,expected", EINSUM_DENSE)
def test_einsum_dense(flavour, shape, equation, output_shape, bias_axes, expected):
    K, _ = keras_of_flavour(flavour)
    x = K.Input(shape)
    layer = K.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes, name="ed")
    assert _counts(K.Model(x, layer(x))) == (expected,) * 3


# -- einsum and matmul calls between layers --------------------------------------------
def _tf_op_calls(K):
    import tensorflow as tf

    x, y, z = K.Input((5, 8)), K.Input((8, 3)), K.Input((5, 4))
    w = np.ones((8, 2), "float32")
    outputs = [
        tf.matmul(x, y),  # 5*3 outputs x 8
        tf.linalg.matmul(x, x, transpose_b=True),  # 5*5 x 8
        x @ y,  # 5*3 x 8
        tf.matmul(x, z, transpose_a=True),  # 8*4 x 5
        tf.matmul(x, w),  # 5*2 x 8, a constant operand
        tf.einsum("abc,acd->abd", x, y),  # 5*8*3
        tf.einsum("abc,cd->abd", x, w),  # 5*8*2
        tf.einsum("abc,abd->acd", x, z),  # 5*8*4
    ]
    return K.Model([x, y, z], outputs)


def _keras_op_calls(K):
    ops = K.ops
    x, y, z = K.Input((5, 8)), K.Input((8, 3)), K.Input((5, 4))
    w = np.ones((8, 2), "float32")
    outputs = [
        ops.matmul(x, y),  # 5*3 x 8
        ops.matmul(x, ops.transpose(x, (0, 2, 1))),  # 5*5 x 8
        ops.matmul(ops.transpose(x, (0, 2, 1)), z),  # 8*4 x 5
        ops.matmul(x, w),  # 5*2 x 8
        ops.einsum("abc,acd->abd", x, y),  # 5*8*3
        ops.einsum("abc,cd->abd", x, w),  # 5*8*2
        ops.einsum("abc,abd->acd", x, z),  # 5*8*4
    ]
    return K.Model([x, y, z], outputs)


def test_tf_einsum_and_matmul_layers():
    K, _ = keras_of_flavour("tf_keras")
    expected = 15 * 8 + 25 * 8 + 15 * 8 + 32 * 5 + 10 * 8 + 120 + 80 + 160
    assert _counts(_tf_op_calls(K)) == (expected,) * 3 == (1040,) * 3


def test_keras_ops_einsum_and_matmul():
    K, _ = keras_of_flavour("keras3")
    expected = 15 * 8 + 25 * 8 + 32 * 5 + 10 * 8 + 120 + 80 + 160
    assert _counts(_keras_op_calls(K)) == (expected,) * 3 == (920,) * 3


def test_einsum_macs_broadcasts_an_ellipsis():
    assert einsum_macs("abc,cd->abd", [(1, 49, 64), (64, 32)]) == 49 * 64 * 32
    assert einsum_macs("...ij,...jk->...ik", [(1, 3, 4, 5), (3, 5, 6)]) == 3 * 4 * 5 * 6
    assert einsum_macs("...ij,jk->...ik", [(2, 1, 4, 5), (5, 6)]) == 2 * 4 * 5 * 6


# -- a custom layer around attention is traced ----------------------------------------
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_custom_transformer_block_is_counted_whole(flavour):
    """A custom layer holding MultiHeadAttention and an MLP (keras-hub's encoder blocks):
    count_flops traces it and counts the projections, their biases, QK^T, AV and the MLP."""
    K, _ = keras_of_flavour(flavour)
    tokens, dim, heads, key_dim, hidden = 5, 8, 2, 4, 16

    class Block(K.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mha = K.layers.MultiHeadAttention(heads, key_dim)
            self.fc1 = K.layers.Dense(hidden, activation="gelu")
            self.fc2 = K.layers.Dense(dim)

        def call(self, x):
            x = x + self.mha(x, x)
            return x + self.fc2(self.fc1(x))

    x = K.Input((tokens, dim))
    model = K.Model(x, Block(name="block")(x))
    projections = 4 * tokens * dim * heads * key_dim + 3 * tokens * heads * key_dim + tokens * dim
    attention = 2 * heads * tokens * tokens * key_dim
    mlp = tokens * (dim * hidden + hidden) + tokens * (hidden * dim + dim)
    assert chipnet_tf.count_flops(model) == oracle_counts(model)["total"] == projections + attention + mlp == 3240
