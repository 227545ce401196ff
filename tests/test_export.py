"""chipnet_tf.export: TFLite in every precision, verified in the LiteRT interpreter."""

import logging
import os

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import export
from chipnet_tf.compat import keras


@pytest.fixture(scope="module")
def small(trained_cnn):
    """The trained digits CNN stripped to half of its channels."""
    analysis = chipnet_tf.analyze(trained_cnn)
    rng = np.random.default_rng(0)
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, 0.5, "channels")
    model = chipnet_tf.strip_pruning(trained_cnn, masks=masks)
    return model


# (quantization, io_type, max |diff| bound or None, minimum top-1 agreement), the stated
# tolerances per mode on 300 digits test images (softmax outputs).
MODES = [
    (None, "float32", 1e-4, 1.0),
    ("float16", "float32", 1e-2, 0.99),
    ("dynamic", "float32", 5e-2, 0.95),
    ("int8", "float32", None, 0.95),
    ("int8", "int8", None, 0.95),
]


@pytest.mark.parametrize("quantization,io_type,max_diff,agreement", MODES)
def test_every_quantization_runs_in_litert_within_tolerance(
    tmp_path, small, digits, quantization, io_type, max_diff, agreement
):
    x_train, _, x_test, _ = digits
    path = tmp_path / "model.tflite"
    data = export.to_tflite(
        small,
        path,
        quantization=quantization,
        representative_dataset=x_train[:200] if quantization == "int8" else None,
        io_type=io_type,
    )
    assert path.read_bytes() == data and os.listdir(tmp_path) == ["model.tflite"]
    interp = export.interpreter(str(path))
    want = {"float32": np.float32, "int8": np.int8}[io_type]
    assert interp.get_input_details()[0]["dtype"] == want
    report = export.verify_tflite(str(path), small, x_test[:300])
    assert report.samples == 300
    assert report.top1_agreement >= agreement, report
    if max_diff is not None:
        assert report.max_abs_diff <= max_diff, report


def test_quantized_files_are_smaller(small, digits):
    sizes = {
        q: len(export.to_tflite(small, quantization=q, representative_dataset=digits[0][:50]))
        for q in (None, "float16", "dynamic", "int8")
    }
    assert sizes["float16"] < sizes[None] and sizes["dynamic"] < sizes["float16"]
    assert sizes["int8"] < sizes["float16"]


def test_wrapped_model_is_stripped_first_with_a_log_line(trained_cnn, digits, caplog):
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=0.5, budget_type="flops")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(3).normal(size=ctl.total).astype("float32"))
    with caplog.at_level(logging.WARNING, logger="chipnet_tf"):
        data = export.to_tflite(pruned, verify_samples=digits[2][:50])
    assert "stripping it with its hard masks first" in caplog.text
    small = chipnet_tf.strip_pruning(pruned)
    report = export.verify_tflite(data, small, digits[2][:50])
    assert report.max_abs_diff <= 1e-4


def test_verification_failure_is_loud(small, digits):
    with pytest.raises(ValueError, match="TFLite verification failed: max \\|diff\\|"):
        export.to_tflite(small, quantization="float16", verify_samples=digits[2][:50], tolerance=0.0)


def test_float_tolerance_scales_with_large_outputs(digits):
    """Float rounding grows with magnitude: above |output| 1 the tolerance is relative."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, kernel_initializer=keras.initializers.RandomNormal(stddev=30.0))(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    samples = digits[2][:20]
    data = export.to_tflite(model)
    report = export.verify_tflite(data, model, samples)
    reference = float(np.abs(model.predict(samples, verbose=0)).max())
    assert report.max_abs_reference == pytest.approx(reference)
    assert reference > 100.0
    limit = 1e-4 * reference
    assert report.max_abs_diff <= limit
    export.to_tflite(model, verify_samples=samples)  # within 1e-4 x the output scale: passes
    with pytest.raises(ValueError, match="largest \\|Keras output\\|"):
        export.to_tflite(model, verify_samples=samples, tolerance=report.max_abs_diff / reference / 2)


def test_bad_input_gives_clear_errors(small, tmp_path):
    with pytest.raises(ValueError, match="Unknown quantization 'int4'. Accepted: None, 'dynamic'"):
        export.to_tflite(small, quantization="int4")
    with pytest.raises(ValueError, match="needs a representative_dataset"):
        export.to_tflite(small, quantization="int8")
    with pytest.raises(ValueError, match='io_type="int8" needs quantization="int8"'):
        export.to_tflite(small, io_type="int8")
    with pytest.raises(ValueError, match="Unknown io_type 'uint8'"):
        export.to_tflite(small, quantization="int8", io_type="uint8", representative_dataset=np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"representative_dataset must be samples shaped \(N, 8, 8, 1\)"):
        export.to_tflite(small, quantization="int8", representative_dataset=np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="TFLite file not found"):
        export.interpreter(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="samples must be a non-empty batch"):
        export.verify_tflite(export.to_tflite(small), small, np.zeros((0, 8, 8, 1)))
    with pytest.raises(TypeError, match="Expected a tf_keras Model"):
        export.to_tflite("model.keras")


def test_tflite_signature_names_and_outputs_match_from_keras_model():
    """to_tflite skips Keras' layer-by-layer SavedModel export; the file must look the same."""
    from ai_edge_litert.interpreter import Interpreter

    from chipnet_tf.compat import keras, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, [keras.layers.Dense(3, name="zeta_head")(h), keras.layers.Dense(2, name="alpha_head")(h)])
    x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    seen = []
    for data in (tf.lite.TFLiteConverter.from_keras_model(model).convert(), export.to_tflite(model)):
        interp = Interpreter(model_content=data)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outputs = [(d["name"], interp.get_tensor(d["index"])) for d in interp.get_output_details()]
        names = [d["name"] for d in interp.get_input_details()]
        seen.append((interp.get_signature_list(), names, outputs))
    (sig_a, in_a, out_a), (sig_b, in_b, out_b) = seen
    assert sig_b == sig_a == {"serving_default": {"inputs": ["image"], "outputs": ["alpha_head", "zeta_head"]}}
    assert in_b == in_a
    assert [n for n, _ in out_b] == [n for n, _ in out_a]
    for (_, a), (_, b) in zip(out_a, out_b):
        np.testing.assert_allclose(b, a, atol=1e-6)


def test_models_xnnpack_cannot_prepare_still_verify_with_builtin_kernels(caplog):
    """A tiny int8 ResNet-50 (CIFAR, width 1/16) calibrated on mock data: XNNPACK refuses one
    of its nodes; the interpreter falls back to the built-in kernels with a warning."""
    from ai_edge_litert.interpreter import Interpreter

    path = os.path.join(os.path.dirname(__file__), "data", "xnnpack_unpreparable_int8.tflite")
    with pytest.raises(RuntimeError, match="XNNPACK"):
        Interpreter(model_path=path).allocate_tensors()
    with caplog.at_level(logging.WARNING, logger="chipnet_tf"):
        outputs = export.run_tflite(path, np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32))
    assert outputs.shape == (3, 10) and np.isfinite(outputs).all()
    assert "XNNPACK could not prepare this model" in caplog.text
