"""Keras 3 models of the zoo benchmark (``benchmarks/strip/zoo_keras3.py``): the analysis
gaps its models showed, and a fast sample of its rows.

- Keras 3's ``Activation("hard_swish")`` (its MobileNetV3's) is ``hard_silu``: zero-preserving;
- a custom Keras 3 layer (ConvNeXt's ``LayerScale``) is probed like a tf_keras one, and one
  made of Keras layers (keras-hub's MobileNetV3 blocks) is traced into them
  (``tests/test_composite_layers.py``);
- count_flops traces custom layers with their grouped convolutions inline;
- the independent count (:mod:`tests.flops_oracle`) sees the bias adds Keras 3 writes as AddV2
  (a one-channel bias, ``EinsumDense``) and attention's Einsum ops.
"""

import os

import numpy as np
import pytest

import chipnet_tf

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="the oracle reads a TF graph"
)


@pytest.fixture(scope="module")
def keras():
    import keras

    assert keras.__version__.startswith("3.")
    return keras


def _strip(model, masks):
    pruned = chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    return pruned, chipnet_tf.strip_pruning(pruned, masks=masks)


def _rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_hard_swish_activation_keeps_its_group(keras):
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(6, 3, padding="same", name="conv1")(x)
    y = L.Activation("hard_swish", name="hs")(y)
    y = L.Conv2D(5, 3, padding="same", name="conv2")(y)
    y = L.Activation("hard_silu", name="hs2")(y)
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(4, name="fc")(y))
    analysis = chipnet_tf.analyze(model, warn=False)
    assert [(g.name, g.size) for g in analysis.groups] == [("conv1", 6), ("conv2", 5)]
    assert analysis.stopped == []
    masks = {"conv1": np.array([1, 0, 1, 0, 0, 1], "float32"), "conv2": np.array([0, 1, 1, 0, 0], "float32")}
    pruned, small = _strip(model, masks)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    assert _rel_diff(small(x), pruned(x, training=False)) <= 1e-6
    assert small.get_layer("conv2").kernel.shape == (3, 3, 3, 2)


def test_keras3_layer_scale_is_probed_channel_local(keras):
    from keras.src.applications.convnext import LayerScale

    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3))
    y = L.Conv2D(8, 3, padding="same", name="conv")(x)
    y = LayerScale(0.5, 8, name="scale")(y)
    y = L.Conv2D(4, 1, name="mix")(y)
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(3, name="fc")(y))
    model.get_layer("scale").set_weights([np.arange(1, 9, dtype="float32")])
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.inferred == {"scale": "LayerScale"}
    assert [(g.name, g.size) for g in analysis.groups] == [("conv", 8), ("mix", 4)]
    masks = {"conv": np.array([0, 1, 0, 1, 1, 0, 0, 0], "float32"), "mix": np.ones(4, "float32")}
    pruned, small = _strip(model, masks)
    np.testing.assert_array_equal(np.asarray(small.get_layer("scale").gamma), [2, 4, 5])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    assert _rel_diff(small(x), pruned(x, training=False)) <= 1e-6
    assert chipnet_tf.count_flops(small) == chipnet_tf.budget_report(model, masks=masks).totals["flops"]["kept"]


