"""Seeded random tf_keras functional graphs for the strip_pruning property test.

``random_graph(seed)`` draws a tiny channels-last functional model from the layer set the
registry knows: Conv2D (bias or not, kernel 1/3/1x3, stride 1/2, same/valid, dilated,
grouped), Conv2DTranspose, Dense on 4-D/3-D/2-D tensors, DepthwiseConv2D, SeparableConv2D,
Conv1D (through Reshape), BatchNormalization, activations (ReLU, PReLU, LeakyReLU, ELU,
Activation relu/swish/sigmoid/tanh), pooling/padding/cropping/upsampling/dropout, residual
merges (Add, Subtract, Maximum, Average, Multiply), channel and spatial concatenations,
SE blocks (GAP -> Conv/Dense -> sigmoid -> Multiply, or a softmax channel attention) and
GAP/Flatten -> Dense heads; sometimes two inputs, several outputs, a nested functional
block or an opaque layer (Lambda, TF op, Softmax, LayerNormalization); grouped convs
(tied per conv group, or depthwise-like with one channel per group), TF-op element-wise
chains (MobileNetV3's hard-swish ``x * tf.nn.relu6(x + 3) / 6``, per-channel constants,
clips, a reduce-mean gate), GhostNet modules (concatenate, then slice ``x[..., :k]``) and
FasterNet partial convs (``tf.split`` along channels), and custom layers without a rule
(a hard-swish and a LayerScale the probe infers, a channel-mixing layer it must not); with
``shared=True`` also layers and nested models called at two places. Every weight
(including BatchNormalization's moving statistics) is
drawn from the seed, so ``random_graph(seed)`` is the same model in any process,
independent of Keras' global RNG and layer-name counters.

Reproduce a failing case with::

    from tests.random_graphs import random_graph
    random_graph(seed).summary()
"""

import numpy as np

from chipnet_tf.compat import keras, tf

L = keras.layers

ACTIVATIONS = ("relu", "swish", "sigmoid", "tanh")
MERGES = {
    "add": L.Add,
    "subtract": L.Subtract,
    "maximum": L.Maximum,
    "average": L.Average,
    "multiply": L.Multiply,
}


def _double_minus_half(t):
    return t * 2.0 - 0.5


@keras.utils.register_keras_serializable(package="chipnet_tests")
class HardSwish(L.Layer):
    """A custom channel-local layer without weights (no rule: the probe infers it)."""

    def call(self, x):
        return x * tf.nn.relu6(x + 3.0) / 6.0


@keras.utils.register_keras_serializable(package="chipnet_tests")
class LayerScale(L.Layer):
    """A custom per-channel scale, configured by its channel count (as in ConvNeXt)."""

    def __init__(self, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = projection_dim

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(self.projection_dim,), initializer="ones")

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "projection_dim": self.projection_dim}


@keras.utils.register_keras_serializable(package="chipnet_tests")
class ChannelMix(L.Layer):
    """A custom layer that mixes channels (adds their mean): it must stay opaque."""

    def call(self, x):
        return x + tf.reduce_mean(x, axis=-1, keepdims=True)


