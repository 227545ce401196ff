"""strip_pruning on a zoo of real architectures: exact outputs, exact counts, plain Keras, TFLite.

For every model and channel budget, random budget-aware masks (``select_masks`` on random
scores) are fixed on the wrapped model; the stripped model must then

1. compute what the wrapped model computes under those hard masks (BatchNorm statistics are
   randomised so that a misplaced channel shows up in the outputs);
2. have exactly the params/FLOPs ``budget_report`` predicted from the masks, counted by
   ``count_params``, ``count_flops`` and (independently) the ops of the traced graph;
3. be a flat model of tf_keras layers (no chipnet_tf layers, no nested models; a custom layer
   of the dense model that the analysis treats as opaque is kept as it is, one made of Keras
   layers, like keras-cv's SqueezeAndExcite2D, becomes those layers) that converts to TFLite
   and computes the same there.

The mask-transfer path ``strip_pruning(dense, masks=...)`` must build the same model as the
wrapped path ``strip_pruning(pruned, masks=...)``.

Logits are compared (classifier_activation=None) so that the tolerance is meaningful.
"""

import numpy as np
import pytest

import chipnet_tf
from benchmarks.strip import zoo_reach
from chipnet_tf import export
from chipnet_tf.compat import keras, tf
from tests.flops_oracle import oracle_flops

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:chipnet_tf. layer .* has no registered rule:UserWarning"),
]

L = keras.layers
APPS = keras.applications
BUDGETS = (0.5, 0.1)
TFLITE_BUDGET = 0.1  # one conversion per model: it is the slow part
CLASSES = 10
ATOL = 1e-4


