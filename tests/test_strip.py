"""strip_pruning: exact smaller models, counts, serialisation, mixed precision, bad input."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.compat import keras, tf
from tests.flops_oracle import oracle_flops
from tests.models import pruning_optimizer, residual_cnn, strip_under_masks, toy_model
from tests.test_prune import _randomise_bn, _se_net, random_masks

L = keras.layers


def _strip_and_check(dense, masks, x, atol=1e-4):
    """Strips both ways, checks equivalence and exact counts; returns the stripped model."""
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    transferred = chipnet_tf.strip_pruning(dense, masks=masks)
    want = pruned(x, training=False).numpy()
    np.testing.assert_allclose(small(x, training=False).numpy(), want, atol=atol, rtol=1e-4)
    np.testing.assert_allclose(transferred(x, training=False).numpy(), want, atol=atol, rtol=1e-4)
    predicted = chipnet_tf.budget_report(dense, masks=masks).totals
    actual = chipnet_tf.budget_report(small).totals
    assert small.count_params() == predicted["params"]["kept"] == actual["params"]["dense"]
    assert chipnet_tf.count_flops(small) == predicted["flops"]["kept"] == actual["flops"]["dense"]
    assert small.count_params() < dense.count_params()
    classes = {type(layer).__module__.split(".")[0] for layer in small.layers}
    assert classes == {"tf_keras"}, classes
    assert not any(isinstance(layer, keras.Model) for layer in small.layers)
    return small


def _layer_norm_net():
    """ConvNeXt-style: LayerNormalization over channels, pointwise Dense, residual add."""
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same", name="stem")(x)
    h = L.LayerNormalization(epsilon=1e-6, name="ln0")(h)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    y = L.LayerNormalization(epsilon=1e-6, name="ln1")(y)
    y = L.Dense(16, activation="gelu", name="pw1")(y)
    h = L.Add()([h, L.Dense(8, name="pw2")(y)])
    h = L.LayerNormalization(name="ln_head")(L.GlobalAveragePooling2D()(h))
    model = keras.Model(x, L.Dense(3, name="head")(h))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.LayerNormalization):
            layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.parametrize(
    "factory",
    [toy_model, lambda: residual_cnn(8), _se_net, _layer_norm_net],
    ids=["toy", "residual_cnn", "se_separable_concat_flatten", "layer_norm_convnext_style"],
)
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_strip_equals_wrapped_model_under_hard_masks_with_exact_counts(factory, keep):
    keras.utils.set_random_seed(3)
    dense = factory()
    _randomise_bn(dense)
    masks = random_masks(chipnet_tf.analyze(dense, warn=False), keep, seed=int(keep * 10))
    x = np.random.default_rng(0).normal(size=(4, *dense.input_shape[1:])).astype("float32")
    small = _strip_and_check(dense, masks, x)
    assert oracle_flops(small) == chipnet_tf.count_flops(small)


def test_toy_model_hand_counts():
    """toy_model's docstring: kept (A, E) = (2, 1) gives params 54 and FLOPs 564."""
    dense = toy_model()
    masks = {"a": np.array([1, 0, 1, 0], bool), "e": np.array([0, 1], bool)}
    small = chipnet_tf.strip_pruning(dense, masks=masks)
    assert small.count_params() == 54
    assert chipnet_tf.count_flops(small) == oracle_flops(small) == 564
    assert small.get_layer("a").filters == 2 and small.get_layer("e").filters == 1
    np.testing.assert_array_equal(small.get_layer("a").kernel.numpy(), dense.get_layer("a").kernel.numpy()[..., [0, 2]])
    # the classifier reads [A | E]: rows 0, 2 of A and row 1 of E (index 5) are kept
    np.testing.assert_array_equal(
        small.get_layer("head").kernel.numpy(), dense.get_layer("head").kernel.numpy()[[0, 2, 5]]
    )


