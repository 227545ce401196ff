"""After a search, the wrapped model in inference reports the hard network's accuracy.

A search's BatchNorm moving statistics belong to no fixed network (the gates at the budget's
equilibrium open and close from step to step), so the hard network is judged with statistics
re-estimated for it: ``apply_masks(..., calibration_data=...)`` and
``strip_pruning(..., calibration_data=...)``, both through ``recalibrate_batch_norm``
(experiments/inference-bn-statistics-2026-12).
"""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras
from chipnet_tf.search.layers.controller import controllers
from tests.models import pruning_optimizer, residual_cnn


@pytest.fixture(scope="module")
def searched(digits):
    """A residual CNN searched to 25 % of its FLOPs on digits (320 steps), as fit leaves it."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    dense = residual_cnn(8)
    dense.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    dense.fit(x, y, epochs=6, batch_size=64, verbose=0)
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.25, budget_type="flops")
    pruned.compile(pruning_optimizer(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x[:1260], y[:1260], batch_size=32, epochs=8, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    return dense, pruned


def _accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0, batch_size=256).argmax(-1) == y))


def _statistics(model):
    return [w.numpy().copy() for w in model.weights if "moving_" in w.name]


def test_evaluate_after_apply_masks_reports_the_hard_networks_accuracy(digits, searched):
    """get_masks -> apply_masks(calibration_data) -> evaluate gives what the stripped model,
    its statistics re-estimated on its own, scores (within 1 point), and strip inherits it."""
    x, _, xt, yt = digits
    _, pruned = searched
    masks = chipnet_tf.get_masks(pruned)
    search_statistics = _statistics(pruned)
    # The truth: the stripped network, BatchNorm re-estimated on the small model itself.
    truth = _accuracy(chipnet_tf.strip_pruning(pruned, calibration_data=x[:640]), xt, yt)
    for now, then in zip(_statistics(pruned), search_statistics):  # strip leaves the wrapped model's own
        np.testing.assert_array_equal(now, then)
    chipnet_tf.apply_masks(pruned, masks, calibration_data=x[:640])
    try:
        reported = pruned.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
        assert reported == pytest.approx(truth, abs=0.01)
        assert truth >= 0.8  # a working hard network (0.867 here; 0.660 with the search's statistics)
        assert _accuracy(chipnet_tf.strip_pruning(pruned), xt, yt) == pytest.approx(reported, abs=0.003)  # 1 image
    finally:
        chipnet_tf.apply_masks(pruned, None)
        for w, value in zip([w for w in pruned.weights if "moving_" in w.name], search_statistics):
            w.assign(value)


def test_calibration_replaces_only_batch_norm_statistics(digits, searched):
    """apply_masks(calibration_data) changes the moving statistics and nothing else: not the
    logits, the schedule state, any trained weight; a fresh wrapper (mask transfer) works too
    and the stripped dense model with the same data computes what it computes."""
    x, _, xt, _ = digits
    dense, pruned = searched
    masks = chipnet_tf.get_masks(pruned)
    fresh = chipnet_tf.prune_low_budget(dense, budget=0.25, budget_type="flops")  # never ran fit
    before = {w.name: w.numpy().copy() for w in fresh.weights}
    chipnet_tf.apply_masks(fresh, masks, calibration_data=x[:640])
    changed = {w.name for w in fresh.weights if not np.array_equal(w.numpy(), before[w.name])}
    assert changed and all("moving_" in n or n.endswith(("hard_mask:0", "use_hard:0")) for n in changed), changed
    assert int(controllers(fresh)[0].pruning_step.numpy()) == -1  # calibration trains nothing
    small = chipnet_tf.strip_pruning(dense, masks=masks, calibration_data=x[:640])
    np.testing.assert_allclose(small.predict(xt, verbose=0), fresh.predict(xt, verbose=0), atol=1e-4)


def test_recalibrate_batch_norm_is_public_and_rejects_bad_input(digits, searched):
    x = digits[0][:128]
    _, pruned = searched
    assert chipnet_tf.recalibrate_batch_norm is chipnet_tf.search.callbacks.recalibrate_batch_norm
    for bad in (0, -3, 2.5, "10", True, None):
        with pytest.raises(ValueError, match=f"^steps must be a positive integer. Received: steps={bad!r}$"):
            chipnet_tf.recalibrate_batch_norm(pruned, x, steps=bad)
        with pytest.raises(ValueError, match=f"calibration_steps must be a positive integer. .*={bad!r}$"):
            chipnet_tf.apply_masks(pruned, None, calibration_data=x, calibration_steps=bad)
    for bad in ("train.npz", {"x": 1}, [object()]):
        with pytest.raises(TypeError, match=r"^data must be a tf.data.Dataset .* Received: .*"):
            chipnet_tf.recalibrate_batch_norm(pruned, bad)
    with pytest.raises(TypeError, match=r"^calibration_data must be a tf.data.Dataset .* Received: 'x.npy'$"):
        chipnet_tf.strip_pruning(pruned, calibration_data="x.npy")
    with pytest.raises(TypeError, match=r"^model must be a Keras Model. Received: model='pruned'$"):
        chipnet_tf.recalibrate_batch_norm("pruned", x)
    with pytest.raises(ValueError, match=r"^data holds no examples \(an array of shape \(0, 8, 8, 1\)\)\.$"):
        chipnet_tf.recalibrate_batch_norm(pruned, x[:0])
