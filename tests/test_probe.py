"""chipnet_tf.registry.probe: custom layers with no rule are probed; the probe is safe; strip checks it."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from chipnet_tf.registry import behaviour, inherited, probe
from tests.models import strip_under_masks
from tests.random_graphs import HardSwish, LayerScale

L = keras.layers
_QUIET = pytest.mark.filterwarnings("ignore:chipnet_tf. layer .* has no registered rule:UserWarning")


class RareMix(L.Layer):
    """Channel-local on most inputs; mixes channels where any channel is below -3 (rare for
    unit-scale inputs, certain for the probe's x100 and all-negative inputs)."""

    def call(self, x):
        return x + tf.nn.relu(-tf.reduce_min(x, axis=-1, keepdims=True) - 3.0)


class WidthScale(L.Layer):
    """Channel-local for a fixed width, but scales by the channel count: stripping changes
    what it computes, which no probe of the dense layer can see."""

    def call(self, x):
        return x * tf.cast(tf.shape(x)[-1], x.dtype) / 4.0


class IdentityMixer(L.Layer):
    """A 1x1 channel mixer whose kernel starts at the identity (local until trained)."""

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(c, c), initializer="identity")

    def call(self, x):
        return tf.tensordot(x, self.kernel, axes=[[-1], [0]])


def _model(make_layers, channels=6):
    x = keras.Input((5, 5, 3))
    h = L.Conv2D(channels, 3, padding="same", name="conv")(x)
    for i, make in enumerate(make_layers):
        h = make(f"custom{i}", channels)(h)
    h = L.Conv2D(4, 1, name="conv2")(h)
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))


@pytest.fixture(autouse=True)
def _fresh_cache():
    probe._CACHE.clear()
    yield
    probe._CACHE.clear()


def test_channel_local_custom_layers_are_inferred_with_a_warning_naming_the_pin_line():
    model = _model([lambda n, c: HardSwish(name=n), lambda n, c: LayerScale(c, name=n)])
    with pytest.warns(UserWarning) as record:
        analysis = chipnet_tf.analyze(model)
    messages = [str(w.message) for w in record]
    assert any(
        "layer 'custom1' (LayerScale)" in m
        and "register_layer(LayerScale, chipnet_tf.registry.channel_local_rule())" in m
        for m in messages
    )
    assert analysis.inferred == {"custom0": "HardSwish", "custom1": "LayerScale"}
    assert [g.name for g in analysis.groups] == ["conv", "conv2"]
    # LayerScale's per-channel weight is counted per kept channel.
    masks = {"conv": np.array([1, 0, 1, 1, 0, 0], bool), "conv2": np.ones(4, bool)}
    _, small = strip_under_masks(model, masks, (2, 5, 5, 3))
    assert small.get_layer("custom1").gamma.shape == (3,)
    assert small.count_params() == chipnet_tf.budget_report(model, masks=masks).totals["params"]["kept"]


@_QUIET
@pytest.mark.parametrize("layer_class", [RareMix, IdentityMixer])
def test_layer_that_mixes_on_some_inputs_or_weights_stays_opaque(layer_class):
    model = _model([lambda n, c: layer_class(name=n)])
    with pytest.warns(UserWarning, match="not pruned: \\['custom0'\\]"):
        analysis = chipnet_tf.analyze(model)
    assert analysis.inferred == {}
    assert [g.name for g in analysis.groups] == ["conv2"]
    # The premise: on unit-scale inputs RareMix is channel-local, which a naive probe would accept.
    if layer_class is RareMix:
        x = np.random.default_rng(0).uniform(-1, 1, size=(8, 5, 5, 6)).astype("float32")
        layer = RareMix()
        bumped = x.copy()
        bumped[..., 2] += 0.5
        moved = np.abs(layer(bumped).numpy() - layer(x).numpy()).max(axis=(0, 1, 2))
        assert np.flatnonzero(moved > 0).tolist() == [2]


@_QUIET
def test_strip_refuses_an_inferred_layer_whose_stripped_copy_differs():
    model = _model([lambda n, c: WidthScale(name=n)])
    assert chipnet_tf.analyze(model).inferred == {"custom0": "WidthScale"}  # the probe cannot tell
    masks = {"conv": np.array([1, 0, 1, 1, 0, 0], bool)}
    with pytest.raises(ValueError, match="layer 'custom0' \\(WidthScale\\) was inferred channel-local by a probe"):
        chipnet_tf.strip_pruning(model, masks=masks)