def test_default_masks_are_the_budget_aware_hard_masks(trained_cnn, digits):
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=0.3, budget_type="flops")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(0).normal(size=ctl.total).astype("float32"))
    masks = chipnet_tf.get_masks(pruned)
    small = chipnet_tf.strip_pruning(pruned)
    report = chipnet_tf.budget_report(pruned)  # hard masks of the model itself
    assert chipnet_tf.count_flops(small) == report.totals["flops"]["kept"]
    assert report.totals["flops"]["kept"] <= 0.3 * report.totals["flops"]["dense"]
    chipnet_tf.apply_masks(pruned, masks)
    x = digits[2][:16]
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_nested_model_is_flattened():
    inner_in = keras.Input((8, 8, 4))
    h = L.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, L.BatchNormalization(name="inner_bn")(h), name="inner")
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 1, name="outer_conv")(x)
    out = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(L.ReLU()(inner(h))))
    dense = keras.Model(x, out)
    _randomise_bn(inner)
    masks = random_masks(chipnet_tf.analyze(dense), 0.5, seed=4)
    small = _strip_and_check(dense, masks, np.ones((2, 8, 8, 3), "float32"))
    assert {layer.name for layer in small.layers} >= {"inner_conv", "inner_bn", "outer_conv"}


def test_masks_may_omit_groups_which_then_keep_every_channel():
    dense = toy_model()
    small = chipnet_tf.strip_pruning(dense, masks={"e": np.array([1, 0], bool)})
    assert small.get_layer("a").filters == 4 and small.get_layer("e").filters == 1


