import math
import re

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from chipnet_tf.search.schedules import HeavisideSchedule
from tests.models import pruning_optimizer, residual_cnn


def test_default_schedule_values_at_chosen_epochs():
    s = HeavisideSchedule()
    assert [s.beta(e) for e in (0, 1, 10, 250, 1000)] == pytest.approx([1.0, 1.02, 1.2, 6.0, 6.0])
    assert [s.gamma(e) for e in (0, 1, 2, 10, 14, 30)] == pytest.approx(
        [2.0, 2 * math.sqrt(2), 4.0, 64.0, 256.0, 256.0]
    )
    assert [s.steepness(e) for e in (0, 0.5, 1, 9.9, 10, 40)] == pytest.approx([10.0, 12.5, 15.0, 59.5, 60.0, 60.0])


def test_custom_schedule_and_config_round_trip():
    s = HeavisideSchedule(beta_initial=2.0, beta_increment=0.5, beta_max=3.0, gamma_factor=2.0, steepness_max=20.0)
    assert s.beta(1) == 2.5 and s.beta(5) == 3.0
    assert s.gamma(3) == 16.0
    assert s.steepness(3) == 20.0
    assert HeavisideSchedule.from_config(s.get_config()) == s
    assert keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(s)) == s


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"beta_initial": 0.0}, "beta_initial must be > 0. Received: beta_initial=0.0"),
        ({"gamma_factor": 0.5}, "gamma_factor must be >= 1. Received: gamma_factor=0.5"),
        ({"beta_increment": -1.0}, "beta_increment must be >= 0. Received: beta_increment=-1.0"),
        ({"gamma_max": float("nan")}, "gamma_max must be a finite number. Received: gamma_max=nan"),
        ({"steepness_max": 5.0}, "steepness_max must be >= steepness_initial"),
    ],
)
def test_bad_schedule_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HeavisideSchedule(**kwargs)


def test_negative_epoch_raises():
    with pytest.raises(ValueError, match="epoch must be a number >= 0. Received: epoch=-1"):
        HeavisideSchedule().beta(-1)


def test_update_pruning_step_drives_paper_schedule_state_in_fit(digits):
    x, y, _, _ = digits
    pruned = chipnet_tf.prune_low_budget(
        residual_cnn(8), budget=0.5, budget_type="channels", schedule=HeavisideSchedule.paper()
    )
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert int(ctl.pruning_step.numpy()) == -1
    pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy")
    history = pruned.fit(
        x[:256], y[:256], batch_size=64, epochs=3, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()]
    )
    assert int(ctl.pruning_epoch.numpy()) == 3
    assert int(ctl.pruning_step.numpy()) == 12
    assert ctl.beta.numpy() == pytest.approx(1.06)
    assert ctl.gamma.numpy() == pytest.approx(2 * math.sqrt(2) ** 3, rel=1e-6)
    assert ctl.steepness.numpy() == pytest.approx(25.0)
    assert history.history["beta"] == pytest.approx([1.02, 1.04, 1.06])
    assert np.all(np.isfinite(history.history["budget"]))
    assert "crispness" in history.history


def test_schedule_resumes_from_backup_and_restore_listed_after_it(digits, tmp_path):
    """BackupAndRestore restores the controller after UpdatePruningStep's on_train_begin ran;
    the schedule must follow the restored epoch, not the fresh model's."""
    x, y, _, _ = digits

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    class Steepness(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.seen.append(float(chipnet_tf.prune.controllers(self.model)[0].steepness.numpy()))

    def fit(extra):
        keras.utils.set_random_seed(0)
        pruned = chipnet_tf.prune_low_budget(
            residual_cnn(8), budget=0.5, budget_type="channels", schedule=HeavisideSchedule.paper()
        )
        pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy")
        record = Steepness()
        record.seen = []
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        callbacks = [chipnet_tf.UpdatePruningStep(), record, backup, *extra]
        try:
            pruned.fit(x[:256], y[:256], batch_size=64, epochs=4, verbose=0, callbacks=callbacks)
        except KeyboardInterrupt:
            pass
        return record.seen

    assert fit([Interrupt()]) == pytest.approx([11.25, 16.25])
    assert fit([]) == pytest.approx([21.25, 26.25])  # epochs 3 and 4 at batch 1 of 4: 10 + 5 * (e + 1/4)


def test_fit_without_update_pruning_step_raises_clear_error(digits):
    x, y, _, _ = digits
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), budget=0.5, budget_type="channels")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(Exception, match="needs the chipnet_tf.UpdatePruningStep\\(\\) callback"):
        pruned.fit(x[:64], y[:64], epochs=1, verbose=0)


def test_progress_schedule_values_depend_on_progress_not_on_epochs():
    s = HeavisideSchedule.progress()
    assert s.unit == "progress" and HeavisideSchedule.paper() == HeavisideSchedule()
    # 420 steps cut as 20 x 21 or as 4 x 105: the same position at the same step.
    for step, t in ((0, 0.0), (105, 5.0), (210, 10.0), (420, 20.0), (500, 20.0)):
        assert s.position(step, 420) == pytest.approx(t)
    assert s.beta(5.0) == pytest.approx(1.1) and s.beta(20.0) == pytest.approx(1.4)
    assert s.gamma(7.5) == pytest.approx(2 * math.sqrt(2) ** 7.5)  # continuous, no staircase
    assert s.logit_scale(420) == pytest.approx(10_000 / 420)
    assert HeavisideSchedule.paper().logit_scale(420) == 1.0
    assert HeavisideSchedule.paper().position(210, 420, epoch=3, fraction=0.25) == 3.25


