"""tfmot interop on the trained digits CNN: QAT, magnitude pruning, shared fits, clear errors.

Supported combinations, each covered by a test below:

* A *stripped* ChipNet model is a plain tf_keras model: ``quantize_model`` and
  quantization-aware training, and ``prune_low_magnitude`` (unstructured sparsity on top
  of ChipNet's structured pruning), both export to TFLite and run in LiteRT.
* A *wrapped* ChipNet model can have tfmot's ``prune_low_magnitude`` on its Conv2D/Dense
  layers (``clone_model`` with a ``clone_function``), trained in one ``fit`` with both
  libraries' callbacks; ``tfmot.sparsity.keras.strip_pruning`` then
  ``chipnet_tf.strip_pruning`` gives a small, sparse model.
* Not supported, with an error that says so: ``prune_low_magnitude`` / ``quantize_model``
  of the whole wrapped model (the ChipNet controller has neither prunable weights nor a
  QuantizeConfig), and ``quantize_model`` of models with Multiply layers.
"""

import glob

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

import chipnet_tf
from chipnet_tf import export
from chipnet_tf.compat import keras, tf
from tests.models import pruning_optimizer

sparsity = tfmot.sparsity.keras
L = keras.layers
SPARSITY = 0.5


def _stripped(model, seed=0):
    """``model`` stripped to half of its channels with random (but fixed) scores."""
    analysis = chipnet_tf.analyze(model)
    rng = np.random.default_rng(seed)
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, 0.5, "channels")
    return chipnet_tf.strip_pruning(model, masks=masks)


def _kernels(model):
    """{layer name: kernel array} of the Conv2D/Dense layers (unwrapping tfmot wrappers)."""
    out = {}
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        if isinstance(inner, (L.Conv2D, L.Dense)):
            out[inner.name] = inner.kernel.numpy()
    return out


def _event_tags(log_dir):
    tags = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        for record in tf.compat.v1.train.summary_iterator(path):
            for v in record.summary.value:
                tags.setdefault(v.tag, []).append(record.step)
    return tags


def test_stripped_model_quantization_aware_training_runs_int8_in_litert(trained_cnn, digits):
    x, y, xt, yt = digits
    small = _stripped(trained_cnn)
    keras.utils.set_random_seed(0)
    qat = export.quantize_model(small)
    assert any(type(layer).__name__.startswith("QuantizeWrapper") for layer in qat.layers)
    qat.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    # The random half-width model starts at chance; one QAT epoch on 640 samples recovers it.
    history = qat.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    data = export.to_tflite(qat, quantization="dynamic")
    interp = export.interpreter(data)
    int8 = [d for d in interp.get_tensor_details() if d["dtype"] == np.int8]
    shapes = {tuple(int(s) for s in d["shape"]) for d in int8}
    # Weights: every conv filter is int8 with ChipNet's reduced shape (TFLite layout OHWI).
    for name, k in _kernels(small).items():
        if k.ndim == 4:
            assert (k.shape[3], k.shape[0], k.shape[1], k.shape[2]) in shapes, name
    # Activations: int8 feature maps (batch 1, 8x8 and 4x4 spatial) between the ops; only
    # the model's float input and output (quantize/dequantize at the edges) stay float32.
    assert any(len(s) == 4 and s[:3] in ((1, 8, 8), (1, 4, 4)) for s in shapes), shapes
    edges = {interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]}
    floats = {d["index"] for d in interp.get_tensor_details() if d["dtype"] == np.float32}
    assert floats <= edges, [d["name"] for d in interp.get_tensor_details() if d["index"] in floats - edges]

    samples = xt[:200]
    report = export.verify_tflite(data, qat, samples)
    assert report.top1_agreement >= 0.9, report
    lite = export.run_tflite(interp, samples)
    accuracy = float(np.mean(lite.argmax(-1) == yt[:200]))
    assert accuracy > 0.6, accuracy  # chance is 0.1


def test_stripped_model_magnitude_pruning_keeps_structured_shapes_and_exports(trained_cnn, digits):
    x, y, xt, _ = digits
    small = _stripped(trained_cnn)
    keras.utils.set_random_seed(0)
    pruned = sparsity.prune_low_magnitude(
        small, pruning_schedule=sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=1)
    )
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])

    final = sparsity.strip_pruning(pruned)
    assert not any(isinstance(layer, PruneLowMagnitude) for layer in final.layers)
    assert final.count_params() == small.count_params()
    before, after = _kernels(small), _kernels(final)
    assert before.keys() == after.keys() and len(after) == 7
    for name, k in after.items():
        assert k.shape == before[name].shape, name  # ChipNet's reduced shapes survive
        assert np.mean(k == 0) >= 0.45, (name, np.mean(k == 0))
    total = sum(k.size for k in after.values())
    assert sum(int(np.sum(k == 0)) for k in after.values()) / total >= 0.45

    data = export.to_tflite(final)
    report = export.verify_tflite(data, final, xt[:200])
    assert report.max_abs_diff <= 1e-4, report


