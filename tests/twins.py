"""Architectures built twice in one process with the same layer names: with tf_keras
(``chipnet_tf.compat.keras``) and with Keras 3 (``import keras``). Each architecture is
``arch(K, ops)``: ``K`` the Keras package, ``ops`` Keras 3's ``keras.ops`` (None for
tf_keras). :func:`build` makes one for a flavour (``"tf_keras"`` or ``"keras3"``);
:data:`FLAVOURS` are the flavours this process tests (Keras 3 only under another backend
than TensorFlow)."""

import os

import numpy as np

from chipnet_tf.compat import is_keras3_object
from chipnet_tf.compat import keras as tf_keras

# Keras 3's backend for this process. Under KERAS_BACKEND=jax (make test's second step)
# only the Keras 3 cases run; tf_keras always runs on TensorFlow, so the first step covers it.
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
FLAVOURS = ("tf_keras", "keras3") if BACKEND == "tensorflow" else ("keras3",)


def keras_of_flavour(flavour):
    if flavour == "tf_keras":
        return tf_keras, None
    import keras

    assert keras.__version__.startswith("3.")
    return keras, keras.ops


def build(flavour, arch=None, seed=0):
    K, ops = keras_of_flavour(flavour)
    K.utils.set_random_seed(seed)
    return (arch or residual)(K, ops)


def random_data(shape, n=64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, classes, n)


def to_numpy(x):
    """A tensor or variable of either Keras as a numpy array (torch tensors detached)."""
    if hasattr(x, "detach") or is_keras3_object(x):
        import keras

        return keras.ops.convert_to_numpy(x)
    return np.asarray(x)


def residual(K, ops=None):
    L = K.layers
    x = K.Input((16, 16, 3), name="img")
    a = L.Conv2D(8, 3, padding="same", name="conv1")(x)
    a = L.BatchNormalization(name="bn1")(a)
    a = L.ReLU(name="relu1")(a)
    b = L.Conv2D(8, 3, padding="same", name="conv2")(a)
    b = L.BatchNormalization(name="bn2")(b)
    b = L.Activation("relu", name="act2")(b)
    s = L.Add(name="add")([a, b])
    s = L.MaxPooling2D(name="pool")(s)
    c = L.Conv2D(12, 3, strides=2, padding="same", name="conv3")(s)
    c = L.BatchNormalization(name="bn3")(c)
    c = L.ReLU(name="relu3")(c)
    g = L.GlobalAveragePooling2D(name="gap")(c)
    g = L.Dropout(0.1, name="drop")(g)
    return K.Model(x, L.Dense(10, activation="softmax", name="fc")(g))


def separable(K, ops=None):
    L = K.layers
    x = K.Input((12, 12, 3), name="img")
    a = L.Conv2D(6, 3, padding="same", name="stem")(x)
    a = L.BatchNormalization(name="stem_bn")(a)
    a = L.ReLU(6.0, name="stem_relu")(a)
    a = L.ZeroPadding2D(1, name="pad")(a)
    d = L.DepthwiseConv2D(3, name="dw")(a)
    d = L.BatchNormalization(name="dw_bn")(d)
    d = L.ReLU(name="dw_relu")(d)
    p = L.Conv2D(10, 1, name="pw")(d)
    p = L.BatchNormalization(name="pw_bn")(p)
    s = L.SeparableConv2D(7, 3, padding="same", name="sep")(p)
    g = L.GlobalAveragePooling2D(name="gap")(s)
    return K.Model(x, L.Dense(4, name="fc")(g))


def concat(K, ops=None):
    L = K.layers
    x = K.Input((10, 10, 3), name="img")
    a = L.Conv2D(5, 3, padding="same", activation="relu", name="left")(x)
    b = L.Conv2D(7, 1, name="right")(x)
    b = L.BatchNormalization(name="right_bn")(b)
    c = L.Concatenate(name="cat")([a, b])
    c = L.Conv2D(6, 3, name="mix")(c)
    f = L.Flatten(name="flat")(c)
    return K.Model(x, L.Dense(3, name="fc")(f))


def ops_between_layers(K, ops=None):
    """Keras 3: keras.ops.add / multiply / relu / concatenate between layers; tf_keras:
    the layers that do the same."""
    L = K.layers
    x = K.Input((8, 8, 3), name="img")
    a = L.Conv2D(6, 3, padding="same", name="conv_a")(x)
    b = L.Conv2D(6, 3, padding="same", name="conv_b")(x)
    if ops is None:
        s = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
        m = L.Multiply(name="mul")([s, L.Conv2D(6, 1, activation="sigmoid", name="gate")(s)])
        c = L.Concatenate(name="cat")([m, a])
    else:
        s = ops.relu(ops.add(a, b))
        m = ops.multiply(s, L.Conv2D(6, 1, activation="sigmoid", name="gate")(s))
        c = ops.concatenate([m, a], axis=-1)
    c = L.Conv2D(5, 3, name="head")(c)
    g = L.GlobalAveragePooling2D(name="gap")(c)
    return K.Model(x, L.Dense(3, name="fc")(g))