@_QUIET
def test_probe_runs_once_per_layer_configuration(monkeypatch):
    calls = []
    real = probe._probe
    monkeypatch.setattr(probe, "_probe", lambda layer, shape: calls.append(type(layer).__name__) or real(layer, shape))
    # Three LayerScales of one configuration (names differ), one HardSwish.
    model = _model([lambda n, c: LayerScale(c, name=n)] * 3 + [lambda n, c: HardSwish(name=n)])
    pruned = chipnet_tf.prune_low_budget(model, 0.5)
    masks = chipnet_tf.get_masks(pruned)
    chipnet_tf.strip_pruning(pruned, masks=masks)
    chipnet_tf.budget_report(model, masks=masks)
    assert sorted(calls) == ["HardSwish", "LayerScale"]


class TinySE(L.Layer):
    """A custom squeeze-and-excite made of Keras layers (as keras-cv's SqueezeAndExcite2D)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.pool = L.GlobalAveragePooling2D(keepdims=True)
        self.squeeze = L.Conv2D(2, 1, activation="relu", name="squeeze")
        self.excite = L.Conv2D(filters, 1, activation=L.Activation("sigmoid"), name="excite")  # a layer object

    def call(self, x):
        return x * self.excite(self.squeeze(self.pool(x)))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def test_custom_layer_made_of_keras_layers_is_walked_into_and_strips_to_plain_layers():
    model = _model([lambda n, c: TinySE(c, name=n)])
    analysis = chipnet_tf.analyze(model)
    assert analysis.stopped == [] and {"conv", "squeeze", "conv2"} <= {g.name for g in analysis.groups}
    masks = {"conv": np.array([1, 0, 1, 1, 0, 0], bool), "squeeze": np.array([0, 1], bool), "conv2": np.ones(4, bool)}
    pruned = chipnet_tf.prune_low_budget(model, 0.5)
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(small(x).numpy(), pruned(x).numpy(), atol=1e-5)
    assert not [type(layer).__name__ for layer in small.layers if isinstance(layer, TinySE)]
    assert small.get_layer("excite").kernel.shape == (1, 1, 1, 3)
    assert small.count_params() == chipnet_tf.budget_report(model, masks=masks).totals["params"]["kept"]


# -- function layers: Activation of any function, Lambda, TF-op calls -------------------
@keras.utils.register_keras_serializable(package="chipnet_probe_tests")
def probe_hard_swish(x):
    """A hard-swish registered by name, as model zoos do (not one of Keras' activations)."""
    return x * tf.nn.relu6(x + 3.0) / 6.0


@keras.utils.register_keras_serializable(package="chipnet_probe_tests")
def probe_hard_sigmoid(x):
    return tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0)


def _function_model(make, channels=6):
    x = keras.Input((5, 5, 3))
    h = L.Conv2D(channels, 3, padding="same", name="conv")(x)
    h = make(h)
    h = L.Conv2D(4, 1, name="conv2")(h)
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))


def _kind_of(analysis, name):
    return dict(zip([n.name for n in analysis.graph.nodes], analysis.kinds))[name]


@_QUIET
@pytest.mark.parametrize(
    ("activation", "kind"),
    [
        ("chipnet_probe_tests>probe_hard_swish", "passthrough"),
        ("chipnet_probe_tests>probe_hard_sigmoid", "channelwise"),
    ],
)
def test_activation_of_a_registered_function_is_probed_and_strips_exactly(activation, kind):
    model = _function_model(lambda h: L.Activation(activation, name="act")(h))
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == [] and _kind_of(analysis, "act") == kind
    fn_name = activation.split(">")[1]
    assert analysis.inferred == {"act": f"Activation({fn_name})"}
    masks = {"conv": np.array([1, 0, 1, 1, 0, 0], bool), "conv2": np.array([1, 1, 0, 1], bool)}
    _, small = strip_under_masks(model, masks, (2, 5, 5, 3))
    report = chipnet_tf.budget_report(model, masks=masks).totals
    assert small.get_layer("conv").filters == 3
    assert (small.count_params(), chipnet_tf.count_flops(small)) == (
        report["params"]["kept"],
        report["flops"]["kept"],
    )


class LargeInputMix(L.Layer):
    """Channel-local on inputs of at most 4x4 positions (the probe's cut-down shape); adds
    the mean over channels on larger inputs."""

    def call(self, x):
        if x.shape[1] > 4:
            return x + tf.reduce_mean(x, axis=-1, keepdims=True)
        return x * 2.0


@_QUIET
@pytest.mark.parametrize("as_lambda", [False, True])
def test_layer_that_mixes_channels_only_on_large_inputs_stays_opaque(as_lambda):
    layer = L.Lambda(LargeInputMix().call, name="custom0") if as_lambda else LargeInputMix(name="custom0")
    model = _function_model(layer)
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == ["custom0"] and analysis.inferred == {}
    assert [g.name for g in analysis.groups] == ["conv2"]
    fnode = next(n for n in analysis.graph.nodes if n.name == "custom0")
    assert probe.explain(fnode) == behaviour.MIXES_AT_SCALE