class Scale(L.Layer):
    """A custom per-channel layer: y = x * w."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="random_normal")

    def call(self, x):
        return x * self.w


def _scale_model():
    x = keras.Input((5, 5, 2))
    h = L.Conv2D(6, 3, padding="same", name="conv")(x)
    h = Scale(name="scale")(h)
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))


def _scale_surgery(ctx):
    return ctx.config, [chipnet_tf.registry.take(ctx.weights[0], ctx.out_keep, 0)]


def test_user_registered_surgery_for_a_custom_layer():
    dense = _scale_model()
    masks = {"conv": np.array([1, 0, 0, 1, 1, 0], bool)}
    # Unknown to the registry: the probe finds it channel-local and says how to pin that.
    pin = r"register_layer\(Scale, chipnet_tf.registry.channel_local_rule\(\)\)"
    with pytest.warns(UserWarning, match=r"layer 'scale' \(Scale\).*channel-local.*" + pin):
        assert [g.name for g in chipnet_tf.analyze(dense).groups] == ["conv"]
    with chipnet_tf.registry.registered(Scale, chipnet_tf.registry.LayerRule("passthrough")):
        with pytest.raises(ValueError, match="no surgery is registered"):
            chipnet_tf.strip_pruning(dense, masks=masks)
        chipnet_tf.register_surgery(Scale, _scale_surgery)  # adds surgery to the scoped rule
        with keras.utils.custom_object_scope({"Scale": Scale}):
            _, small = strip_under_masks(dense, masks, (2, 5, 5, 2))
        assert small.get_layer("scale").w.shape == (3,)
    # Leaving the scope restores the registry: Scale is opaque again.
    assert chipnet_tf.registry.lookup(Scale()).kind(None, 4) == "opaque"


def test_register_layer_in_one_call_prunes_and_strips_exactly():
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same", name="conv")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = Scale(name="scale")(L.ReLU()(h))
    h = L.Conv2D(4, 3, name="conv2")(h)
    dense = keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))
    rule = chipnet_tf.registry.LayerRule("passthrough", surgery=_scale_surgery)
    chipnet_tf.register_layer(Scale, rule)  # the one call: kind and surgery together
    try:
        with keras.utils.custom_object_scope({"Scale": Scale}):
            pruned = chipnet_tf.prune_low_budget(dense, 0.5, "flops")
            assert chipnet_tf.get_masks(pruned).keys() == {"conv", "conv2"}
            masks = {"conv": np.array([1, 0, 1, 1, 0, 0, 1, 0], bool), "conv2": np.array([0, 1, 1, 0], bool)}
            chipnet_tf.apply_masks(pruned, masks)
            small = chipnet_tf.strip_pruning(pruned, masks=masks)
        data = np.random.default_rng(1).normal(size=(3, 6, 6, 3)).astype("float32")
        np.testing.assert_allclose(small(data).numpy(), pruned(data).numpy(), atol=1e-5)
        assert small.get_layer("scale").w.shape == (4,)
        assert small.get_layer("conv2").kernel.shape == (3, 3, 4, 2)
    finally:
        assert chipnet_tf.registry.unregister_layer(Scale) is rule
    assert chipnet_tf.registry.unregister_layer(Scale) is None


# -- the paper's architectures ---------------------------------------------------------
TINY = {
    "wrn": lambda: architectures.wrn(depth=8, widen_factor=2),
    "preresnet": lambda: architectures.preresnet(depth=11),
    "resnet50_cifar": lambda: architectures.resnet50_cifar(width=0.125),
    "mobilenet_v2_cifar": lambda: architectures.mobilenet_v2_cifar(alpha=0.25),
}
FULL = {
    "wrn26_12": lambda: architectures.wrn(26, 12),
    "preresnet164": lambda: architectures.preresnet(164),
    "resnet50_cifar": lambda: architectures.resnet50_cifar(),
    "mobilenet_v2_cifar": lambda: architectures.mobilenet_v2_cifar(),
}


def _paper_arch_case(factory, keep, batch):
    keras.utils.set_random_seed(5)
    dense = factory()
    _randomise_bn(dense)
    analysis = chipnet_tf.analyze(dense, warn=False)
    rng = np.random.default_rng(6)
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, keep, "channels")
    x = np.random.default_rng(7).normal(size=(batch, 32, 32, 3)).astype("float32")
    _strip_and_check(dense, masks, x, atol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_paper_architectures_tiny_strip_exactly(name):
    _paper_arch_case(TINY[name], 0.3, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL))
def test_paper_architectures_full_size_strip_exactly(name):
    _paper_arch_case(FULL[name], 0.5, 2)


# -- serialisation and mixed precision ----------------------------------------------------
PLAIN_LOADER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tf_keras as keras
    path, ref_path = sys.argv[1], sys.argv[2]
    ref = np.load(ref_path)
    model = keras.models.load_model(path)
    out = {
        "diff": float(np.abs(model.predict(ref["x"], verbose=0) - ref["pred"]).max()),
        "chipnet_imported": "chipnet_tf" in sys.modules,
        "params": int(model.count_params()),
    }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel"])
def test_stripped_model_reloads_without_chipnet_tf(tmp_path, fmt, trained_cnn, digits):
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=0.4, budget_type="params")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(1).normal(size=ctl.total).astype("float32"))
    small = chipnet_tf.strip_pruning(pruned)
    x = digits[2][:16]
    np.savez(tmp_path / "ref.npz", x=x, pred=small.predict(x, verbose=0))
    path = tmp_path / ("small.keras" if fmt == "keras" else "small_savedmodel")
    small.save(path) if fmt == "keras" else small.save(path, save_format="tf")
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_LOADER, str(path), str(tmp_path / "ref.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["diff"] <= 1e-6 and not out["chipnet_imported"]
    assert out["params"] == small.count_params()


def test_mixed_float16_checkpoint_strips_to_float32(tmp_path, digits):
    x, y, x_test, _ = digits
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        pruned = chipnet_tf.prune_low_budget(residual_cnn(8), budget=0.4, budget_type="flops")
        pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy")
        pruned.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
        pruned.save(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")  # a CPU-only process with float32 default
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in loaded.layers)
    small = chipnet_tf.strip_pruning(loaded)
    assert {layer.dtype_policy.name for layer in small.layers} == {"float32"}
    assert all(w.dtype == tf.float32 for w in small.weights)
    chipnet_tf.apply_masks(loaded, chipnet_tf.get_masks(loaded))
    out, ref = small.predict(x_test[:32], verbose=0), loaded.predict(x_test[:32], verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=5e-3)  # the wrapped model computes in float16
    assert chipnet_tf.count_flops(small) == chipnet_tf.budget_report(loaded).totals["flops"]["kept"]


# -- bad input ---------------------------------------------------------------------------
def test_bad_input_gives_clear_errors():
    dense = toy_model()
    with pytest.raises(ValueError, match="has no masks of its own"):
        chipnet_tf.strip_pruning(dense)
    with pytest.raises(TypeError, match="masks must be a dict"):
        chipnet_tf.strip_pruning(dense, masks=[1, 0])
    with pytest.raises(ValueError, match=r"does not have: \['nope'\]"):
        chipnet_tf.strip_pruning(dense, masks={"nope": np.ones(3, bool)})
    with pytest.raises(ValueError, match="Mask of group 'a' has shape \\(3,\\)"):
        chipnet_tf.strip_pruning(dense, masks={"a": np.ones(3, bool)})
    with pytest.raises(ValueError, match="Mask of group 'a' must be boolean"):
        chipnet_tf.strip_pruning(dense, masks={"a": np.full(4, 0.5)})
    with pytest.raises(TypeError, match="Expected a tf_keras Model"):
        chipnet_tf.strip_pruning(L.Dense(3), masks={})


def test_single_layer_wrapper_inside_a_functional_model_is_rejected():
    x = keras.Input((4,))
    h = chipnet_tf.prune_low_budget(L.Dense(6), budget=0.5, budget_type="channels")(x)
    model = keras.Model(x, L.Dense(2)(h))
    with pytest.raises(ValueError, match="single-layer wrapper"):
        chipnet_tf.strip_pruning(model)


class ConvInside(L.Layer):
    """A custom layer holding a conv and a dense sublayer (like keras-cv's SqueezeAndExcite2D)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)
        self.dense = L.Dense(5)

    def call(self, x):
        return self.conv(x) + self.dense(x)[..., :1]


def test_flops_of_custom_layers_with_conv_sublayers_are_counted():
    x = keras.Input((4, 4, 3))
    h = ConvInside(name="inside")(L.Conv2D(8, 3, padding="same", name="c")(x))
    model = keras.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    # c: 16*(27*8 + 8) = 3584; inside.conv: 16*(8*8 + 8) = 1152; inside.dense: 16*(8*5 + 5) = 720;
    # head: 8*2 + 2 = 18.
    assert chipnet_tf.count_flops(model) == oracle_flops(model) == 3584 + 1152 + 720 + 18
    assert chipnet_tf.budget_report(model).totals["flops"]["dense"] == 5474


# -- fully pruned groups -----------------------------------------------------------------
@pytest.mark.parametrize(
    "factory,victim,offset",
    [
        # post-activation bottleneck: conv3 reads nothing -> BN3 turns its zeros into a constant
        (lambda: architectures.resnet50_cifar(width=0.125), "stage1_block2_conv2", True),
        # pre-activation bottleneck: conv3 outputs exact zeros, the add input simply goes
        (lambda: architectures.preresnet(11), "stage2_block1_conv2", False),
    ],
    ids=["resnet50_cifar", "preresnet"],
)
def test_fully_pruned_residual_branch_is_removed_cleanly(factory, victim, offset):
    keras.utils.set_random_seed(8)
    dense = factory()
    _randomise_bn(dense)
    analysis = chipnet_tf.analyze(dense)
    masks = random_masks(analysis, 0.5, seed=9)
    masks[victim][:] = False
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(small(x).numpy(), pruned(x, training=False).numpy(), atol=1e-4, rtol=1e-4)
    block = victim.rsplit("_", 1)[0]
    names = {layer.name for layer in small.layers}
    assert not {n for n in names if n.startswith(block + "_conv")}, names  # the whole branch is gone
    assert (f"{block}_add_offset" in names) == offset  # BN's constant output becomes an offset
    assert f"{block}_add" not in names  # one input left: no Add
    for report in (chipnet_tf.budget_report(dense, masks=masks), chipnet_tf.budget_report(pruned, masks=masks)):
        assert small.count_params() == report.totals["params"]["kept"]
        assert chipnet_tf.count_flops(small) == report.totals["flops"]["kept"] == oracle_flops(small)
    assert chipnet_tf.strip_pruning(dense, masks=masks).count_params() == small.count_params()


def test_fully_pruned_group_that_cannot_be_removed_exactly_is_an_error():
    x = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(x)
    b = L.Conv2D(4, 1, name="b")(a)  # reads only group a
    c = L.Conv2D(4, 1, name="c")(x)
    h = L.Concatenate(name="cat")([b, c])
    dense = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    with pytest.raises(ValueError, match="Layer 'cat' \\(Concatenate\\) would be left reading only removed"):
        chipnet_tf.strip_pruning(dense, masks={"a": np.zeros(4, bool)})
    # Empty concatenation inputs are simply dropped.
    small = chipnet_tf.strip_pruning(dense, masks={"b": np.zeros(4, bool)})
    assert "b" not in {layer.name for layer in small.layers} and small.get_layer("head").kernel.shape == (4, 2)
    assert (
        chipnet_tf.budget_report(
            dense, masks={"a": np.ones(4, bool), "b": np.zeros(4, bool), "c": np.ones(4, bool)}
        ).totals["params"]["kept"]
        == small.count_params()
    )
