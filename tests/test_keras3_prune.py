"""The pruning workflow on tf_keras and on Keras 3 (TensorFlow backend), one test for both.

Each test runs on the same architecture built with either Keras (``tests/twins.py``):
wrap, fit with UpdatePruningStep, masks, budget report, strip exactness, ``.keras`` round
trip. A Keras 3 model gets Keras 3 gate layers (``keras.ops`` math) and strips into a plain
Keras 3 model.
"""

import math

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import is_keras3_object
from chipnet_tf.compat import keras as tf_keras
from chipnet_tf.search import heaviside
from tests.twins import ops_between_layers, residual

FLAVOURS = ("tf_keras", "keras3")


def _keras(flavour):
    if flavour == "tf_keras":
        return tf_keras, None
    import keras

    assert keras.__version__.startswith("3.")
    return keras, keras.ops


def _build(flavour, arch=residual, seed=0):
    K, ops = _keras(flavour)
    K.utils.set_random_seed(seed)
    return arch(K, ops)


def _data(shape, n=64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, classes, n)


def _np(x):
    return np.asarray(x)


@pytest.fixture(scope="module", params=FLAVOURS)
def searched(request):
    """A residual CNN of either Keras, wrapped at a FLOPs budget of 0.4 and fit 6 epochs."""
    dense = _build(request.param)
    x, y = _data((16, 16, 3))
    pruned = chipnet_tf.prune_low_budget(dense, 0.4, "flops")
    pruned.compile(chipnet_tf.search_optimizer(48, model=pruned), "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="optimizer steps"):  # a short search is warned about
        history = pruned.fit(x, y, epochs=6, batch_size=8, callbacks=[chipnet_tf.UpdatePruningStep()], verbose=0)
    return request.param, dense, pruned, history.history, x


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_wrapped_model_is_the_dense_model_before_the_search(flavour):
    dense = _build(flavour)
    x, _ = _data((16, 16, 3), n=8)
    pruned = chipnet_tf.prune_low_budget(dense, 0.5, "flops")
    assert is_keras3_object(pruned) == (flavour == "keras3")
    kinds = sorted({type(layer).__name__ for layer in pruned.layers})
    assert "ChipNetController" in kinds and "GatedBatchNormalization" in kinds
    np.testing.assert_allclose(_np(pruned(x, training=False)), _np(dense(x, training=False)), rtol=1e-6, atol=1e-7)
    groups = chipnet_tf.prune.controllers(pruned)[0].groups
    assert groups == [["conv1", 8], ["conv3", 12]]


def test_fit_logs_the_budget_and_the_schedule(searched):
    flavour, _, pruned, history, _ = searched
    assert {"loss", "budget", "crispness", "beta", "gamma"} <= set(history), history.keys()
    assert len(history["budget"]) == 6
    # The soft budget starts at the dense network and falls towards the target of 0.4.
    assert history["budget"][0] > history["budget"][-1]
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert int(_np(ctl.pruning_step)) == 48 and int(_np(ctl.total_steps)) == 48


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
    expected, got = _np(pruned(x, training=False)), _np(small(x, training=False))
    assert np.abs(got - expected).max() <= 1e-5 * (1 + np.abs(expected).max())
    # The stripped model's FLOPs are what the report counted for the hard masks.
    assert chipnet_tf.count_flops(small) == report.totals["flops"]["kept"]
    assert small.get_layer("conv1").filters == kept["conv1"]
    chipnet_tf.apply_masks(pruned, None)


def test_keras_file_round_trip(searched, tmp_path):
    flavour, _, pruned, _, x = searched
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    K, _ = _keras(flavour)
    loaded = K.models.load_model(path, compile=False)
    np.testing.assert_array_equal(_np(loaded(x, training=False)), _np(pruned(x, training=False)))
    ctl, again = chipnet_tf.prune.controllers(pruned)[0], chipnet_tf.prune.controllers(loaded)[0]
    assert again.search_config() == ctl.search_config() and again.groups == ctl.groups
    assert {k: v.tolist() for k, v in chipnet_tf.get_masks(loaded).items()} == {
        k: v.tolist() for k, v in chipnet_tf.get_masks(pruned).items()
    }


def test_masks_transfer_between_the_two_kerases():
    """The same architecture has the same groups in both Kerases: masks of one strip the
    other into the same shapes and FLOPs."""
    old, new = _build("tf_keras"), _build("keras3")
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

    dense = _build("keras3", ops_between_layers)
    x, _ = _data((8, 8, 3), n=8)
    pruned = chipnet_tf.prune_low_budget(dense, 0.5, "channels")
    np.testing.assert_allclose(_np(pruned(x)), _np(dense(x)), rtol=1e-6, atol=1e-7)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    masks = {name: np.arange(size) % 2 == 0 for name, size in ctl.groups}
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    layer_kinds = {type(layer).__name__ for layer in small.layers}
    ops_in_small = sorted({type(op).__name__ for op in small.operations} - layer_kinds)
    assert ops_in_small == ["Add", "Concatenate", "Multiply", "Relu"]
    np.testing.assert_allclose(_np(small(x)), _np(pruned(x)), rtol=1e-5, atol=1e-6)
    assert small.get_layer("head").kernel.shape[2] == 6  # 3 of the multiply's 6 + 3 of conv_a's 6
    assert isinstance(small, keras.Model)


@pytest.mark.parametrize("beta,gamma", [(1.0, 2.0), (5.0, 20.0), (20.0, 256.0)])
def test_heaviside_gradient_matches_finite_differences_on_keras_ops(beta, gamma):
    """The gate's gradient in keras.ops (TensorFlow backend) equals a float64 central
    difference of the formula, and the tf_keras gate's gradient."""
    import keras
    import tensorflow as tf

    zeta = np.array([-3.0, -0.7, -0.05, 0.0, 0.05, 0.4, 1.3, 3.0], np.float32)

    def formula(v):
        zi = 1 / (1 + math.exp(-beta * v))
        return 1 - math.exp(-gamma * zi) + zi * math.exp(-gamma)

    h = 1e-6
    fd = np.array([(formula(float(v) + h) - formula(float(v) - h)) / (2 * h) for v in zeta])
    grads = {}
    for name, ops in (("keras3", keras.ops), ("tf_keras", chipnet_tf.tf_ops)):
        var = tf.Variable(zeta)
        with tf.GradientTape() as tape:
            z = heaviside.continuous_heaviside(var, beta, gamma, ops)
        grads[name] = tape.gradient(z, var).numpy()
        np.testing.assert_allclose(_np(z), [formula(float(v)) for v in zeta], rtol=1e-5, atol=1e-6)
    mask = np.abs(fd) > 1e-4
    np.testing.assert_allclose(grads["keras3"][mask], fd[mask], rtol=2e-3)
    np.testing.assert_allclose(grads["keras3"], grads["tf_keras"], rtol=1e-6, atol=1e-12)
