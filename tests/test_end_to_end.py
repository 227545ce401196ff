"""End to end on digits: ChipNet at a FLOPs budget of 0.3 with plain compile/fit."""

import glob

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from tests.models import pruning_optimizer

BUDGET = 0.3


@pytest.fixture(scope="module")
def pruned_run(trained_cnn, digits, tmp_path_factory):
    x, y, xt, yt = digits
    keras.utils.set_random_seed(0)
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=BUDGET, budget_type="flops")
    pruned.compile(pruning_optimizer(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    log_dir = str(tmp_path_factory.mktemp("tb"))
    history = pruned.fit(
        x,
        y,
        batch_size=32,
        epochs=20,
        verbose=0,
        callbacks=[chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries(log_dir)],
    )
    return pruned, history.history, log_dir


@pytest.mark.slow
def test_soft_budget_converges_near_target(pruned_run):
    _, hist, _ = pruned_run
    budget = hist["budget"]
    assert budget[0] > 0.5  # starts far above the target
    assert abs(budget[-1] - BUDGET) < 0.1
    assert all(np.isfinite(hist["loss"]))


@pytest.mark.slow
def test_crispness_falls_from_its_peak(pruned_run):
    _, hist, _ = pruned_run
    crisp = hist["crispness"]
    peak = int(np.argmax(crisp))
    assert peak < len(crisp) - 1
    assert crisp[-1] < 0.8 * crisp[peak]


@pytest.mark.slow
def test_hard_masks_meet_flops_budget_exactly(pruned_run, digits):
    pruned, _, _ = pruned_run
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(pruned, masks=masks)
    flops = report.totals["flops"]
    assert flops["fraction"] <= BUDGET
    # the largest threshold network: adding the best pruned channel exceeds the budget
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    zeta = dict(zip(ctl.group_names, np.split(ctl.zeta.numpy(), np.cumsum(ctl.sizes)[:-1])))
    best = max((zeta[n][i], n) for n, m in masks.items() for i in np.flatnonzero(~m))
    counts = np.array([masks[n].sum() for n in ctl.group_names], float)
    counts[ctl.group_names.index(best[1])] += 1
    assert ctl.spec.fraction(counts, "flops") > BUDGET
    # fine-tuning the hard network with frozen masks recovers digits accuracy
    x, y, xt, yt = digits
    chipnet_tf.apply_masks(pruned, masks)
    zeta_before = ctl.zeta.numpy().copy()
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    result = pruned.evaluate(xt, yt, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.9
    assert result["budget"] == pytest.approx(flops["fraction"], rel=1e-5)
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
