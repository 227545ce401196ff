"""Each budget type on a toy network, computed by hand (see the comments)."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import keras
from tests.models import toy_model

L = keras.layers


def hand_counts(A, E):
    params = 3 * A + 9 * A + (A * A + A) + (3 * E + E) + (5 * (A + E) + 5)
    flops = 16 * 3 * A + 16 * 9 * A + 16 * (A * A + A) + 16 * (3 * E + E) + 5 * (A + E) + 5
    channels = A + A + A + E + 5  # writers a, dw, c, e and the (unpruned) head
    volume = 16 * (A + A + A + E) + 5
    return {"channels": channels, "volume": volume, "params": params, "flops": flops}


def test_toy_groups_are_add_coupled_and_depthwise_joined():
    analysis = chipnet_tf.analyze(toy_model())
    assert [(g.name, g.size) for g in analysis.groups] == [("a", 4), ("e", 2)]
    assert sorted(analysis.groups[0].writers) == ["a", "c", "dw"]


def test_toy_dense_counts_equal_hand_counts_and_count_params():
    model = toy_model()
    spec = chipnet_tf.analyze(model).spec
    expected = hand_counts(4, 2)
    assert expected["params"] == 111 == model.count_params()
    assert expected["flops"] == 1251
    for t in chipnet_tf.BUDGET_TYPES:
        assert spec.dense(t) == expected[t]


@pytest.mark.parametrize("A,E", [(1, 1), (2, 1), (3, 2), (4, 1)])
def test_toy_kept_counts_equal_hand_counts(A, E):
    spec = chipnet_tf.analyze(toy_model()).spec
    expected = hand_counts(A, E)
    dense = hand_counts(4, 2)
    for t in chipnet_tf.BUDGET_TYPES:
        assert spec.value([A, E], t) == expected[t]
        assert spec.fraction([A, E], t) == pytest.approx(expected[t] / dense[t])


def test_budget_report_of_wrapped_toy_with_masks_matches_hand_counts():
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.5, budget_type="params")
    masks = {"a": np.array([1, 0, 1, 0], bool), "e": np.array([0, 1], bool)}
    chipnet_tf.apply_masks(pruned, masks)
    report = chipnet_tf.budget_report(pruned)
    expected, dense = hand_counts(2, 1), hand_counts(4, 2)
    for t in chipnet_tf.BUDGET_TYPES:
        assert report.totals[t]["kept"] == expected[t]
        assert report.totals[t]["dense"] == dense[t]
    assert [(g["name"], g["kept"]) for g in report.groups] == [("a", 2), ("e", 1)]
    text = str(report)
    assert "params" in text and "0.4865" in text  # 54 / 111


def test_soft_fraction_is_differentiable_and_matches_numpy():
    import tensorflow as tf

    spec = chipnet_tf.analyze(toy_model()).spec
    counts = tf.Variable([2.5, 1.5])
    with tf.GradientTape() as tape:
        v = spec.tf_fraction(counts, "flops")
    grad = tape.gradient(v, counts).numpy()
    assert v.numpy() == pytest.approx(spec.fraction([2.5, 1.5], "flops"), rel=1e-6)
    # d flops / dA = 16*3 + 16*9 + 16*(2A + 1) + 5 at A = 2.5
    assert grad[0] == pytest.approx((48 + 144 + 16 * 6 + 5) / 1251, rel=1e-5)
    assert grad[1] == pytest.approx((64 + 5) / 1251, rel=1e-5)


def test_cost_spec_config_round_trip():
    spec = chipnet_tf.analyze(toy_model()).spec
    again = chipnet_tf.CostSpec.from_config(spec.get_config())
    for t in chipnet_tf.BUDGET_TYPES:
        assert again.value([3, 1], t) == spec.value([3, 1], t)


def test_builder_deduplicates_forms():
    b = CostSpecBuilder(["g"], [3])
    assert b.form(0, {0: 1}) == b.form(0, {0: 1.0})
    assert b.form(1, {}) == b.one


def test_unknown_budget_type_raises():
    with pytest.raises(
        ValueError, match="Unknown budget_type='flop'. Accepted: 'channels', 'volume', 'params', 'flops'"
    ):
        chipnet_tf.prune_low_budget(toy_model(), budget=0.5, budget_type="flop")