def test_budget_target_ramps_from_one_to_the_budget_over_the_first_half():
    s = HeavisideSchedule.progress()
    assert s.budget_ramp == 0.5 and HeavisideSchedule.paper().budget_ramp == 0.0
    # budget + (1 - budget) * (1 - progress / 0.5)^3
    for progress, target in ((0.0, 1.0), (0.1, 0.1 + 0.9 * 0.8**3), (0.25, 0.2125), (0.5, 0.1), (0.9, 0.1)):
        assert s.target(0.1, progress) == pytest.approx(target)
    assert HeavisideSchedule.paper().target(0.1, 0.0) == 0.1
    assert HeavisideSchedule.progress(budget_ramp=0.0).target(0.3, 0.0) == 0.3
    # configs saved before budget_ramp existed load without a ramp
    old = {k: v for k, v in s.get_config().items() if k != "budget_ramp"}
    assert HeavisideSchedule.from_config(old).budget_ramp == 0.0
    with pytest.raises(ValueError, match="budget_ramp needs unit='progress'"):
        HeavisideSchedule(budget_ramp=0.5)
    with pytest.raises(ValueError, match=r"budget_ramp must be in \[0, 1\]. Received: budget_ramp=1.5"):
        HeavisideSchedule.progress(budget_ramp=1.5)


def test_configs_saved_before_units_existed_load_as_the_paper_schedule():
    progress = HeavisideSchedule.progress().get_config()
    old = {k: v for k, v in progress.items() if k not in ("unit", "span", "reference_steps", "budget_ramp")}
    assert HeavisideSchedule.from_config(old) == HeavisideSchedule.paper()


@pytest.mark.parametrize("batch_size,epochs", [(32, 2), (64, 4)])
def test_progress_schedule_in_fit_is_the_same_for_two_epoch_lengths(digits, batch_size, epochs):
    """256 images: 2 epochs of 8 steps or 4 epochs of 4 steps are both a 16-step search."""
    x, y, _, _ = digits
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ctl = chipnet_tf.prune.controllers(self.model)[0]
            seen.append((float(ctl.beta.numpy()), float(ctl.gamma.numpy()), float(ctl.steepness.numpy())))

    pruned = chipnet_tf.prune_low_budget(
        residual_cnn(8), budget=0.5, budget_type="channels", schedule=HeavisideSchedule.progress()
    )
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    zeta = ctl.zeta.numpy().copy()
    pruned.compile(pruning_optimizer(), "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="this search has 16 optimizer steps; it needs at least 300 for"):
        pruned.fit(
            x[:256], y[:256], batch_size=batch_size, epochs=epochs, verbose=0,
            callbacks=[chipnet_tf.UpdatePruningStep(), Record()],
        )  # fmt: skip
    assert int(ctl.total_steps.numpy()) == 16 and int(ctl.pruning_step.numpy()) == 16
    assert ctl.logit_scale.numpy() == pytest.approx(10_000 / 16)
    assert ctl.zeta.numpy() != pytest.approx(zeta)  # trained (scaled: gates unchanged at the start)
    # Values used at steps 0, 4, 8, 15 of 16: t = 20 * step / 16.
    expected = [
        (1 + 0.02 * t, min(256.0, 2 * math.sqrt(2) ** t), min(60.0, 10 + 5 * t)) for t in (0.0, 5.0, 10.0, 18.75)
    ]
    assert [seen[i] for i in (0, 4, 8, 15)] == [pytest.approx(e, rel=1e-5) for e in expected]


def test_set_total_steps_rescales_logits_so_no_gate_moves(tmp_path):
    pruned = chipnet_tf.prune_low_budget(
        residual_cnn(8), budget=0.5, budget_type="channels", schedule=HeavisideSchedule.progress()
    )
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    before = ctl.soft_gates()[0].numpy()
    ctl.set_total_steps(400)
    ctl.set_total_steps(1000)
    assert ctl.logit_scale.numpy() == pytest.approx(10.0)
    assert ctl.soft_gates()[0].numpy() == pytest.approx(before, rel=1e-5)
    pruned.save(tmp_path / "pruned.keras")
    loaded = chipnet_tf.prune.controllers(keras.models.load_model(tmp_path / "pruned.keras"))[0]
    assert loaded.schedule == HeavisideSchedule.progress() and int(loaded.total_steps.numpy()) == 1000
    assert loaded.soft_gates()[0].numpy() == pytest.approx(before, rel=1e-5)


def test_update_pruning_step_rejects_bad_lengths():
    with pytest.raises(ValueError, match="total_steps must be a positive integer or None. Received: total_steps=0"):
        chipnet_tf.UpdatePruningStep(total_steps=0)


def test_search_optimizer_decays_to_zero_and_spares_the_logits():
    opt = chipnet_tf.search_optimizer(total_steps=10, learning_rate=0.1, weight_decay=0.5)
    schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
    assert [float(schedule(s)) for s in (0, 5, 10)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
    zeta = tf.Variable([1.0, 1.0], name="zeta")
    kernel = tf.Variable([1.0, 1.0], name="kernel")
    opt.apply_gradients([(tf.zeros(2), zeta), (tf.zeros(2), kernel)])  # zero gradient: only the decay acts
    assert zeta.numpy() == pytest.approx([1.0, 1.0]) and kernel.numpy() == pytest.approx([0.95, 0.95])
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert again.get_config()["learning_rate"] == opt.get_config()["learning_rate"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_steps": 0}, "total_steps must be a positive integer. Received: 0"),
        ({"total_steps": 2.5}, "total_steps must be a positive integer. Received: 2.5"),
        ({"total_steps": 10, "learning_rate": 0}, "learning_rate must be a finite number > 0.0. Received"),
        ({"total_steps": 10, "weight_decay": -1}, "weight_decay must be a finite number >= 0.0. Received"),
    ],
)
def test_search_optimizer_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        chipnet_tf.search_optimizer(**kwargs)
