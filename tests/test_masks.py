import itertools
import json
import re

import numpy as np
import pytest

import chipnet_tf
from tests.models import toy_model


def _spec():
    return chipnet_tf.analyze(toy_model()).spec


def test_select_masks_channels_is_sorted_gate_cut():
    spec = _spec()  # channels = 3A + E + 5 of 19
    scores = {"a": np.array([0.9, 0.1, 0.5, 0.3]), "e": np.array([0.2, 0.8])}
    # budget 12/19: mandatory a0, e1 (cost 3+1+5 = 9); then a2 (+3 -> 12) fits, a3 would give 15.
    masks = chipnet_tf.select_masks(spec, scores, 12 / 19, "channels")
    assert masks["a"].tolist() == [True, False, True, False]
    assert masks["e"].tolist() == [False, True]


@pytest.mark.parametrize("budget_type", chipnet_tf.BUDGET_TYPES)
@pytest.mark.parametrize("budget", [0.05, 0.3, 0.5, 0.77, 1.0])
def test_select_masks_gives_largest_prefix_network_within_budget(budget_type, budget):
    spec = _spec()
    rng = np.random.default_rng(int(budget * 100))
    scores = {"a": rng.normal(size=4), "e": rng.normal(size=2)}
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masks = chipnet_tf.select_masks(spec, scores, budget, budget_type)
    counts = [masks["a"].sum(), masks["e"].sum()]
    assert min(counts) >= 1
    value = spec.fraction(counts, budget_type)
    minimal = spec.fraction([1, 1], budget_type)
    if minimal <= budget:
        assert value <= budget + 1e-12
        # Adding the next-ranked channel would exceed the budget (or all are kept).
        flat = sorted(
            [(s, g, i) for g, name in enumerate(["a", "e"]) for i, s in enumerate(scores[name])], reverse=True
        )
        nxt = [(g, i) for s, g, i in flat if not masks[["a", "e"][g]][i]]
        if nxt:
            g, _ = nxt[0]
            more = list(counts)
            more[g] += 1
            assert spec.fraction(more, budget_type) > budget
    else:
        assert counts == [1, 1]


def test_select_masks_brute_force_threshold_networks_flops():
    spec = _spec()
    scores = {"a": np.array([0.4, 0.9, 0.2, 0.7]), "e": np.array([0.6, 0.1])}
    flat = sorted([(s, n, i) for n in scores for i, s in enumerate(scores[n])], reverse=True)
    for budget in np.linspace(0.25, 1.0, 16):  # 0.2422 is the one-channel-per-group minimum
        best = None
        for k in range(len(flat) + 1):  # every threshold network, plus the per-group minimum
            keep = {n: np.zeros(len(scores[n]), bool) for n in scores}
            for n in scores:
                keep[n][np.argmax(scores[n])] = True
            for _, n, i in flat[:k]:
                keep[n][i] = True
            v = spec.fraction([keep["a"].sum(), keep["e"].sum()], "flops")
            if v <= budget + 1e-12:
                best = v
        masks = chipnet_tf.select_masks(spec, scores, float(budget), "flops")
        assert spec.fraction([masks["a"].sum(), masks["e"].sum()], "flops") == pytest.approx(best)


def test_budget_below_minimum_warns_and_keeps_one_per_group():
    spec = _spec()
    with pytest.warns(UserWarning, match="below what keeping one channel per group costs"):
        masks = chipnet_tf.select_masks(spec, {"a": np.zeros(4), "e": np.zeros(2)}, 0.01, "params")
    assert [m.sum() for m in masks.values()] == [1, 1]


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_masks_round_trip(tmp_path, suffix):
    masks = {"conv1/conv": np.array([True, False, True]), "b": np.array([False, True])}
    path = tmp_path / f"m{suffix}"
    chipnet_tf.save_masks(path, masks)
    loaded = chipnet_tf.load_masks(path)
    assert list(loaded) == list(masks)
    for k in masks:
        assert loaded[k].dtype == bool and loaded[k].tolist() == masks[k].tolist()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    if suffix == ".json":
        assert json.loads(path.read_text())["format"] == "chipnet_tf.search.masks"


def test_load_masks_rejects_pickles_and_garbage(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, names=np.array([{"x": 1}], dtype=object), mask_0=np.ones(2))
    with pytest.raises(ValueError, match="is not a readable chipnet_tf masks file"):
        chipnet_tf.load_masks(bad)
    garbage = tmp_path / "g.json"
    garbage.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a readable chipnet_tf masks file"):
        chipnet_tf.load_masks(garbage)
    with pytest.raises(FileNotFoundError, match="No masks file at"):
        chipnet_tf.load_masks(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="save_masks writes .npz or .json files. Received: path="):
        chipnet_tf.save_masks(tmp_path / "m.pkl", {"a": np.ones(2, bool)})


def test_load_masks_empty_truncated_or_foreign_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.npz"
    chipnet_tf.save_masks(good, {"a": np.ones(4, bool), "e": np.ones(2, bool)})
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:100])
    (tmp_path / "empty.json").write_text("")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    cases = {
        "empty.npz": "is empty (0 bytes)",
        "empty.json": "is empty (0 bytes)",
        "truncated.npz": "is not a readable chipnet_tf masks file",
        "foreign.npz": "is not a readable chipnet_tf masks file",
    }
    for name, text in cases.items():
        with pytest.raises(ValueError, match=re.escape(text)) as info:
            chipnet_tf.load_masks(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)