class _Builder:
    def __init__(self, seed, shared):
        self.rng = np.random.default_rng(seed)
        self.shared = shared
        self.count = 0
        self.pool = []  # earlier 4-D tensors, candidates for skips and concatenations

    # -- random helpers -------------------------------------------------------------
    def chance(self, p):
        return bool(self.rng.random() < p)

    def pick(self, options, p=None):
        return options[int(self.rng.choice(len(options), p=p))]

    def channels(self):
        return int(self.rng.integers(2, 9))

    def name(self, kind):
        self.count += 1
        return f"{kind}{self.count}"

    def same_shape(self, h, spatial_only=False):
        """Earlier tensors of the same shape (or the same spatial size) as ``h``."""
        if spatial_only:
            return [t for t in self.pool if tuple(t.shape[1:3]) == tuple(h.shape[1:3]) and t is not h]
        return [t for t in self.pool if tuple(t.shape) == tuple(h.shape) and t is not h]

    # -- layers ---------------------------------------------------------------------
    def activation(self, h):
        kind = self.pick(("relu", "relu6", "act", "act", "prelu", "leaky", "elu"))
        if kind == "relu":
            return L.ReLU(name=self.name("relu"))(h)
        if kind == "relu6":
            return L.ReLU(max_value=6.0, name=self.name("relu6"))(h)
        if kind == "prelu":
            shared = [1, 2] if (len(h.shape) == 4 and self.chance(0.5)) else None
            return L.PReLU(shared_axes=shared, name=self.name("prelu"))(h)
        if kind == "leaky":
            return L.LeakyReLU(0.2, name=self.name("leaky"))(h)
        if kind == "elu":
            return L.ELU(name=self.name("elu"))(h)
        return L.Activation(self.pick(ACTIVATIONS), name=self.name("act"))(h)

    def batchnorm(self, h):
        center, scale = True, True
        r = self.rng.random()
        if r < 0.1:
            scale = False  # cannot be folded: a ChannelGate follows it
        elif r < 0.2:
            center = False
        return L.BatchNormalization(center=center, scale=scale, name=self.name("bn"))(h)

    def inline_activation(self):
        return self.pick((None, None, None, "relu", "swish", "sigmoid", "tanh"))

    def producer_layer(self, h, cout=None, keep_spatial=False):
        """A new channel-writing layer (or depthwise conv) that can be called on ``h``."""
        size = min(int(h.shape[1]), int(h.shape[2]))
        cin = int(h.shape[-1])
        cout = self.channels() if cout is None else cout
        kind = self.pick(("conv", "sep", "dw", "dense", "transpose", "grouped"), p=(0.38, 0.16, 0.14, 0.16, 0.04, 0.12))
        bias = self.chance(0.6)
        act = self.inline_activation()
        k = 3 if (size >= 3 and self.chance(0.6)) else 1
        stride = 2 if (not keep_spatial and size >= 4 and self.chance(0.25)) else 1
        padding = "valid" if (not keep_spatial and size > k and self.chance(0.3)) else "same"
        if kind == "dense":
            return L.Dense(cout, use_bias=bias, activation=act, name=self.name("dense"))
        if kind == "grouped":  # groups > 1: tied per conv group, or depthwise when groups == channels
            groups = [g for g in (2, 3, 4) if cin % g == 0 and cout % g == 0]
            if self.chance(0.25):
                cout, groups = cin, [cin]
            if groups:
                g = self.pick(groups)
                return L.Conv2D(cout, k, padding=padding, groups=g, use_bias=bias, name=self.name("grouped"))
        if kind == "transpose" and size <= 4:
            stride = 1 if keep_spatial else self.pick((1, 2))
            padding = "same" if keep_spatial else self.pick(("same", "valid"))
            k = self.pick((2, 3)) if padding == "same" or stride == 2 else 1
            return L.Conv2DTranspose(
                cout, k, strides=stride, padding=padding, use_bias=bias, activation=act, name=self.name("tconv")
            )
        if kind == "sep":
            m = self.pick((1, 1, 2))
            return L.SeparableConv2D(
                cout,
                k,
                strides=stride,
                padding=padding,
                depth_multiplier=m,
                use_bias=bias,
                activation=act,
                name=self.name("sep"),
            )
        if kind == "dw":  # keeps the channels (depth_multiplier 2 makes it opaque)
            m = 1 if (keep_spatial or self.chance(0.85)) else 2
            k = 3 if size >= 3 else 1
            return L.DepthwiseConv2D(
                k,
                strides=stride,
                padding=padding,
                depth_multiplier=m,
                use_bias=bias,
                activation=act,
                name=self.name("dw"),
            )
        kernel, dilation = k, 1
        if stride == 1 and k == 3 and self.chance(0.15):
            kernel = self.pick(((1, 3), (3, 1)))
        elif stride == 1 and k == 3 and padding == "same" and self.chance(0.15):
            dilation = 2
        return L.Conv2D(
            cout,
            kernel,
            strides=stride,
            padding=padding,
            dilation_rate=dilation,
            use_bias=bias,
            activation=act,
            name=self.name("conv"),
        )

    def producer(self, h, cout=None, keep_spatial=False):
        return self.producer_layer(h, cout, keep_spatial)(h)

    def unit(self, h, cout=None, keep_spatial=False):
        """producer [-> BN] [-> activation]."""
        h = self.producer(h, cout, keep_spatial)
        if self.chance(0.5):
            h = self.batchnorm(h)
        if self.chance(0.6):
            h = self.activation(h)
        return h

    def same_shape_branch(self, h):
        """A branch whose output has exactly ``h``'s shape."""
        c = int(h.shape[-1])
        b = self.unit(h, keep_spatial=True)
        if int(b.shape[-1]) != c or self.chance(0.4):
            b = self.unit(b, cout=c, keep_spatial=True)
        if int(b.shape[-1]) != c:  # a depthwise conv kept the other width
            b = L.Conv2D(c, 1, name=self.name("conv"))(b)
        return b

    def merge(self, tensors):
        names = tuple(MERGES) if len(tensors) == 2 else ("add", "maximum", "average", "multiply")
        kind = self.pick(names)
        return MERGES[kind](name=self.name(kind))(tensors)

    # -- blocks ---------------------------------------------------------------------
    def block_plain(self, h):
        return self.unit(h)

    def block_residual(self, h):
        if self.chance(0.3):  # projection shortcut: couples two producers
            c = self.channels()
            shortcut = L.Conv2D(c, 1, use_bias=self.chance(0.5), name=self.name("proj"))(h)
            if self.chance(0.4):
                shortcut = self.batchnorm(shortcut)
            h = shortcut
        branches = [h, self.same_shape_branch(h)]
        if self.chance(0.2):
            branches.append(self.same_shape_branch(h))
        same = self.same_shape(h)
        if same and self.chance(0.3):  # long skip from an earlier block
            branches.append(same[int(self.rng.integers(len(same)))])
        order = self.rng.permutation(len(branches))
        out = self.merge([branches[i] for i in order])
        if self.chance(0.5):
            out = self.activation(out)
        return out

    def block_concat(self, h):
        if self.chance(0.15):  # along a spatial axis: acts as a merge of the channels
            b = self.same_shape_branch(h)
            return L.Concatenate(axis=self.pick((1, 2)), name=self.name("sconcat"))(
                [h, b] if self.chance(0.5) else [b, h]
            )
        branches = [h]
        for _ in range(int(self.rng.integers(1, 3))):
            r = self.rng.random()
            same = self.same_shape(h, spatial_only=True)
            if r < 0.2 and same:
                branches.append(same[int(self.rng.integers(len(same)))])
            elif r < 0.3:
                branches.append(L.MaxPooling2D(3, strides=1, padding="same", name=self.name("maxpool"))(h))
            elif r < 0.38:
                branches.append(h)  # the same tensor twice
            else:
                branches.append(self.unit(h, keep_spatial=True))
        order = self.rng.permutation(len(branches))
        return L.Concatenate(axis=-1, name=self.name("concat"))([branches[i] for i in order])

    def block_se(self, h):
        c = int(h.shape[-1])
        r = max(1, c // 2) if self.chance(0.5) else self.channels()
        act = self.pick(("relu", "swish", None))
        variant = self.pick(("conv", "dense4d", "dense2d"))
        # The gate: a sigmoid layer, or the expand layer's own sigmoid, or a softmax
        # channel attention (a non element-wise activation inside a producer).
        gate = self.pick(("layer", "inline", "softmax"), p=(0.6, 0.3, 0.1))
        inline = {"layer": None, "inline": "sigmoid", "softmax": "softmax"}[gate]
        if variant == "dense2d":
            s = L.GlobalAveragePooling2D(name=self.name("se_gap"))(h)
            s = L.Dense(r, activation=act, name=self.name("se_reduce"))(s)
            s = L.Dense(c, activation=inline, name=self.name("se_expand"))(s)
            s = L.Reshape((1, 1, c), name=self.name("se_reshape"))(s)
        else:
            if self.chance(0.5):
                s = L.GlobalAveragePooling2D(keepdims=True, name=self.name("se_gap"))(h)
            else:
                s = L.GlobalAveragePooling2D(name=self.name("se_gap"))(h)
                s = L.Reshape((1, 1, c), name=self.name("se_reshape"))(s)
            if variant == "conv":
                s = L.Conv2D(r, 1, activation=act, name=self.name("se_reduce"))(s)
                s = L.Conv2D(c, 1, activation=inline, name=self.name("se_expand"))(s)
            else:
                s = L.Dense(r, activation=act, name=self.name("se_reduce"))(s)
                s = L.Dense(c, activation=inline, name=self.name("se_expand"))(s)
        if gate == "layer":
            s = L.Activation("sigmoid", name=self.name("se_sigmoid"))(s)
        branches = [h, s] if self.chance(0.5) else [s, h]
        return L.Multiply(name=self.name("se_mul"))(branches)

    def block_spatial(self, h):
        size = min(int(h.shape[1]), int(h.shape[2]))
        options = ["zeropad", "dropout", "spatialdropout"]
        if size >= 2:
            options += ["maxpool", "avgpool"]
        if size >= 3:
            options += ["crop"]
        if size <= 4:
            options += ["upsample", "upsample"]
        kind = self.pick(tuple(options))
        if kind == "maxpool":
            return L.MaxPooling2D(2, padding=self.pick(("same", "valid")), name=self.name("maxpool"))(h)
        if kind == "avgpool":
            return L.AveragePooling2D(2, padding=self.pick(("same", "valid")), name=self.name("avgpool"))(h)
        if kind == "zeropad":
            return L.ZeroPadding2D(((1, 0), (0, 1)) if self.chance(0.5) else 1, name=self.name("zeropad"))(h)
        if kind == "crop":
            return L.Cropping2D(((1, 0), (0, 1)) if self.chance(0.5) else 1, name=self.name("crop"))(h)
        if kind == "upsample":
            interp = self.pick(("nearest", "bilinear"))
            return L.UpSampling2D(2, interpolation=interp, name=self.name("upsample"))(h)
        if kind == "dropout":
            return L.Dropout(0.3, name=self.name("dropout"))(h)
        return L.SpatialDropout2D(0.3, name=self.name("spatialdropout"))(h)

    def block_sequence(self, h):
        """Reshape to (positions, channels) -> Conv1D or Dense [-> BN] -> reshape back."""
        rows, cols = int(h.shape[1]), int(h.shape[2])
        s = L.Reshape((rows * cols, int(h.shape[-1])), name=self.name("to_seq"))(h)
        cout = self.channels()
        if self.chance(0.6):
            s = L.Conv1D(cout, self.pick((1, 3)), padding="same", use_bias=self.chance(0.5), name=self.name("conv1d"))(
                s
            )
        else:
            s = L.Dense(cout, name=self.name("dense"))(s)
        if self.chance(0.5):
            s = self.batchnorm(s)
        return L.Reshape((rows, cols, cout), name=self.name("from_seq"))(s)

    def block_nested(self, h):
        """A residual or plain block wrapped into a nested functional model."""
        inner_in = keras.Input(tuple(h.shape[1:]), name=self.name("inner_input"))
        outer_pool, self.pool = self.pool, []  # the inner graph cannot read outer tensors
        inner = self.block_residual(inner_in) if self.chance(0.5) else self.unit(inner_in)
        self.pool = outer_pool
        sub = keras.Model(inner_in, inner, name=self.name("nested"))
        out = sub(h)
        if self.shared and tuple(out.shape) == tuple(h.shape) and self.chance(0.3):  # the nested model called twice
            out = sub(out)
        return out

    def block_shared(self, h):
        """One layer called at two places (weights shared)."""
        c = int(h.shape[-1])
        if self.chance(0.4):  # applied twice in a row: needs c -> c
            layer = self.producer_layer(h, cout=c, keep_spatial=True)
            mid = layer(h)
            if int(mid.shape[-1]) != c:
                return mid
            if self.chance(0.5):
                mid = self.activation(mid)
            return layer(mid)
        other = self.same_shape(h)
        if other and self.chance(0.5):
            other = other[int(self.rng.integers(len(other)))]
        else:
            other = L.MaxPooling2D(3, strides=1, padding="same", name=self.name("maxpool"))(h)
        if self.chance(0.25):
            layer = L.BatchNormalization(name=self.name("shared_bn"))
        else:
            layer = self.producer_layer(h, keep_spatial=True)
        a, b = layer(h), layer(other)
        if self.chance(0.5):
            return L.Concatenate(name=self.name("concat"))([a, b])
        return self.merge([a, b])

    def block_opaque(self, h):
        """A layer the analysis cannot see through (its inputs and outputs stay unpruned)."""
        kind = self.pick(("lambda", "tfop", "softmax", "layernorm", "act_softmax"))
        if kind == "lambda":
            return L.Lambda(_double_minus_half, name=self.name("lambda"))(h)
        if kind == "tfop":
            return tf.nn.relu(h * 0.5 + 0.25)
        if kind == "softmax":
            return L.Softmax(name=self.name("softmax"))(h)
        if kind == "layernorm":
            return L.LayerNormalization(name=self.name("layernorm"))(h)
        return L.Activation("softmax", name=self.name("act_softmax"))(h)

    def block_tfop(self, h):
        """Functional math on tensors (TF-op layers), as keras.applications' MobileNetV3 writes it."""
        c = int(h.shape[-1])
        kind = self.pick(("hard_swish", "hard_sigmoid", "per_channel", "clip", "chain"))
        if kind == "hard_swish":
            return h * tf.nn.relu6(h + 3.0) * (1.0 / 6.0)
        if kind == "hard_sigmoid":
            return tf.nn.relu6(h + 3.0) / 6.0
        if kind == "per_channel":
            scale = self.rng.uniform(0.5, 1.5, c).astype("float32")
            return (h - self.rng.normal(size=c).astype("float32")) * scale
        if kind == "clip":
            return tf.clip_by_value(h, -1.0, 1.0) if self.chance(0.5) else tf.maximum(h, 0.0)
        s = tf.reduce_mean(h, axis=[1, 2], keepdims=True)
        return h * tf.math.sigmoid(s * 2.0 - 0.5)

    def block_ghost(self, h):
        """GhostNet's module (conv + cheap depthwise, concatenated, sliced to the width) or
        FasterNet's partial conv (split channels, conv on one part, concatenate)."""
        c = int(h.shape[-1])
        if c >= 2 and self.chance(0.4):
            first = int(self.rng.integers(1, c))
            a, b = tf.split(h, [first, c - first], axis=-1)
            a = L.Conv2D(first, 3, padding="same", name=self.name("pconv"))(a)
            return tf.concat([a, b] if self.chance(0.7) else [b, a], axis=-1)
        width = self.channels() + 1
        primary = self.unit(h, cout=(width + 1) // 2, keep_spatial=True)
        cheap = L.DepthwiseConv2D(3, padding="same", name=self.name("cheap"))(primary)
        if self.chance(0.5):
            cheap = self.batchnorm(cheap)
        out = L.Concatenate(name=self.name("ghost"))([primary, cheap])
        return out[..., :width] if self.chance(0.7) else out[:, :, :, 1:]

    def block_custom(self, h):
        """Custom layers with no rule: channel-local ones are probed, a mixing one stays opaque."""
        kind = self.pick(("hard_swish", "layer_scale", "mix"), p=(0.4, 0.4, 0.2))
        if kind == "hard_swish":
            return HardSwish(name=self.name("custom_hswish"))(h)
        if kind == "layer_scale":
            return LayerScale(int(h.shape[-1]), name=self.name("layer_scale"))(h)
        return ChannelMix(name=self.name("channel_mix"))(h)

    def block(self, h, trivial=False, kind=None):
        if trivial:
            kind = self.pick(("spatial", "bn", "act"))
        elif kind is None:
            kinds = ("plain", "residual", "concat", "se", "spatial", "bn", "act", "nested", "sequence", "opaque")
            kinds += ("tfop", "ghost", "custom")
            p = (0.17, 0.18, 0.11, 0.09, 0.08, 0.04, 0.04, 0.05, 0.04, 0.03, 0.07, 0.05, 0.05)
            kind = self.pick(kinds, p=p)
        if kind == "bn":
            return self.batchnorm(h)
        if kind == "act":
            return self.activation(h)
        return getattr(self, f"block_{kind}")(h)

    # -- heads ----------------------------------------------------------------------
    def head(self, h, extra=None, trivial=False):
        classes = int(self.rng.integers(2, 6))
        kinds = ("gap", "gmp", "flatten", "flatten2", "none")
        kind = self.pick(kinds, p=(0.3, 0.1, 0.25, 0.25, 0.1))
        if trivial:
            kind = self.pick(("gap", "flatten"))
        if kind == "none":  # the 4-D feature map itself is an output
            return h
        if kind == "gap":
            v = L.GlobalAveragePooling2D(name=self.name("gap"))(h)
        elif kind == "gmp":
            v = L.GlobalMaxPooling2D(name=self.name("gmp"))(h)
        else:
            v = L.Flatten(name=self.name("flatten"))(h)
            if not trivial and self.chance(0.25):  # per-feature layers on the flattened map
                v = self.pick((self.batchnorm, self.activation, L.Dropout(0.2, name=self.name("dropout"))))(v)
        if extra is not None:
            v = L.Concatenate(name=self.name("concat"))([v, extra] if self.chance(0.5) else [extra, v])
        if not trivial and (kind == "flatten2" or self.chance(0.2)):
            v = L.Dense(self.channels(), activation=self.pick(("relu", None)), name=self.name("fc"))(v)
            if self.chance(0.3):
                v = L.Dropout(0.5, name=self.name("dropout"))(v)
        return L.Dense(classes, activation=self.pick((None, "softmax")), name=self.name("head"))(v)


def random_graph(seed, shared=False):
    """A small random functional model, fully determined by ``seed`` (weights included).

    With ``shared=True`` the graph also has at least one layer (or nested model) called at
    two places; those graphs are a separate family (the same seed draws another model).
    """
    b = _Builder(seed, shared)
    rng = b.rng
    size = int(b.pick((6, 8)))
    cin = 3 if size == 8 else int(rng.integers(1, 5))
    x = keras.Input((size, size, cin), name="input")
    inputs = [x]
    h = x
    trivial = not shared and b.chance(0.03)  # nothing prunable: stripping must rebuild the same model
    second = None if trivial else b.pick((None, None, None, None, "image", "vector"))
    if not trivial and b.chance(0.6):
        h = b.unit(h, keep_spatial=second == "image")
    extra = None
    if second == "image":  # a second image input merged into the stem
        x2 = keras.Input((size, size, int(rng.integers(1, 4))), name="input2")
        inputs.append(x2)
        h2 = b.unit(x2, keep_spatial=True)
        c = int(h.shape[-1])
        if b.chance(0.5):
            if int(h2.shape[-1]) != c:
                h2 = L.Conv2D(c, 1, name=b.name("conv"))(h2)
            h = b.merge([h, h2])
        else:
            h = L.Concatenate(name=b.name("concat"))([h, h2])
    elif second == "vector":  # a side vector joined at the head
        x2 = keras.Input((int(rng.integers(2, 6)),), name="input2")
        inputs.append(x2)
        extra = L.Dense(b.channels(), activation="relu", name=b.name("side"))(x2) if b.chance(0.7) else x2
    outputs = []
    blocks = int(rng.integers(3, 9))
    shared_at = int(rng.integers(blocks)) if shared else -1
    for i in range(blocks):
        b.pool.append(h)
        h = b.block(h, trivial, kind="shared" if i == shared_at else None)
        if not trivial and len(outputs) < 2 and b.chance(0.06):  # an output from the middle of the graph
            outputs.append(b.head(h) if b.chance(0.5) else h)
    outputs.insert(0, b.head(h, extra, trivial))
    model = keras.Model(inputs if len(inputs) > 1 else x, outputs if len(outputs) > 1 else outputs[0])
    randomize_weights(model, rng)
    return model


def all_layers(model):
    """The layers of ``model``, nested functional models walked into."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def randomize_weights(model, rng):
    """Seeded weights with unit-scale activations; BN statistics far from the identity."""
    for layer in all_layers(model):
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for var, w in zip(layer.weights, weights):
            name = var.name.split("/")[-1].split(":")[0]
            shape = w.shape
            if isinstance(layer, L.BatchNormalization):
                if name in ("gamma", "moving_variance"):
                    v = rng.uniform(0.5, 1.5, shape)
                else:
                    v = rng.normal(0.0, 0.5, shape)
            elif isinstance(layer, L.LayerNormalization):
                v = rng.uniform(0.5, 1.5, shape) if name == "gamma" else rng.normal(0.0, 0.5, shape)
            elif name == "depthwise_kernel":
                v = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:2])), shape)
            elif "kernel" in name:
                fan_in = (
                    np.prod(shape[:-2]) * shape[-1] if isinstance(layer, L.Conv2DTranspose) else np.prod(shape[:-1])
                )
                v = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            elif name == "alpha":  # PReLU
                v = rng.uniform(-0.5, 0.5, shape)
            else:  # biases
                v = rng.normal(0.0, 0.5, shape)
            new.append(v.astype(w.dtype))
        layer.set_weights(new)


def random_inputs(model, seed, batch=3):
    rng = np.random.default_rng(seed + 1_000_003)
    return [rng.normal(size=(batch, *t.shape[1:])).astype("float32") for t in model.inputs]


def random_masks(analysis, seed):
    """Per group a random keep rate in [0.1, 0.9] and at least one kept channel."""
    rng = np.random.default_rng(seed + 2_000_003)
    masks = {}
    for g in analysis.groups:
        keep = rng.uniform(0.1, 0.9)
        m = rng.random(g.size) < keep
        m[rng.integers(g.size)] = True
        masks[g.name] = m
    return masks