def test_chipnet_and_tfmot_pruning_train_in_one_fit(trained_cnn, digits, tmp_path):
    """tfmot wraps the Conv2D/Dense layers *of the ChipNet-wrapped model*; one fit, 4 callbacks.

    Supported: ``keras.models.clone_model(wrapped, clone_function=...)`` applying
    ``prune_low_magnitude`` to Conv2D/Dense layers only (ChipNet's gates, gated batch norms and
    controller are cloned as they are). ``prune_low_magnitude(wrapped)`` on the whole model is
    refused by tfmot because the controller has no prunable weights. Afterwards,
    ``tfmot.sparsity.keras.strip_pruning`` gives back a ChipNet-wrapped model and
    ``chipnet_tf.strip_pruning`` removes the pruned channels.
    """
    x, y, xt, _ = digits
    keras.utils.set_random_seed(0)
    wrapped = chipnet_tf.prune_low_budget(trained_cnn, budget=0.5, budget_type="flops")
    with pytest.raises(ValueError, match="ChipNetController"):
        sparsity.prune_low_magnitude(wrapped)

    schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=1)

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, (L.Conv2D, L.Dense)):
            return sparsity.prune_low_magnitude(new, pruning_schedule=schedule)
        return new

    both = keras.models.clone_model(wrapped, clone_function=clone)
    for layer in both.layers:
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        inner.set_weights(wrapped.get_layer(inner.name).get_weights())
    assert sum(isinstance(layer, PruneLowMagnitude) for layer in both.layers) == 7
    (ctl,) = chipnet_tf.prune.controllers(both)

    epochs, batch, n = 2, 64, 512
    steps = n // batch
    log_chipnet, log_tfmot = str(tmp_path / "chipnet"), str(tmp_path / "tfmot")
    both.compile(pruning_optimizer(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = both.fit(
        x[:n],
        y[:n],
        batch_size=batch,
        epochs=epochs,
        verbose=0,
        callbacks=[
            chipnet_tf.UpdatePruningStep(),
            chipnet_tf.PruningSummaries(log_chipnet),
            sparsity.UpdatePruningStep(),
            sparsity.PruningSummaries(log_tfmot),
        ],
    )
    hist = history.history

    # ChipNet's schedule (the default: progress over the whole fit) advanced every step.
    assert int(ctl.pruning_epoch.numpy()) == epochs
    assert int(ctl.pruning_step.numpy()) == epochs * steps
    ends = [ctl.schedule.position(e * steps, epochs * steps) for e in range(1, epochs + 1)]
    np.testing.assert_allclose(hist["beta"], [ctl.schedule.beta(t) for t in ends], rtol=1e-6)
    np.testing.assert_allclose(hist["gamma"], [ctl.schedule.gamma(t) for t in ends], rtol=1e-6)
    assert len(hist["budget"]) == len(hist["crispness"]) == epochs
    assert np.isfinite(hist["budget"]).all() and np.isfinite(hist["crispness"]).all()
    assert np.isfinite(hist["loss"]).all()
    # tfmot's step advanced per batch and every wrapped kernel reached the target sparsity.
    for layer in both.layers:
        if isinstance(layer, PruneLowMagnitude):
            assert int(layer.pruning_step.numpy()) == epochs * steps, layer.name
    for name, k in _kernels(both).items():
        assert np.mean(k == 0) >= 0.45, (name, np.mean(k == 0))
    # Both libraries wrote their summaries.
    tags = _event_tags(log_chipnet)
    for tag in ("chipnet/budget", "chipnet/hard_budget", "chipnet/crispness", "chipnet/beta", "chipnet/gamma"):
        assert tags[tag] == list(range(1, epochs + 1)), tag
    tfmot_tags = _event_tags(log_tfmot)
    assert any(t.endswith("/sparsity") for t in tfmot_tags), sorted(tfmot_tags)

    # tfmot strip, then ChipNet strip: structurally smaller and still sparse, same function.
    plain = sparsity.strip_pruning(both)
    assert not any(isinstance(layer, PruneLowMagnitude) for layer in plain.layers)
    assert chipnet_tf.prune.controllers(plain)
    masks = chipnet_tf.get_masks(plain)
    small = chipnet_tf.strip_pruning(plain, masks=masks)
    assert small.count_params() < trained_cnn.count_params()
    for name, k in _kernels(small).items():
        assert np.mean(k == 0) >= 0.4, (name, np.mean(k == 0))
    chipnet_tf.apply_masks(plain, masks)
    np.testing.assert_allclose(small.predict(xt[:100], verbose=0), plain.predict(xt[:100], verbose=0), atol=1e-4)


def test_wrapped_model_cannot_be_quantized_and_says_why(trained_cnn):
    wrapped = chipnet_tf.prune_low_budget(trained_cnn, budget=0.5, budget_type="flops")
    (ctl,) = chipnet_tf.prune.controllers(wrapped)
    with pytest.raises(RuntimeError, match="ChipNetController") as info:
        tfmot.quantization.keras.quantize_model(wrapped)
    assert ctl.name in str(info.value)
    with pytest.raises(ValueError, match="Strip it first"):
        export.quantize_model(wrapped)
    # Stripped, the same model quantizes.
    assert export.quantize_model(chipnet_tf.strip_pruning(wrapped)).count_params() > 0


def test_quantize_model_rejects_multiply_layers_with_a_clear_error():
    """A squeeze-excite CNN, stripped by ChipNet: tfmot has no QuantizeConfig for Multiply."""
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inp)
    s = L.GlobalAveragePooling2D()(h)
    s = L.Dense(4, activation="relu", name="squeeze")(s)
    s = L.Dense(16, activation="sigmoid", name="excite")(s)
    h = L.Multiply(name="se_scale")([h, L.Reshape((1, 1, 16))(s)])
    out = L.Dense(10, activation="softmax", name="head")(L.GlobalAveragePooling2D()(h))
    dense = keras.Model(inp, out, name="se_cnn")
    small = _stripped(dense)
    assert small.count_params() < dense.count_params()
    assert any(isinstance(layer, L.Multiply) for layer in small.layers)
    with pytest.raises(RuntimeError, match="Multiply"):
        tfmot.quantization.keras.quantize_model(small)
    with pytest.raises(ValueError, match=r"does not support Multiply layers.*se_scale.*post-training quantization"):
        export.quantize_model(small)
