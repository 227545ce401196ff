"""The pruning workflow on tf_keras and on Keras 3 (TensorFlow backend), one test for both.

Each test runs on the same architecture built with either Keras (``tests/twins.py``):
wrap, fit with UpdatePruningStep, masks, budget report, strip exactness, ``.keras`` round
trip. A Keras 3 model gets Keras 3 gate layers (``keras.ops`` math) and strips into a plain
Keras 3 model.
"""

import json
import math

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import is_keras3_object
from chipnet_tf.search import heaviside
from tests.twins import BACKEND, FLAVOURS, build, keras_of_flavour, ops_between_layers, random_data, to_numpy


@pytest.fixture(scope="module", params=FLAVOURS)
def searched(request):
    """A residual CNN of either Keras, wrapped at a FLOPs budget of 0.4 and fit 6 epochs."""
    dense = build(request.param)
    x, y = random_data((16, 16, 3))
    pruned = chipnet_tf.prune_low_budget(dense, 0.4, "flops")
    pruned.compile(chipnet_tf.search_optimizer(48, model=pruned), "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="optimizer steps"):  # a short search is warned about
        history = pruned.fit(x, y, epochs=6, batch_size=8, callbacks=[chipnet_tf.UpdatePruningStep()], verbose=0)
    return request.param, dense, pruned, history.history, x


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_wrapped_model_is_the_dense_model_before_the_search(flavour):
    dense = build(flavour)
    x, _ = random_data((16, 16, 3), n=8)
    pruned = chipnet_tf.prune_low_budget(dense, 0.5, "flops")
    assert is_keras3_object(pruned) == (flavour == "keras3")
    kinds = sorted({type(layer).__name__ for layer in pruned.layers})
    assert "ChipNetController" in kinds and "GatedBatchNormalization" in kinds
    np.testing.assert_allclose(
        to_numpy(pruned(x, training=False)), to_numpy(dense(x, training=False)), rtol=1e-6, atol=1e-7
    )
    groups = chipnet_tf.prune.controllers(pruned)[0].groups
    assert groups == [["conv1", 8], ["conv3", 12]]


def test_fit_logs_the_budget_and_the_schedule(searched):
    flavour, _, pruned, history, _ = searched
    assert {"loss", "budget", "crispness", "beta", "gamma"} <= set(history), history.keys()
    assert len(history["budget"]) == 6
    # The soft budget starts at the dense network and falls towards the target of 0.4.
    assert history["budget"][0] > history["budget"][-1]
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert int(to_numpy(ctl.pruning_step)) == 48 and int(to_numpy(ctl.total_steps)) == 48


def test_masks_report_and_strip_are_exact(searched):
    flavour, _, pruned, _, x = searched
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(pruned, masks=masks)
    kept = {row["name"]: row["kept"] for row in report.groups}
    assert kept == {name: int(m.sum()) for name, m in masks.items()}
    assert report.totals["flops"]["fraction"] <= 0.4 + 1e-9
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned)
    assert is_keras3_object(small) == (flavour == "keras3")
    assert not any("Gate" in type(layer).__name__ or "Controller" in type(layer).__name__ for layer in small.layers)
    expected, got = to_numpy(pruned(x, training=False)), to_numpy(small(x, training=False))
    assert np.abs(got - expected).max() <= 1e-5 * (1 + np.abs(expected).max())
    # The stripped model's FLOPs are what the report counted for the hard masks.
    assert chipnet_tf.count_flops(small) == report.totals["flops"]["kept"]
    assert small.get_layer("conv1").filters == kept["conv1"]
    # Stripped layers keep their initializers' config (on JAX they are built with zeros first).
    dense_conv = next(layer for layer in pruned.layers if layer.name == "conv1")
    dense_conv = getattr(dense_conv, "layer", dense_conv)
    assert small.get_layer("conv1").get_config()["kernel_initializer"] == dense_conv.get_config()["kernel_initializer"]
    chipnet_tf.apply_masks(pruned, None)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_best_hard_masks_keeps_the_best_epoch(flavour, tmp_path):
    """BestHardMasks evaluates the hard masks after every epoch on held-out data (the model's
    own Keras evaluates them) and keeps the best, on file too."""
    dense = build(flavour)
    x, y = random_data((16, 16, 3))
    pruned = chipnet_tf.prune_low_budget(dense, 0.4, "flops")
    optimizer = chipnet_tf.search_optimizer(24, model=pruned)
    pruned.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    best = chipnet_tf.BestHardMasks((x[:16], y[:16]), filepath=str(tmp_path / "best.npz"))
    with pytest.warns(UserWarning, match="optimizer steps"):
        pruned.fit(x, y, epochs=3, batch_size=8, callbacks=[chipnet_tf.UpdatePruningStep(), best], verbose=0)
    assert 0 <= best.best_epoch < 3 and sorted(best.best_masks) == ["conv1", "conv3"]
    with np.load(tmp_path / "best.npz") as f:
        saved = json.loads(str(f["meta"]))
    assert saved["epoch"] == best.best_epoch
    assert saved["masks"] == {k: v.astype(int).tolist() for k, v in best.best_masks.items()}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_pruning_summaries_write_the_search_to_tensorboard(flavour, tmp_path):
    import tensorflow as tf

    dense = build(flavour)
    x, y = random_data((16, 16, 3), n=32)
    pruned = chipnet_tf.prune_low_budget(dense, 0.4, "flops")
    pruned.compile(chipnet_tf.search_optimizer(8, model=pruned), "sparse_categorical_crossentropy")
    callbacks = [chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries(str(tmp_path))]
    with pytest.warns(UserWarning, match="optimizer steps"):
        pruned.fit(x, y, epochs=2, batch_size=8, callbacks=callbacks, verbose=0)
    tags = {}
    for path in tmp_path.glob("events.out.tfevents.*"):
        for record in tf.compat.v1.train.summary_iterator(str(path)):
            for value in record.summary.value:
                tags.setdefault(value.tag, []).append(record.step)
    for tag in ("chipnet/budget", "chipnet/hard_budget", "chipnet/crispness", "chipnet/beta", "chipnet/gamma"):
        assert tags[tag] == [1, 2], tag
    assert tags["chipnet_groups/conv1"] == [1, 2] and tags["chipnet_groups/conv3"] == [1, 2]