def test_split_and_channel_slice_cut_the_channel_space(keras):
    """keras.ops.split along channels (CSPNet's stages) and x[..., a:b] map channels by index;
    the stripped model splits and slices at the kept channels."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3))
    y = L.Conv2D(8, 3, padding="same", name="conv")(x)
    a, b = keras.ops.split(y, 2, axis=-1)
    a = L.Conv2D(4, 1, name="ca")(a)
    c = L.Concatenate(name="cat")([a, b])[..., 2:7]
    c = c[:, 0]  # keeps every channel
    g = L.GlobalAveragePooling1D()(c)
    model = keras.Model(x, L.Dense(3, name="fc")(g))
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == []
    assert [(g.name, g.size) for g in analysis.groups] == [
        ("conv[0:4]", 4),
        ("ca[0:2]", 2),
        ("ca[2:4]", 2),
        ("conv[4:8][0:3]", 3),
    ]
    masks = {
        "conv[0:4]": np.array([0, 1, 0, 1], "float32"),
        "ca[0:2]": np.array([1, 0], "float32"),
        "ca[2:4]": np.array([0, 1], "float32"),
        "conv[4:8][0:3]": np.array([1, 0, 1], "float32"),
    }
    pruned, small = _strip(model, masks)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    assert _rel_diff(small(x), pruned(x, training=False)) <= 1e-6
    assert small.get_layer("conv").filters == 5  # 2 + the 3 of the second part (channel 7 is read)
    assert small.get_layer("ca").kernel.shape == (1, 1, 2, 2)
    assert small.get_layer("fc").kernel.shape == (3, 3)
    assert chipnet_tf.count_flops(small) == chipnet_tf.budget_report(model, masks=masks).totals["flops"]["kept"]


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_count_flops_sees_grouped_convs_inside_custom_layers(keras, flavour):
    """keras-hub's MobileNetV3 blocks are custom layers around Conv2D(groups=C): count_flops
    traces them, and a grouped conv runs as an XLA call the trace did not show."""
    from chipnet_tf.compat import keras as tf_keras

    K = keras if flavour == "keras3" else tf_keras

    class Block(K.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dw = K.layers.Conv2D(8, 3, padding="same", groups=8, name="dw")
            self.pw = K.layers.Conv2D(4, 1, name="pw")

        def call(self, x):
            return self.pw(self.dw(x))

    x = K.Input((6, 6, 8))
    model = K.Model(x, Block(name="block")(x))
    model(np.zeros((1, 6, 6, 8), "float32"))
    assert chipnet_tf.count_flops(model) == 36 * 8 * (9 + 1) + 36 * 4 * (8 + 1)


def test_count_flops_of_a_custom_transformer_block_counts_attention(keras):
    """A custom layer around MultiHeadAttention and an MLP (keras-hub's ViT encoder) is
    traced into its parts: count_flops counts the projections, their biases, attention's two
    products (QK^T, AV) and the MLP, as the independent count does."""
    from benchmarks.strip import zoo_keras3

    tokens, dim, heads, key_dim, hidden = 5, 8, 2, 4, 16

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mha = keras.layers.MultiHeadAttention(heads, key_dim)
            self.fc1 = keras.layers.Dense(hidden, activation="gelu")
            self.fc2 = keras.layers.Dense(dim)

        def call(self, x):
            x = x + self.mha(x, x)
            return x + self.fc2(self.fc1(x))

    x = keras.Input((tokens, dim))
    model = keras.Model(x, Block(name="block")(x))
    counts = zoo_keras3.independent_counts(model)
    projections = 4 * tokens * dim * heads * key_dim + 3 * tokens * heads * key_dim + tokens * dim
    mlp = tokens * (dim * hidden + hidden) + tokens * (hidden * dim + dim)
    assert counts["activations"] == 2 * heads * tokens * tokens * key_dim
    assert counts["total"] - counts["activations"] == projections + mlp
    assert chipnet_tf.count_flops(model) == counts["total"] == projections + mlp + counts["activations"]


def test_independent_count_sees_a_one_channel_bias(keras):
    from benchmarks.strip import zoo_keras3

    L = keras.layers
    x = keras.Input((4, 4, 3))
    y = L.Conv2D(1, 1, name="one")(x)  # Keras 3 adds a one-channel bias with AddV2
    y = L.Conv2D(5, 3, padding="same", name="five")(y)  # and a wider one with BiasAdd
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(2, name="fc")(y))
    counts = zoo_keras3.independent_counts(model)
    macs = 16 * 3 + 16 * 9 * 5 + 5 * 2
    assert counts == {"weighted": macs, "activations": 0, "bias": 16 + 16 * 5 + 2, "total": macs + 16 + 16 * 5 + 2}
    assert chipnet_tf.count_flops(model) == counts["total"]


def test_independent_count_splits_einsums(keras):
    """Attention's two Einsums (QK^T and AV) are counted apart from the projections (Keras 3
    runs EinsumDense as BatchMatMulV2; the biases of q, k, v are AddV2, the output's BiasAdd)."""
    from benchmarks.strip import zoo_keras3

    tokens, dim, heads, key_dim = 5, 8, 2, 4
    x = keras.Input((tokens, dim))
    model = keras.Model(x, keras.layers.MultiHeadAttention(heads, key_dim, name="mha")(x, x))
    counts = zoo_keras3.independent_counts(model)
    assert counts == {
        "weighted": 4 * tokens * dim * heads * key_dim,  # q, k, v, output
        "activations": 2 * heads * tokens * tokens * key_dim,  # QK^T, AV
        "bias": 3 * tokens * heads * key_dim + tokens * dim,  # q, k, v biases + the output's
        "total": 1280 + 400 + 120 + 40,
    }
    assert chipnet_tf.count_flops(model) == counts["total"]


@pytest.mark.parametrize(
    "name, fraction",
    [("MobileNetV3Small", 0.007), ("hub.ResNet18", 0.0098), ("hub.MobileNetV3Small", 0.0074)],
)
def test_zoo_sample(name, fraction):
    """Rows of ``python -m benchmarks.strip.zoo_reach --keras 3 --strip`` (keras-hub's
    MobileNetV3: its inverted-residual and squeeze-and-excite blocks traced into)."""
    if name.startswith("hub."):
        pytest.importorskip("keras_hub")
    from benchmarks.strip import zoo_reach

    row = zoo_reach.row(name, strip=True, keras_version=3)
    assert row["smallest_flops_fraction"] == fraction
    assert row["stopped"] == []
    assert row["rel_max_diff"] <= 1e-5
    assert row["params_exact"] and row["flops_exact"]
    assert row["count_flops"] == row["independent"]["total"]
    assert row["independent"]["activations"] == 0
    assert 0.09 <= row["flops_fraction"] <= 0.1


def test_a_rule_by_qualified_class_name(keras):
    """A rule registered by ``"<module>.<class>"`` (how keras-hub's layers get theirs, with
    keras-hub never imported by the registry) applies to the class and its subclasses; a
    rule registered for the class object comes first."""
    from chipnet_tf import registry

    class Scale(keras.layers.Layer):
        pass

    class SubScale(Scale):
        pass

    name = f"{Scale.__module__}.{Scale.__qualname__}"
    rule = registry.LayerRule("passthrough")
    registry.register_named(name, rule)
    try:
        assert registry.lookup(Scale()) is rule and registry.lookup(SubScale()) is rule
        with registry.registered(SubScale, registry.LayerRule("opaque")) as own:
            assert registry.lookup(SubScale()) is own and registry.lookup(Scale()) is rule
    finally:
        assert registry.unregister_layer(name) is rule
    assert not registry.has_rule(Scale())
    with pytest.raises(TypeError, match="module"):
        registry.register_named("Scale", rule)


@pytest.mark.parametrize(
    "name, fraction, count",
    [("hub.ViT", 0.0342, 139386), ("hub.DeiT", 0.0358, 147470), ("hub.DINOV2", 0.0342, 139386)],
)
def test_hub_transformer_rows(name, fraction, count):
    """keras-hub's vision transformers: the patch embedding (a rule slicing its conv, tokens
    and position table) makes the residual stream a group, and the encoders are traced into
    attention and MLPs (DeiT's blocks return ``(y, None)`` and its encoder empty
    placeholders; DINOv2's encoder a dict of stage outputs, its blocks a layer scale and an
    Identity): stream, heads and hidden units per block are groups, stripped exactly, and
    count_flops equals the independent count, attention included (``count``: the stripped
    model's FLOPs at a budget of 0.1)."""
    pytest.importorskip("keras_hub")
    from benchmarks.strip import zoo_reach

    row = zoo_reach.row(name, strip=True, keras_version=3)
    assert (row["groups"], row["smallest_flops_fraction"], row["stopped"], row["inferred"]) == (5, fraction, [], [])
    assert row["rel_max_diff"] <= 1e-5 and row["params_exact"] and row["flops_exact"]
    assert row["independent"]["activations"] > 0
    assert row["count_flops"] == row["independent"]["total"] == count
    assert 0.09 <= row["flops_fraction"] <= 0.1


def test_hub_swin_with_extra_call_arguments_is_counted(keras):
    """keras-hub's Swin calls its patch merging as ``patch_merging(x, H, W)``: the count
    traces that call with its Python arguments (it failed with ``missing a required
    argument: 'H'``) and equals the independent count. Its blocks stay whole (no group)."""
    keras_hub = pytest.importorskip("keras_hub")
    from tests.flops_oracle import oracle_counts

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.SwinTransformerBackbone(
        image_shape=(32, 32, 3), patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4
    )
    x = keras.Input((32, 32, 3))
    y = keras.layers.GlobalAveragePooling1D()(backbone(x))  # (batch, tokens, width)
    model = keras.Model(x, keras.layers.Dense(10)(y))
    assert chipnet_tf.count_flops(model) == oracle_counts(model)["total"] == 3629706
    assert chipnet_tf.analyze(model, warn=False).groups == []