def sequential(K, ops=None):
    L = K.layers
    return K.Sequential(
        [
            K.Input((12, 12, 1)),
            L.Conv2D(4, 3, name="c1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="r1"),
            L.AveragePooling2D(2, name="pool"),
            L.Conv2D(8, 3, padding="same", name="c2"),
            L.Flatten(name="flat"),
            L.Dense(16, activation="relu", name="d1"),
            L.Dense(3, name="out"),
        ],
        name="seq",
    )


def transposed(K, ops=None):
    """FLOPs of a transposed conv are counted at its input positions in both Kerases."""
    L = K.layers
    x = K.Input((6, 6, 3), name="img")
    a = L.Conv2D(5, 3, padding="same", name="enc")(x)
    a = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(a)
    a = L.BatchNormalization(name="up_bn")(a)
    a = L.UpSampling2D(name="ups")(a)
    return K.Model(x, L.Conv2D(2, 1, name="out")(a))


def vit(K, ops=None, blocks=2, width=16, heads=4, mlp=32):
    """A small vision transformer: 4x4 patches of a 28x28 image (49 tokens), pre-norm
    blocks of self-attention and an MLP on a residual stream, mean over tokens."""
    L = K.layers
    x = K.Input((28, 28, 1), name="img")
    h = L.Conv2D(width, 4, strides=4, name="patch")(x)
    h = L.Reshape((49, width), name="tokens")(h)
    for b in range(blocks):
        y = L.LayerNormalization(name=f"ln{b}a")(h)
        y = L.MultiHeadAttention(heads, width // heads, name=f"mha{b}")(y, y)
        h = L.Add(name=f"res{b}a")([h, y])
        y = L.LayerNormalization(name=f"ln{b}b")(h)
        y = L.Dense(mlp, activation="gelu", name=f"fc{b}a")(y)
        y = L.Dense(width, name=f"fc{b}b")(y)
        h = L.Add(name=f"res{b}b")([h, y])
    h = L.LayerNormalization(name="ln_out")(h)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    return K.Model(x, L.Dense(10, name="head")(h))


# Keras 3 on JAX runs attention through jax.nn.dot_product_attention, which needs
# value_dim == key_dim (a model with value_dim=2, key_dim=4 fails there without chipnet_tf).
CROSS_VALUE_DIM = 4 if BACKEND == "jax" else 2


def cross_attention(K, ops=None):
    """Attention between two sequences of different lengths and widths, with a key of its
    own, key_dim != value_dim (but on JAX) and an explicit output width; a causal
    self-attention."""
    L = K.layers
    q_in, v_in, k_in = K.Input((5, 8), name="q"), K.Input((7, 6), name="v"), K.Input((7, 4), name="k")
    q = L.Dense(12, name="q_proj")(q_in)
    v = L.Dense(10, name="v_proj")(v_in)
    k = L.Dense(9, name="k_proj")(k_in)
    a = L.MultiHeadAttention(3, 4, value_dim=CROSS_VALUE_DIM, output_shape=11, name="cross")(q, v, key=k)
    a = L.Dense(6, name="mix")(a)
    c = L.MultiHeadAttention(2, 3, name="causal")(a, a, use_causal_mask=True)
    c = L.Add(name="res")([a, c])
    return K.Model([q_in, v_in, k_in], L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="pool")(c)))


def decoder(K, ops=None, blocks=2, width=16, heads=4, vocab=50, length=12):
    """A small GPT-style decoder: token embeddings, pre-norm blocks of causal self-attention
    and an MLP, logits over the vocabulary at every position."""
    L = K.layers
    tokens = K.Input((length,), dtype="int32", name="tokens")
    h = L.Embedding(vocab, width, name="embed")(tokens)
    for b in range(blocks):
        y = L.LayerNormalization(name=f"ln{b}a")(h)
        y = L.MultiHeadAttention(heads, width // heads, name=f"attn{b}")(y, y, use_causal_mask=True)
        h = L.Add(name=f"res{b}a")([h, y])
        y = L.LayerNormalization(name=f"ln{b}b")(h)
        y = L.Dense(2 * width, activation="gelu", name=f"fc{b}a")(y)
        h = L.Add(name=f"res{b}b")([h, L.Dense(width, name=f"fc{b}b")(y)])
    h = L.LayerNormalization(name="ln_out")(h)
    return K.Model(tokens, L.Dense(vocab, name="logits")(h))


ARCHITECTURES = {
    "vit": vit,
    "decoder": decoder,
    "cross_attention": cross_attention,
    "transposed": transposed,
    "residual": residual,
    "separable": separable,
    "concat": concat,
    "ops": ops_between_layers,
    "sequential": sequential,
}