@_QUIET
@pytest.mark.parametrize(
    ("fn", "reason"),
    [
        (lambda h: h * np.linspace(0.5, 1.5, 6).astype("float32"), behaviour.NOT_ON_SUBSETS),  # a closed-over vector
        (lambda h: tf.sqrt(tf.reduce_mean(h * h, axis=[1, 2], keepdims=True)), behaviour.NOT_FINITE_AT_ZERO),
        (lambda h: h + tf.reduce_max(h, axis=-1, keepdims=True), behaviour.MIXES),
        (lambda h: tf.where(h > 50.0, tf.reduce_mean(h, axis=-1, keepdims=True), h), behaviour.MIXES),  # large values
    ],
    ids=["per-channel-constant", "sqrt-gradient", "channel-max", "mixes-above-50"],
)
def test_lambda_that_is_not_channel_local_on_every_subset_stays_opaque_with_its_reason(fn, reason):
    model = _function_model(lambda h: L.Lambda(fn, name="fn")(h))
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == ["fn"] and analysis.inferred == {}
    fnode = next(n for n in analysis.graph.nodes if n.name == "fn")
    assert probe.explain(fnode) == reason


@_QUIET
def test_channel_local_lambda_and_spatial_tf_op_are_probed_and_strip_exactly():
    def block(h):
        h = L.Lambda(lambda t: t * tf.nn.sigmoid(t), name="swish_lambda")(h)
        small = L.AveragePooling2D(2, name="pool")(L.ZeroPadding2D(((0, 1), (0, 1)))(h))
        up = tf.image.resize(small, tf.shape(h)[1:-1], method="bilinear")  # size read from the input's shape
        return L.Multiply(name="attend")([h, tf.nn.sigmoid(up)])

    model = _function_model(block)
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == []
    assert sorted(analysis.inferred.values()) == ["Lambda", "TFOpLambda(image.resize)"]
    assert [g.name for g in analysis.groups] == ["conv", "conv2"]
    masks = {"conv": np.array([0, 1, 1, 0, 0, 1], bool), "conv2": np.array([1, 0, 0, 1], bool)}
    _, small = strip_under_masks(model, masks, (2, 5, 5, 3))
    assert small.get_layer("conv").filters == 3
    assert chipnet_tf.count_flops(small) == chipnet_tf.budget_report(model, masks=masks).totals["flops"]["kept"]


# -- subclasses of Keras layers inherit their base class's rule only when it holds ------
class StandardizedConv(L.Conv2D):
    """A weight-standardized conv (as NFNets'): its kernel is normalized over its input
    channels, so removing input channels changes every output."""

    def convolution_op(self, inputs, kernel):
        mean, var = tf.nn.moments(kernel, axes=[0, 1, 2], keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) * tf.math.rsqrt(var + 1e-5))


class ScaledConv(L.Conv2D):
    """A conv with an extra per-filter gain the Conv2D rule neither slices nor counts."""

    def build(self, input_shape):
        super().build(input_shape)
        self.gain = self.add_weight(name="gain", shape=(self.filters,), initializer="ones")

    def call(self, x):
        return super().call(x) * self.gain


class NamedConv(L.Conv2D):
    """A Conv2D under another name: computes what Conv2D does."""


@pytest.mark.parametrize(
    ("conv_class", "reason"),
    [(StandardizedConv, inherited.STRIPS_DIFFERENTLY), (ScaledConv, inherited.EXTRA_WEIGHTS), (NamedConv, None)],
)
def test_subclass_of_a_keras_layer_keeps_its_rule_only_when_the_rule_holds(conv_class, reason):
    x = keras.Input((5, 5, 3))
    h = L.Conv2D(6, 3, padding="same", name="conv")(x)
    h = conv_class(4, 3, padding="same", name="sub")(L.ReLU()(h))
    model = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    analysis = chipnet_tf.analyze(model, warn=False)
    fnode = next(n for n in analysis.graph.nodes if n.name == "sub")
    assert inherited.reason(fnode, chipnet_tf.registry.lookup(fnode.layer)) == reason
    if reason is None:
        assert [g.name for g in analysis.groups] == ["conv", "sub"]
        masks = {"conv": np.array([1, 0, 1, 1, 0, 0], bool), "sub": np.array([0, 1, 1, 0], bool)}
        _, small = strip_under_masks(model, masks, (2, 5, 5, 3))
        assert small.count_params() == chipnet_tf.budget_report(model, masks=masks).totals["params"]["kept"]
    else:  # opaque: its input and output channels are not pruned, and it is named with the reason
        assert analysis.stopped == ["sub"] and analysis.groups == []
        assert probe.explain(fnode) == reason
