"""TF-op layers (functional math on tensors) and grouped convolutions in the analysis and strip."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf

L = keras.layers
PER_CHANNEL = np.linspace(0.5, 1.5, 6).astype("float32")

# op on a 6-channel tensor -> the kind the analysis gives its TF-op layer
OPS = {
    "x + 3": (lambda x: x + 3.0, "channelwise"),
    "x * (1/6)": (lambda x: x * (1.0 / 6.0), "passthrough"),
    "x / 6": (lambda x: x / 6.0, "passthrough"),
    "x - per-channel": (lambda x: x - PER_CHANNEL, "channelwise"),
    "x * per-channel": (lambda x: x * PER_CHANNEL, "passthrough"),
    "relu6": (tf.nn.relu6, "passthrough"),
    "sigmoid": (tf.math.sigmoid, "channelwise"),
    "clip(-1, 1)": (lambda x: tf.clip_by_value(x, -1.0, 1.0), "passthrough"),
    "clip(0.5, 1)": (lambda x: tf.clip_by_value(x, 0.5, 1.0), "channelwise"),
    "maximum(x, 0)": (lambda x: tf.maximum(x, 0.0), "passthrough"),
    "x * x": (lambda x: x * x, "merge"),
    "reduce_mean(spatial, keepdims)": (lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), "passthrough"),
    "x[..., 1:4]": (lambda x: x[..., 1:4], "passthrough"),
    "2 / x": (lambda x: 2.0 / x, "opaque"),
    "x / x": (lambda x: x / x, "opaque"),
    "log": (tf.math.log, "opaque"),
    "reduce_mean(channels)": (lambda x: tf.reduce_mean(x, axis=-1, keepdims=True), "opaque"),
    "x[..., 2]": (lambda x: x[..., 2], "opaque"),
    "reshape keeping channels": (lambda x: tf.reshape(x, [-1, 16, 6]), "passthrough"),
    "reshape into heads": (lambda x: tf.reshape(x, [-1, 4, 4, 2, 3]), "reshape"),
    "reshape cutting channels into parts along positions": (lambda x: tf.reshape(x, [-1, 4, 8, 3]), "reshape"),
    "reshape joining channel vectors": (lambda x: tf.reshape(x, [-1, 2, 4, 12]), "reshape"),
    "reshape mixing positions into channels": (lambda x: tf.reshape(x, [-1, 4, 3, 8]), "opaque"),
    "transpose keeping channels": (lambda x: tf.transpose(x, [0, 2, 1, 3]), "passthrough"),
    "transpose moving channels": (lambda x: tf.transpose(x, [0, 3, 1, 2]), "opaque"),
    # no exact rule: the probe finds these channel-local
    "resize (probe)": (lambda x: tf.image.resize(x, [8, 8]), "passthrough"),
    "softmax over positions (probe)": (lambda x: tf.nn.softmax(x, axis=1), "channelwise"),
    "softmax over channels (probe)": (lambda x: tf.nn.softmax(x, axis=-1), "opaque"),
}


@pytest.mark.filterwarnings("ignore:chipnet_tf. these layers cannot be seen through:UserWarning")
@pytest.mark.filterwarnings("ignore:chipnet_tf. layer .* has no exact rule:UserWarning")
@pytest.mark.parametrize("name", list(OPS))
def test_tf_op_kind_is_decided_by_op_and_arguments(name):
    fn, kind = OPS[name]
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(6, 1, name="conv")(x)
    op = fn(h)
    model = keras.Model(x, L.Dense(2, name="head")(L.Flatten()(op)))
    analysis = chipnet_tf.analyze(model)
    kinds = {n.name: k for n, k in zip(analysis.graph.nodes, analysis.kinds)}
    assert kinds[op._keras_history.layer.name] == kind
    assert bool(analysis.groups) == (kind != "opaque")


def _check_strip(model, masks, x):
    pruned = chipnet_tf.prune_low_budget(model, 0.5)
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    np.testing.assert_allclose(small(x).numpy(), pruned(x).numpy(), atol=1e-5)
    report = chipnet_tf.budget_report(model, masks=masks).totals
    assert small.count_params() == report["params"]["kept"]
    assert chipnet_tf.count_flops(small) == report["flops"]["kept"]
    return small


def test_mobilenet_v3_hard_swish_split_slice_and_per_channel_constants_strip_exactly():
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same", name="c1")(x)
    h = h * tf.nn.relu6(h + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard-swish
    h = L.Conv2D(10, 1, name="c2")(h)
    a, b = tf.split(h, [4, 6], axis=-1)
    b = L.Conv2D(6, 3, padding="same", name="c3")(b) * np.linspace(0.5, 1.5, 6).astype("float32")
    h = tf.concat([b, a], axis=-1)[..., 2:9]  # a FasterNet-like block, sliced GhostNet-style
    model = keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model)
    sizes = {g.name: g.size for g in analysis.groups}
    # The slice [2:9] of [c3 (6), c2[0:4] (4)] cuts c3 and c2[0:4] into parts of their own.
    assert sizes == {"c1": 8, "c2[4:10]": 6, "c2[0:4][0:3]": 3, "c3[2:6]": 4, "c3[0:2]": 2}
    rng = np.random.default_rng(0)
    masks = {n: np.eye(1, s, 0, bool)[0] | (rng.random(s) < 0.5) for n, s in sizes.items()}
    small = _check_strip(model, masks, rng.normal(size=(2, 6, 6, 3)).astype("float32"))
    split = next(layer for layer in small.layers if getattr(layer, "symbol", "") == "split")
    split_sizes = [int(t.shape[-1]) for t in split.output]
    assert split_sizes == [int(masks["c2[0:4][0:3]"].sum()) + 1, int(masks["c2[4:10]"].sum())]


def test_grouped_conv_keeps_the_same_channels_in_every_conv_group():
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 1, name="c1")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Conv2D(12, 3, padding="same", groups=4, name="grouped")(L.ReLU()(h))
    h = L.Conv2D(6, 3, padding="same", groups=6, name="depthwise_like")(L.Conv2D(6, 1, name="c2")(h))
    model = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model)
    # c1's 8 channels feed 4 conv groups of 2: its mask has 2 entries, tiled 4 times.
    assert {g.name: g.size for g in analysis.groups} == {"c1": 2, "grouped": 3, "c2": 6}
    masks = {
        "c1": np.array([0, 1], bool),
        "grouped": np.array([1, 0, 1], bool),
        "c2": np.array([1, 0, 0, 1, 1, 0], bool),
    }
    small = _check_strip(model, masks, np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype("float32"))
    grouped, depthwise = small.get_layer("grouped"), small.get_layer("depthwise_like")
    assert (grouped.groups, grouped.filters, grouped.kernel.shape[-2]) == (4, 8, 1)
    assert (depthwise.groups, depthwise.filters) == (3, 3)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_wrapped_and_stripped_models_with_tf_ops_and_grouped_convs_round_trip(tmp_path, fmt):
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 1, name="c1")(x)
    h = h * tf.nn.relu6(h + 3.0) * (1.0 / 6.0)
    a, b = tf.split(L.Conv2D(8, 3, padding="same", groups=2, name="grouped")(h), 2, axis=-1)
    # x[:, :, :, 1:], not x[..., 1:]: tf_keras cannot save an Ellipsis in the .keras format.
    h = tf.concat([a * np.linspace(0.5, 1.5, 4).astype("float32"), b], axis=-1)[:, :, :, 1:]
    model = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    pruned = chipnet_tf.prune_low_budget(model, 0.5)
    masks = {
        n: np.eye(1, len(m), 0, bool)[0] | (np.arange(len(m)) % 2 == 1) for n, m in chipnet_tf.get_masks(pruned).items()
    }
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    data = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
    for name, m in (("pruned", pruned), ("small", small)):
        path = str(tmp_path / f"{name}.{fmt}")
        m.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded(data).numpy(), m(data).numpy(), atol=1e-6)


@pytest.mark.filterwarnings("ignore:chipnet_tf. layer .* has no exact rule:UserWarning")
def test_ghost_modules_partial_convs_and_channel_keeping_reshapes_strip_exactly():
    x = keras.Input((6, 6, 3))
    stem = L.Conv2D(8, 3, padding="same", name="stem")(x)
    # A ghost module: half the channels from a conv, half from a cheap depthwise op on them,
    # added to a residual written by one conv (cut in halves, each half coupled with "prim").
    prim = L.Conv2D(4, 1, name="prim")(stem)
    ghost = L.Concatenate()([prim, L.DepthwiseConv2D(3, padding="same", name="cheap")(prim)])
    h = L.Add(name="ghost_add")([stem, ghost])
    # FasterNet's partial conv: split with a size list holding -1, conv on the first part.
    part, rest = tf.split(h, [2, -1], axis=-1)
    h = L.Add(name="partial_add")([h, tf.concat([L.Conv2D(2, 3, padding="same", name="partial")(part), rest], -1)])
    # Attention-style reshapes and transposes that keep the channel axis; a resize whose size
    # is read from the input's shape.
    tokens = tf.transpose(tf.reshape(h, [-1, 36, 8]), [1, 0, 2])
    h = tf.reshape(tf.transpose(tokens, [1, 0, 2]), [-1, 6, 6, 8])
    pooled = L.AveragePooling2D(2, name="pool")(h)
    h = L.Multiply(name="attend")([h, tf.nn.sigmoid(tf.image.resize(pooled, tf.shape(h)[1:-1]))])
    model = keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model)
    assert analysis.stopped == []
    assert list(analysis.inferred.values()) == ["TFOpLambda(image.resize)"]
    sizes = {g.name: g.size for g in analysis.groups}
    # The ghost Add ties stem[0:4] and stem[4:8] each to prim; the split cuts prim at 2; the
    # partial Add ties "partial" to prim[0:2]. Every conv's output is one of two groups.
    assert sizes == {"prim[0:2]": 2, "prim[2:4]": 2}
    assert set(next(g for g in analysis.groups if g.name == "prim[0:2]").writers) >= {"cheap", "partial"}
    masks = {"prim[0:2]": np.array([0, 1], bool), "prim[2:4]": np.array([1, 1], bool)}
    small = _check_strip(model, masks, np.random.default_rng(4).normal(size=(2, 6, 6, 3)).astype("float32"))
    assert [small.get_layer(n).filters for n in ("stem", "prim", "partial")] == [6, 3, 1]
    reshape = [layer for layer in small.layers if getattr(layer, "symbol", "") == "reshape"]
    assert [int(layer.output.shape[-1]) for layer in reshape] == [6, 6]


def test_split_into_equal_parts_prunes_the_same_channels_of_every_part():
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(8, 1, name="c")(x)
    a, b = tf.split(h, 2, axis=-1)  # stays tf.split(., 2) when stripped: its parts keep as many channels
    h = tf.concat([L.Conv2D(3, 1, name="d")(a), b], axis=-1)
    model = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model)
    assert {g.name: g.size for g in analysis.groups} == {"c[0:4]": 4, "d": 3}
    masks = {"c[0:4]": np.array([1, 0, 0, 1], bool), "d": np.array([0, 1, 1], bool)}
    small = _check_strip(model, masks, np.random.default_rng(5).normal(size=(2, 4, 4, 3)).astype("float32"))
    assert small.get_layer("c").filters == 4
    split = next(layer for layer in small.layers if getattr(layer, "symbol", "") == "split")
    assert [int(t.shape[-1]) for t in split.output] == [2, 2]


@pytest.mark.filterwarnings("ignore:chipnet_tf. layer .* has no exact rule:UserWarning")
def test_split_attention_radix_softmax_strips_exactly():
    """ResNeSt's split attention: radix parts summed as a stacked list, a softmax over the
    radix axis between reshapes that cut the channel axis into parts and join them back."""
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(8, 1, name="c")(x)
    a, b = tf.split(h, 2, axis=-1)
    gap = tf.reduce_mean(tf.reduce_sum([a, b], axis=0), [1, 2], keepdims=True)
    att = L.Conv2D(8, 1, name="att")(L.Conv2D(5, 1, name="squeeze")(gap))
    att = tf.reshape(tf.nn.softmax(tf.reshape(att, [-1, 2, 4]), axis=1), [-1, 1, 1, 8])
    h = L.Multiply(name="attend")([h, att])
    model = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model)
    assert analysis.stopped == []
    assert {g.name: g.size for g in analysis.groups} == {"c[0:4]": 4, "squeeze": 5}
    masks = {"c[0:4]": np.array([1, 0, 1, 1], bool), "squeeze": np.array([0, 1, 1, 0, 1], bool)}
    small = _check_strip(model, masks, np.random.default_rng(6).normal(size=(2, 4, 4, 3)).astype("float32"))
    assert (small.get_layer("c").filters, small.get_layer("att").filters) == (6, 6)
    reshapes = [layer for layer in small.layers if getattr(layer, "symbol", "") == "reshape"]
    assert [tuple(layer.output.shape[1:]) for layer in reshapes] == [(2, 3), (1, 1, 6)]