def test_budget_report_validates_masks_like_apply_masks_and_strip_pruning():
    """One validation path: an unknown group is an error for a wrapped model too."""
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.5, budget_type="flops")
    masks = {"a": np.ones(4, bool), "e": np.ones(2, bool), "no_such_group": np.ones(2, bool)}
    for call in (
        chipnet_tf.apply_masks,
        lambda model, m: chipnet_tf.strip_pruning(model, masks=m),
        lambda model, m: chipnet_tf.budget_report(model, masks=m),
    ):
        with pytest.raises(ValueError, match="no_such_group"):  # strip.py words it its own way
            call(pruned, masks)
    with pytest.raises(ValueError, match=r"\(masks of another model\?\): missing \['a', 'e'\], unknown \['x'\]"):
        chipnet_tf.budget_report(pruned, masks={"x": np.ones(3, bool)})
    del masks["no_such_group"]
    assert chipnet_tf.budget_report(pruned, masks=masks).totals["channels"]["fraction"] == 1.0


def test_apply_masks_validates_groups_and_shapes():
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.5, budget_type="flops")
    with pytest.raises(ValueError, match=r"missing \['e'\], unknown \['zz'\]"):
        chipnet_tf.apply_masks(pruned, {"a": np.ones(4, bool), "zz": np.ones(2, bool)})
    with pytest.raises(ValueError, match="Mask of group 'e' has shape \\(3,\\); the model has 2 channels there"):
        chipnet_tf.apply_masks(pruned, {"a": np.ones(4, bool), "e": np.ones(3, bool)})
    # An explicit mask may remove a whole group (strip_pruning then removes what it feeds);
    # check_masks itself still refuses it unless asked, and get_masks never makes one.
    chipnet_tf.apply_masks(pruned, {"a": np.ones(4, bool), "e": np.zeros(2, bool)})
    with pytest.raises(ValueError, match="Mask of group 'e' removes every channel"):
        chipnet_tf.search.masks.check_masks({"e": np.zeros(2, bool)}, ["e"], [2])
    with pytest.raises(ValueError, match="is not pruned by chipnet_tf"):
        chipnet_tf.get_masks(toy_model())


def test_apply_all_ones_masks_reproduces_dense_and_release_restores_soft():
    dense = toy_model()
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 3)).astype("float32")
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
    soft = pruned.predict(x, verbose=0)
    chipnet_tf.apply_masks(pruned, {"a": np.ones(4, bool), "e": np.ones(2, bool)})
    np.testing.assert_allclose(pruned.predict(x, verbose=0), dense.predict(x, verbose=0), atol=1e-6)
    chipnet_tf.apply_masks(pruned, None)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), soft, atol=1e-6)


def test_get_masks_meets_budget_for_every_type():
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.6, budget_type="flops")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.linspace(-1, 1, ctl.total).astype("float32"))
    for t in chipnet_tf.BUDGET_TYPES:
        masks = chipnet_tf.get_masks(pruned, budget_type=t)
        report = chipnet_tf.budget_report(pruned, masks=masks)
        assert report.totals[t]["fraction"] <= 0.6
    assert list(itertools.chain(*[m.tolist() for m in chipnet_tf.get_masks(pruned).values()])).count(True) >= 2


@pytest.mark.parametrize("budget_type", ["channels", "flops", "params"])
@pytest.mark.parametrize("budget", [0.5, 0.25])
def test_round_to_keeps_multiples_and_is_the_largest_such_network(budget_type, budget):
    from chipnet_tf import architectures

    model = architectures.resnet50_cifar(width=0.25)  # groups of 16..512 channels, stem 16
    spec = chipnet_tf.analyze(model).spec
    rng = np.random.default_rng(0)
    scores = {n: rng.normal(size=s) for n, s in zip(spec.group_names, spec.group_sizes)}
    masks = chipnet_tf.select_masks(spec, scores, budget, budget_type, round_to=8)
    counts = np.array([masks[n].sum() for n in spec.group_names], float)
    for n, size, c in zip(spec.group_names, spec.group_sizes, counts):
        assert c % 8 == 0 or c == size, (n, size, c)
        # the kept channels are the group's best ones
        assert scores[n][masks[n]].min() >= scores[n][~masks[n]].max() if c < size else True
    assert spec.fraction(counts, budget_type) <= budget
    # Adding the best block that is left goes over the budget.
    best = None
    for g, (n, size) in enumerate(zip(spec.group_names, spec.group_sizes)):
        if counts[g] < size:
            left = np.sort(scores[n][~masks[n]])[::-1][:8]
            if best is None or left.min() > best[1]:
                best = (g, left.min(), len(left))
    more = counts.copy()
    more[best[0]] += best[2]
    assert spec.fraction(more, budget_type) > budget
    plain = chipnet_tf.select_masks(spec, scores, budget, budget_type)
    assert spec.fraction(np.array([plain[n].sum() for n in spec.group_names], float), budget_type) <= budget


def test_round_to_rejects_bad_values():
    spec = chipnet_tf.analyze(toy_model()).spec
    scores = {n: np.ones(s) for n, s in zip(spec.group_names, spec.group_sizes)}
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="round_to must be a positive integer"):
            chipnet_tf.select_masks(spec, scores, 0.5, "channels", round_to=bad)
