"""Keras 3 models (TensorFlow backend) analysed and counted like their tf_keras twins.

Every architecture is built twice in one process with the same layer names: with tf_keras
(chipnet_tf.compat.keras) and with Keras 3 (``import keras``). The groups, the CostSpec and
count_flops must agree; pruning a Keras 3 model must still be refused with a clear message.
"""

import warnings

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras as tf_keras
from tests.twins import ARCHITECTURES, ops_between_layers, residual

BUDGET_TYPES = ("params", "flops", "channels", "volume")


@pytest.fixture(scope="module")
def keras3():
    import keras

    assert keras.__version__.startswith("3.")
    return keras


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_keras3_analysis_equals_tf_keras(arch, keras3):
    build = ARCHITECTURES[arch]
    old_model, new_model = build(tf_keras), build(keras3, keras3.ops)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may stop a group in either
        old, new = chipnet_tf.analyze(old_model), chipnet_tf.analyze(new_model)
    assert [(g.name, g.size) for g in new.groups] == [(g.name, g.size) for g in old.groups]
    assert old.groups  # something is prunable
    assert [g.writers for g in new.groups] == [g.writers for g in old.groups]
    assert sorted(new.gate_origin.values()) == sorted(old.gate_origin.values())
    for t in BUDGET_TYPES:
        assert new.spec.dense(t) == old.spec.dense(t), t
    assert new.spec.dense("params") == new_model.count_params() == old_model.count_params()
    assert chipnet_tf.count_flops(new_model) == chipnet_tf.count_flops(old_model) > 0
    rng = np.random.default_rng(0)
    kept = np.array([rng.integers(1, g.size + 1) for g in old.groups], dtype=np.float64)
    for t in BUDGET_TYPES:
        assert new.spec.fraction(kept, t) == pytest.approx(old.spec.fraction(kept, t), rel=1e-12), t


def test_ops_model_maps_keras_ops_to_the_layer_kinds(keras3):
    analysis = chipnet_tf.analyze(ops_between_layers(keras3, keras3.ops))
    kinds = {type(n.layer).__name__: k for n, k in zip(analysis.graph.nodes, analysis.kinds)}
    assert kinds["Add"] == "merge" and kinds["Multiply"] == "merge"
    assert kinds["Relu"] == "passthrough" and kinds["Concatenate"] == "concat"


def test_constant_arithmetic_ops_keep_or_stop_zero_channels(keras3):
    L = keras3.layers
    x = keras3.Input((6, 6, 2))
    a = L.Conv2D(4, 3, name="conv")(x)
    y = L.Conv2D(3, 1, name="head")((a * 2.0) + 1.0)
    analysis = chipnet_tf.analyze(keras3.Model(x, y))
    kinds = {type(n.layer).__name__: k for n, k in zip(analysis.graph.nodes, analysis.kinds)}
    assert kinds["Multiply"] == "passthrough" and kinds["Add"] == "channelwise"
    assert [(g.name, g.size) for g in analysis.groups] == [("conv", 4)]


def test_unknown_keras3_op_stops_its_group_with_the_warning(keras3):
    L = keras3.layers
    x = keras3.Input((8, 8, 3))
    a = L.Conv2D(6, 3, name="conv")(x)
    b = keras3.ops.cumsum(a, axis=-1)  # mixes channels: no rule
    c = L.Conv2D(4, 3, name="conv2")(b)
    model = keras3.Model(x, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(c)))
    with pytest.warns(UserWarning, match="cannot be seen through.*cumsum"):
        analysis = chipnet_tf.analyze(model)
    assert "conv" not in analysis.group_names and "conv2" in analysis.group_names
    assert chipnet_tf.count_flops(model) == chipnet_tf.count_flops(_cumsum_twin()) > 0


def _cumsum_twin():
    L = tf_keras.layers
    x = tf_keras.Input((8, 8, 3))
    c = L.Conv2D(4, 3, name="conv2")(L.Conv2D(6, 3, name="conv")(x))
    return tf_keras.Model(x, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(c)))


def test_nested_keras3_model_is_walked_into(keras3):
    L = keras3.layers
    inner_in = keras3.Input((8, 8, 4))
    inner = keras3.Model(inner_in, L.BatchNormalization(name="inner_bn")(inner_in), name="inner")
    x = keras3.Input((8, 8, 3))
    y = L.Conv2D(2, 1, name="head")(inner(L.Conv2D(4, 3, padding="same", name="conv")(x)))
    analysis = chipnet_tf.analyze(keras3.Model(x, y))
    assert [n.name for n in analysis.graph.nodes] == ["conv", "inner_bn", "head"]
    assert [(g.name, g.size) for g in analysis.groups] == [("conv", 4)]


def test_what_still_needs_tf_keras_is_refused_with_what_works(keras3):
    """tfmot quantization and the single-layer wrapper need tf_keras: one-line TypeErrors that
    say what to do; the tf_keras graph walk's message lists what works on Keras 3 (latency
    profiling and the command line among it) and what does not."""
    model = residual(keras3)
    with pytest.raises(TypeError) as info:
        chipnet_tf.export.quantize_model(model)
    text = str(info.value)
    assert text.startswith("tfmot quantizes tf_keras models only") and "\n" not in text
    assert "to_tflite(model, quantization='int8'" in text
    with pytest.raises(TypeError, match=r"wraps single layers of tf_keras models only.*'conv1'"):
        chipnet_tf.prune_low_budget(model.get_layer("conv1"), 0.5, "flops")
    with pytest.raises(TypeError) as info:
        chipnet_tf.analysis.check_model(model)
    text = str(info.value)
    assert "\n" not in text and "keras.src.models.functional.Functional" in text
    works, needs = text.split(" but ", 1)
    assert "profiles the latency" in works and "command line" in works
    assert "tfmot quantization" in needs and "single-layer wrapper" in needs and "import tf_keras as keras" in needs


def test_unbuilt_and_subclassed_keras3_models_are_explained(keras3):
    with pytest.raises(chipnet_tf.analysis.UnsupportedModelError, match="not built"):
        chipnet_tf.analyze(keras3.Sequential([keras3.layers.Dense(2)]))

    class Net(keras3.Model):
        def call(self, x):
            return x

    with pytest.raises(chipnet_tf.analysis.UnsupportedModelError, match="subclassed"):
        chipnet_tf.count_flops(Net())


def test_importing_chipnet_tf_does_not_import_keras3():
    import subprocess
    import sys

    code = "import sys, chipnet_tf; print('keras' in sys.modules, chipnet_tf.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False", out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "EfficientNetB0"])
def test_keras3_applications_equal_tf_keras(name, keras3):
    """keras.applications of both Kerases (weights=None): the same groups and costs."""
    old_model = getattr(tf_keras.applications, name)(weights=None)
    new_model = getattr(keras3.applications, name)(weights=None)
    old, new = chipnet_tf.analyze(old_model, warn=False), chipnet_tf.analyze(new_model, warn=False)
    assert [(g.name, g.size) for g in new.groups] == [(g.name, g.size) for g in old.groups]
    assert new.stopped == old.stopped == []
    for t in BUDGET_TYPES:
        assert new.spec.dense(t) == old.spec.dense(t), t
    assert new.spec.dense("params") == new_model.count_params()
    assert chipnet_tf.count_flops(new_model) == chipnet_tf.count_flops(old_model)