def _keras_cv_mobilenet_v3_small(input_shape):
    """keras-cv's MobileNetV3Backbone (the mobilenet_v3_small stack) + GAP + Dense head.

    The backbone is a nested functional model; chipnet_tf flattens it.
    """
    import keras_cv  # after chipnet_tf: TF_USE_LEGACY_KERAS=1 makes keras-cv build tf_keras layers

    hs = "hard_swish"
    backbone = keras_cv.models.MobileNetV3Backbone(
        stackwise_expansion=[1, 72.0 / 16, 88.0 / 24, 4, 6, 6, 3, 3, 6, 6, 6],
        stackwise_filters=[16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96],
        stackwise_kernel_size=[3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
        stackwise_stride=[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
        stackwise_se_ratio=[0.25, None, None, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25],
        stackwise_activation=["relu", "relu", "relu"] + [hs] * 8,
        include_rescaling=True,
        input_shape=input_shape,
    )
    x = keras.Input(input_shape)
    h = L.GlobalAveragePooling2D(name="gap")(backbone(x))
    return keras.Model(x, L.Dense(CLASSES, name="head")(h), name="keras_cv_mobilenet_v3_small")


def _app(factory, **kwargs):
    def build(input_shape):
        return factory(input_shape=input_shape, weights=None, classes=CLASSES, classifier_activation=None, **kwargs)

    return build


# name -> (builder(input_shape), input_shape)
ZOO = {
    "ResNet50": (_app(APPS.ResNet50), (64, 64, 3)),
    "ResNet50V2": (_app(APPS.ResNet50V2), (64, 64, 3)),
    "MobileNetV2": (_app(APPS.MobileNetV2), (64, 64, 3)),
    "MobileNetV3Small": (_app(APPS.MobileNetV3Small), (64, 64, 3)),
    "DenseNet121": (_app(APPS.DenseNet121), (64, 64, 3)),
    "EfficientNetB0": (_app(APPS.EfficientNetB0), (64, 64, 3)),
    "InceptionV3": (_app(APPS.InceptionV3), (75, 75, 3)),
    "keras_cv.MobileNetV3Backbone": (_keras_cv_mobilenet_v3_small, (64, 64, 3)),
    # Grouped convs (RegNet), SE blocks around them (RegNetY), Conv2D(groups=C)
    # depthwise convs and a probed custom LayerScale (ConvNeXt).
    "RegNetX002": (_app(APPS.RegNetX002), (64, 64, 3)),
    "RegNetY002": (_app(APPS.RegNetY002), (64, 64, 3)),
    "ConvNeXtTiny": (_app(APPS.ConvNeXtTiny), (64, 64, 3)),
}
CASES = [pytest.param(name, budget, id=f"{name}-{budget}") for name in ZOO for budget in BUDGETS]


def _randomise_bn(model, seed):
    """Random gamma/beta/moving stats for every BatchNormalization, nested models included."""
    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


def _random_masks(analysis, budget, seed):
    """The largest network within a channel budget, ranking channels by random scores."""
    rng = np.random.default_rng(seed)
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    return chipnet_tf.select_masks(analysis.spec, scores, budget, "channels")


class _Zoo:
    """Builds each dense/wrapped model once and each (model, budget) case once."""

    def __init__(self):
        self._models = {}
        self._cases = {}

    def model(self, name):
        if name not in self._models:
            builder, shape = ZOO[name]
            keras.utils.set_random_seed(0)
            dense = builder(shape)
            _randomise_bn(dense, seed=1)
            analysis = chipnet_tf.analyze(dense, warn=False)
            pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="channels")
            x = np.random.default_rng(2).uniform(0, 255, size=(2, *shape)).astype("float32")
            self._models[name] = (dense, analysis, pruned, x)
        return self._models[name]

    def case(self, name, budget):
        key = (name, budget)
        if key not in self._cases:
            dense, analysis, pruned, x = self.model(name)
            masks = _random_masks(analysis, budget, seed=int(budget * 100))
            chipnet_tf.apply_masks(pruned, masks)
            wrapped_out = pruned(x, training=False).numpy()
            small = chipnet_tf.strip_pruning(pruned, masks=masks)
            report = chipnet_tf.budget_report(dense, masks=masks)
            self._cases[key] = dict(masks=masks, wrapped_out=wrapped_out, small=small, report=report)
        return self._cases[key]


@pytest.fixture(scope="module")
def zoo():
    return _Zoo()


@pytest.mark.parametrize("name,budget", CASES)
def test_stripped_model_equals_wrapped_model_under_hard_masks(zoo, name, budget):
    dense, _, _, x = zoo.model(name)
    case = zoo.case(name, budget)
    masks = case["masks"]
    # Within budget, or (architectures whose opaque layers fix most channels, e.g. the
    # TFOpLambda hard-sigmoids of MobileNetV3) select_masks' minimal one-channel-per-group network.
    minimal = all(int(m.sum()) == 1 for m in masks.values())
    assert case["report"].totals["channels"]["fraction"] <= budget or minimal
    out = case["small"](x, training=False).numpy()
    assert out.shape == case["wrapped_out"].shape == (len(x), CLASSES)
    # The masks really change the network: the hard-masked output differs from the dense one.
    assert np.abs(dense(x, training=False).numpy() - case["wrapped_out"]).max() > 1e-3
    np.testing.assert_allclose(out, case["wrapped_out"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name,budget", CASES)
def test_stripped_model_has_the_predicted_params_and_flops(zoo, name, budget):
    dense = zoo.model(name)[0]
    case = zoo.case(name, budget)
    small, totals = case["small"], case["report"].totals
    assert small.count_params() == totals["params"]["kept"]
    assert small.count_params() < dense.count_params() == totals["params"]["dense"]
    assert chipnet_tf.count_flops(small) == totals["flops"]["kept"]
    assert oracle_flops(small) == totals["flops"]["kept"]


def _all_layers(model):
    return [m for m in model.submodules if isinstance(m, L.Layer)]


@pytest.mark.parametrize("name,budget", CASES)
def test_stripped_model_is_a_flat_plain_keras_model(zoo, name, budget):
    dense = zoo.model(name)[0]
    small = zoo.case(name, budget)["small"]
    assert not [m.name for m in small.submodules if isinstance(m, keras.Model)]
    assert not [type(m).__name__ for m in _all_layers(small) if type(m).__module__.startswith("chipnet_tf")]
    # Every layer is a tf_keras layer, or one of the dense model's own (opaque) custom layers.
    custom = {type(layer) for layer in _all_layers(dense)}
    foreign = [
        type(layer).__name__
        for layer in small.layers
        if not type(layer).__module__.startswith("tf_keras.") and type(layer) not in custom
    ]
    assert not foreign


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("name", list(ZOO))
def test_stripped_model_converts_to_tflite(zoo, name):
    x = zoo.model(name)[3]
    small = zoo.case(name, TFLITE_BUDGET)["small"]
    tflite = export.to_tflite(small)
    assert isinstance(tflite, bytes) and len(tflite) > 0
    interpreter = tf.lite.Interpreter(model_content=tflite)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    expected = small(x, training=False).numpy()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["MobileNetV2", "keras_cv.MobileNetV3Backbone"])
def test_mask_transfer_path_equals_wrapped_path(zoo, name):
    dense, _, _, x = zoo.model(name)
    case = zoo.case(name, 0.5)
    transferred = chipnet_tf.strip_pruning(dense, masks=case["masks"])
    assert [layer.name for layer in transferred.layers] == [layer.name for layer in case["small"].layers]
    assert transferred.count_params() == case["small"].count_params()
    out = transferred(x, training=False).numpy()
    np.testing.assert_allclose(out, case["small"](x, training=False).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out, case["wrapped_out"], rtol=0, atol=ATOL)


# -- how much of each model the analysis reaches (the table of python -m benchmarks.strip.zoo_reach) --
@pytest.mark.parametrize("name", zoo_reach.MODELS + (zoo_reach.KERAS_CV,))
def test_smallest_reachable_flops_fraction_is_at_most_a_tenth(name):
    keras.backend.clear_session()
    fraction, analysis = zoo_reach.smallest_flops_fraction(zoo_reach.build(name))
    assert fraction <= 0.10, f"{name}: {fraction:.3f}; stopped at {analysis.stopped}"