def test_keras_file_round_trip(searched, tmp_path):
    flavour, _, pruned, _, x = searched
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    K, _ = keras_of_flavour(flavour)
    loaded = K.models.load_model(path, compile=False)
    np.testing.assert_array_equal(to_numpy(loaded(x, training=False)), to_numpy(pruned(x, training=False)))
    ctl, again = chipnet_tf.prune.controllers(pruned)[0], chipnet_tf.prune.controllers(loaded)[0]
    assert again.search_config() == ctl.search_config() and again.groups == ctl.groups
    assert {k: v.tolist() for k, v in chipnet_tf.get_masks(loaded).items()} == {
        k: v.tolist() for k, v in chipnet_tf.get_masks(pruned).items()
    }


def test_masks_transfer_between_the_two_kerases():
    """The same architecture has the same groups in both Kerases: masks of one strip the
    other into the same shapes and FLOPs."""
    old, new = build("tf_keras"), build("keras3")
    masks = {"conv1": np.array([1, 0, 1, 1, 0, 0, 1, 0], bool), "conv3": np.arange(12) % 3 == 0}
    small_old = chipnet_tf.strip_pruning(old, masks=masks)
    small_new = chipnet_tf.strip_pruning(new, masks=masks)
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in small_old.layers]
    assert shapes == [[tuple(w.shape) for w in layer.weights] for layer in small_new.layers]
    assert chipnet_tf.count_flops(small_old) == chipnet_tf.count_flops(small_new)


