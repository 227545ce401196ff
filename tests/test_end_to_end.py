"""End to end on digits: ChipNet at a channels budget of 0.3 with plain compile/fit and the
library's defaults (progress schedule, budget target ramped over the first half, gamma held,
hard gates leaking 1% of closed channels, relative logits), AdamW(1e-3) as documented."""

import glob

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from chipnet_tf.search.callbacks import recalibrate_batch_norm, restore_batch_norm
from tests.models import pruning_optimizer

BUDGET = 0.3
BUDGET_TYPE = "channels"
EPOCHS = 20


@pytest.fixture(scope="module")
def pruned_run(trained_cnn, digits, tmp_path_factory):
    x, y, xt, yt = digits
    keras.utils.set_random_seed(0)
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=BUDGET, budget_type=BUDGET_TYPE)
    pruned.compile(pruning_optimizer(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    log_dir = str(tmp_path_factory.mktemp("tb"))
    history = pruned.fit(
        x,
        y,
        batch_size=32,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries(log_dir)],
    )
    return pruned, history.history, log_dir


@pytest.mark.slow
def test_soft_budget_converges_to_the_target(pruned_run):
    """880 steps (44 per epoch): the soft budget follows the ramped target down and ends
    within 0.05 of the budget."""
    _, hist, _ = pruned_run
    budget = hist["budget"]
    assert budget[0] > 0.8  # starts near the dense network
    half = EPOCHS // 2
    assert budget[half - 1] == pytest.approx(BUDGET, abs=0.1)  # the ramp ends at half the search
    assert abs(budget[-1] - BUDGET) <= 0.02  # measured: 0.302
    assert all(np.isfinite(hist["loss"]))
    assert hist["accuracy"][-1] > 0.9  # the hard network trained during the search


@pytest.mark.slow
def test_the_searched_hard_network_is_good_before_fine_tuning(pruned_run, digits):
    """The search trains the network it cuts (hard gates, gates movable to the end, closed
    channels leaking into the task loss): its hard masks work before any fine-tuning."""
    pruned, hist, _ = pruned_run
    assert hist["crispness"] and all(np.isfinite(hist["crispness"]))  # reported, weight 0 by default
    x, _, xt, yt = digits
    chipnet_tf.apply_masks(pruned, chipnet_tf.get_masks(pruned))
    saved = recalibrate_batch_norm(pruned, x[:640], steps=10)  # as BestHardMasks judges it
    result = pruned.evaluate(xt, yt, verbose=0, return_dict=True)
    restore_batch_norm(saved)
    chipnet_tf.apply_masks(pruned, None)
    assert result["accuracy"] > 0.9


@pytest.mark.slow
def test_hard_masks_meet_the_budget_exactly(pruned_run, digits):
    pruned, _, _ = pruned_run
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(pruned, masks=masks)
    achieved = report.totals[BUDGET_TYPE]
    assert achieved["fraction"] <= BUDGET
    # the largest threshold network: adding the best pruned channel exceeds the budget
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    scores = ctl.scores()  # what the cut ranks: the (relative) logits
    best = max((scores[n][i], n) for n, m in masks.items() for i in np.flatnonzero(~m))
    counts = np.array([masks[n].sum() for n in ctl.group_names], float)
    counts[ctl.group_names.index(best[1])] += 1
    assert ctl.spec.fraction(counts, BUDGET_TYPE) > BUDGET
    # fine-tuning the hard network with frozen masks recovers digits accuracy
    x, y, xt, yt = digits
    chipnet_tf.apply_masks(pruned, masks)
    zeta_before = ctl.zeta.numpy().copy()
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    result = pruned.evaluate(xt, yt, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.9
    assert result["budget"] == pytest.approx(achieved["fraction"], rel=1e-5)
    assert result["crispness"] == 0.0
    np.testing.assert_array_equal(ctl.zeta.numpy(), zeta_before)  # masks frozen
    assert chipnet_tf.get_masks(pruned).keys() == masks.keys()
    chipnet_tf.apply_masks(pruned, None)


@pytest.mark.slow
def test_tensorboard_event_files_hold_chipnet_scalars(pruned_run):
    pruned, _, log_dir = pruned_run
    files = glob.glob(f"{log_dir}/events.out.tfevents.*")
    assert files
    tags = {}
    for record in tf.compat.v1.train.summary_iterator(files[0]):
        for v in record.summary.value:
            tags.setdefault(v.tag, []).append(record.step)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    for tag in ("chipnet/budget", "chipnet/hard_budget", "chipnet/crispness", "chipnet/beta", "chipnet/gamma"):
        assert tags[tag] == list(range(1, 21))
    for name in ctl.group_names:
        assert len(tags[f"chipnet_groups/{name}"]) == 20
