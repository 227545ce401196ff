"""BestHardMasks: per-epoch hard-masked validation and restoring the best epoch."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras
from tests.models import pruning_optimizer, residual_cnn


def _pruned():
    keras.utils.set_random_seed(0)
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), budget=0.3, budget_type="flops")
    pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return pruned


def test_best_hard_masks_restores_the_best_epoch_and_persists_it(digits, tmp_path, capsys):
    x, y, xt, yt = digits
    pruned = _pruned()
    filepath = tmp_path / "best.npz"
    best = chipnet_tf.BestHardMasks((xt, yt), filepath=filepath)

    class Snapshot(keras.callbacks.Callback):  # runs after BestHardMasks in on_epoch_end
        snaps = []

        def on_epoch_end(self, epoch, logs=None):
            self.snaps.append([w.copy() for w in self.model.get_weights()])

    history = pruned.fit(
        x[:512], y[:512], batch_size=64, epochs=4, verbose=0,
        callbacks=[chipnet_tf.UpdatePruningStep(), best, Snapshot()],
    )  # fmt: skip
    assert "BestHardMasks" not in capsys.readouterr().out  # fit(verbose=0): silent
    hard = history.history["hard_accuracy"]
    assert len(hard) == 4 and all(0.0 <= h <= 1.0 for h in hard)
    assert best.best_epoch == int(np.argmax(hard)) and best.best_value == max(hard)
    # The model ends with the best epoch's weights and soft gates; its masks are that epoch's.
    for w, s in zip(pruned.get_weights(), Snapshot.snaps[best.best_epoch]):
        np.testing.assert_array_equal(w, s)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert float(ctl.use_hard.numpy()) == 0.0
    masks = chipnet_tf.get_masks(pruned)
    assert all((masks[k] == best.best_masks[k]).all() for k in masks)
    # ... and evaluating the hard network now reproduces the recorded value.
    chipnet_tf.apply_masks(pruned, masks)
    assert pruned.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"] == pytest.approx(best.best_value)
    # A resumed run (a new callback on the same file) starts from the saved best.
    again = chipnet_tf.BestHardMasks((xt, yt), filepath=filepath)
    again.set_model(pruned)
    again.on_train_begin()
    assert (again.best_epoch, again.best_value) == (best.best_epoch, best.best_value)
    assert all((again.best_masks[k] == best.best_masks[k]).all() for k in masks)


def test_best_hard_masks_says_which_epoch_it_restored(digits, capsys):
    x, y, xt, yt = digits
    best = chipnet_tf.BestHardMasks((xt[:64], yt[:64]))
    _pruned().fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=2, callbacks=[chipnet_tf.UpdatePruningStep(), best])
    lines = [line for line in capsys.readouterr().out.splitlines() if "BestHardMasks" in line]
    assert lines == [
        f"BestHardMasks: restored the weights of epoch 1, whose hard-masked network validated best "
        f"(accuracy {best.best_value:.4f})."
    ]


def test_best_hard_masks_bad_arguments_are_clear(digits):
    x, y, xt, yt = digits
    with pytest.raises(ValueError, match="mode must be 'max', 'min' or None"):
        chipnet_tf.BestHardMasks((xt, yt), mode="up")
    for bad in (0, 2.5, "8", True):
        with pytest.raises(ValueError, match=f"round_to must be a positive integer. Received: round_to={bad!r}"):
            chipnet_tf.BestHardMasks((xt, yt), round_to=bad)
    pruned = _pruned()
    with pytest.raises(
        ValueError,
        match="monitors .top5., which the model does not compute. Available: accuracy, budget, crispness, loss",
    ):
        pruned.fit(
            x[:64], y[:64], epochs=1, verbose=0,
            callbacks=[chipnet_tf.UpdatePruningStep(), chipnet_tf.BestHardMasks((xt, yt), monitor="top5")],
        )  # fmt: skip
    plain = keras.Sequential([keras.layers.Dense(10)])
    plain.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="has no chipnet_tf gates"):
        plain.fit(x[:8].reshape(8, -1), y[:8], epochs=1, verbose=0, callbacks=[chipnet_tf.BestHardMasks((xt, yt))])


def test_recalibrate_batch_norm_averages_batch_statistics_and_restores(digits):
    from chipnet_tf import recalibrate_batch_norm, restore_batch_norm

    x = digits[0][:96]
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    bn = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Sequential([keras.Input((8, 8, 1)), conv, bn])
    before = (bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy())
    saved = recalibrate_batch_norm(model, x, steps=3)  # an array goes in batches of 64: 64 + 32
    y = conv(x).numpy().reshape(-1, 4)
    batches = [conv(x[:64]).numpy().reshape(-1, 4), conv(x[64:]).numpy().reshape(-1, 4)]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), atol=1e-5)
    unbiased = [b.var(0) * len(b) / (len(b) - 1) for b in batches]
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(unbiased, 0), rtol=1e-4)
    assert bn.momentum == 0.9 and y.shape == (96 * 64, 4)
    restore_batch_norm(saved)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before[0])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before[1])


def test_calibration_does_not_change_training(digits):
    """BN calibration only changes what is validated: the trained weights are the same."""
    x, y, xt, yt = digits
    weights = []
    for calibration in (None, x[:256]):
        pruned = _pruned()
        best = chipnet_tf.BestHardMasks((xt, yt), restore=False, calibration_data=calibration, calibration_steps=4)
        pruned.fit(
            x[:256], y[:256], batch_size=64, epochs=2, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep(), best]
        )
        weights.append(pruned.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
