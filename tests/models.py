"""Small models shared by the tests (kept out of conftest so Bazel targets can import them)."""

import numpy as np

from chipnet_tf.compat import keras

L = keras.layers


def toy_model():
    """4x4x3 input; group A = {a, dw (depthwise), c} coupled by the Add; group E = {e}.

    a  = Conv2D(4, 1, no bias)(x)          params 3*A           flops 16*3*A
    dw = DepthwiseConv2D(3, no bias)(a)    params 9*A           flops 16*9*A
    c  = Conv2D(4, 1, bias)(dw)            params A*A + A       flops 16*(A*A + A)
    s  = Add()([a, c])                     couples a and c -> one group
    e  = Conv2D(2, 1, bias)(x)             params 3*E + E       flops 16*(3*E + E)
    t  = Concatenate()([s, e])             layout [A | E]
    out = Dense(5)(GAP(t))                 params 5*(A+E) + 5   flops 5*(A+E) + 5
    """
    x = keras.Input((4, 4, 3))
    a = L.Conv2D(4, 1, use_bias=False, name="a")(x)
    dw = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(a)
    c = L.Conv2D(4, 1, name="c")(dw)
    s = L.Add(name="add")([a, c])
    e = L.Conv2D(2, 1, name="e")(x)
    t = L.Concatenate(name="concat")([s, e])
    out = L.Dense(5, name="head")(L.GlobalAveragePooling2D()(t))
    return keras.Model(x, out, name="toy")


def residual_cnn(width=32, name="residual_cnn"):
    """Small residual CNN for 8x8x1 digits: stem, two residual blocks, GAP, classifier."""

    def block(x, f):
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization(momentum=0.9)(y)
        y = L.ReLU()(y)
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization(momentum=0.9)(y)
        return L.ReLU()(L.Add()([x, y]))

    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization(momentum=0.9)(h)
    h = L.ReLU()(h)
    h = block(h, width)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(2 * width, 3, padding="same")(h)
    h = L.ReLU()(h)
    h = block(h, 2 * width)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10, activation="softmax")(h)
    return keras.Model(inp, out, name=name)


def pruning_optimizer(lr=1e-2):
    """AdamW as in the paper, no weight decay on the mask logits."""
    opt = keras.optimizers.AdamW(lr, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    return opt


def strip_under_masks(dense, masks, input_shape, atol=1e-5):
    """Wraps ``dense``, fixes ``masks`` and strips it; asserts the stripped model computes what
    the hard-masked wrapped one does on random inputs of ``input_shape``. Returns (pruned, small)."""
    import chipnet_tf

    pruned = chipnet_tf.prune_low_budget(dense, 0.5)
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    np.testing.assert_allclose(small(x).numpy(), pruned(x).numpy(), atol=atol)
    return pruned, small