def test_keras_ops_calls_between_layers_are_pruned_and_stripped():
    """keras.ops.add / relu / multiply / concatenate between layers: wrapped, gated and
    called again in the stripped model."""
    import keras

    dense = build("keras3", ops_between_layers)
    x, _ = random_data((8, 8, 3), n=8)
    pruned = chipnet_tf.prune_low_budget(dense, 0.5, "channels")
    np.testing.assert_allclose(to_numpy(pruned(x)), to_numpy(dense(x)), rtol=1e-6, atol=1e-7)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    masks = {name: np.arange(size) % 2 == 0 for name, size in ctl.groups}
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    layer_kinds = {type(layer).__name__ for layer in small.layers}
    ops_in_small = sorted({type(op).__name__ for op in small.operations} - layer_kinds)
    assert ops_in_small == ["Add", "Concatenate", "Multiply", "Relu"]
    np.testing.assert_allclose(to_numpy(small(x)), to_numpy(pruned(x)), rtol=1e-5, atol=1e-6)
    assert small.get_layer("head").kernel.shape[2] == 6  # 3 of the multiply's 6 + 3 of conv_a's 6
    assert isinstance(small, keras.Model)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stripped_model_exports_and_verifies_in_litert(flavour):
    """float32 and int8 TFLite files of a stripped model of either Keras, run in LiteRT; on
    another backend than TensorFlow a one-line error says how to convert."""
    dense = build(flavour)
    if flavour == "keras3" and BACKEND != "tensorflow":
        with pytest.raises(ValueError, match=f"on the {BACKEND} backend.*KERAS_BACKEND=tensorflow"):
            chipnet_tf.export.to_tflite(dense)
        return
    x, _ = random_data((16, 16, 3), n=32)
    masks = {"conv1": np.arange(8) % 2 == 0, "conv3": np.arange(12) % 3 == 0}
    small = chipnet_tf.strip_pruning(dense, masks=masks)
    data = chipnet_tf.export.to_tflite(small, verify_samples=x)
    float_report = chipnet_tf.export.verify_tflite(data, small, x)
    assert float_report.max_abs_diff <= 1e-6 and float_report.top1_agreement == 1.0
    int8 = chipnet_tf.export.to_tflite(small, quantization="int8", representative_dataset=x, io_type="int8")
    # An untrained softmax is almost flat, so top-1 says little here: the outputs must be
    # within a few quantization steps (the int8 output scale of a softmax is 1/256).
    assert chipnet_tf.export.verify_tflite(int8, small, x).max_abs_diff <= 4 / 256
    interp = chipnet_tf.export.interpreter(int8)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    conv1 = [d for d in interp.get_tensor_details() if d["shape"].tolist()[-1:] == [4] and len(d["shape"]) == 4]
    assert conv1, "the stripped conv1 (4 of 8 filters) is in the TFLite file"


def _grad_of_sum(fn, x):
    """The gradient of ``sum(fn(x))`` at ``x`` with the autodiff of Keras 3's backend."""
    import keras

    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: keras.ops.sum(fn(v)))(x))
    if BACKEND == "torch":
        import torch

        var = torch.tensor(x, requires_grad=True)
        keras.ops.sum(fn(var)).backward()
        return var.grad.numpy()
    import tensorflow as tf

    var = tf.Variable(x)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(fn(var))
    return tape.gradient(total, var).numpy()


@pytest.mark.parametrize("beta,gamma", [(1.0, 2.0), (5.0, 20.0), (20.0, 256.0)])
def test_heaviside_gradient_matches_finite_differences_on_keras_ops(beta, gamma):
    """The gate's gradient in keras.ops (on this process's Keras 3 backend) equals a float64
    central difference of the formula, and the tf_keras gate's gradient."""
    import keras

    zeta = np.array([-3.0, -0.7, -0.05, 0.0, 0.05, 0.4, 1.3, 3.0], np.float32)

    def formula(v):
        zi = 1 / (1 + math.exp(-beta * v))
        return 1 - math.exp(-gamma * zi) + zi * math.exp(-gamma)

    h = 1e-6
    fd = np.array([(formula(float(v) + h) - formula(float(v) - h)) / (2 * h) for v in zeta])
    z = keras.ops.convert_to_numpy(heaviside.continuous_heaviside(zeta, beta, gamma, keras.ops))
    np.testing.assert_allclose(z, [formula(float(v)) for v in zeta], rtol=1e-5, atol=1e-6)
    grad = _grad_of_sum(lambda v: heaviside.continuous_heaviside(v, beta, gamma, keras.ops), zeta)
    mask = np.abs(fd) > 1e-4
    np.testing.assert_allclose(grad[mask], fd[mask], rtol=2e-3)
    # The tf_keras gate (chipnet_tf.tf_ops) computes the same gradient.
    import tensorflow as tf

    var = tf.Variable(zeta)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(heaviside.continuous_heaviside(var, beta, gamma))
    np.testing.assert_allclose(grad, tape.gradient(total, var).numpy(), rtol=1e-5, atol=1e-12)
