"""The benchmark suite: `make bench-quick` runs end to end and writes the expected schema.

The quick run's numbers mean nothing (one seed, one or two epochs, tiny latency models), so
this checks structure - and the invariants that hold for any run: every structured mask
meets its budget, and the stripped model's params/FLOPs equal the prediction and the
TensorFlow profiler's independent count.
"""

import json

import numpy as np
import pytest

from benchmarks.accuracy import __main__ as accuracy_cli
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import protocol
from benchmarks.accuracy.methods import METHODS, STRUCTURED, bn_gamma_scores
from benchmarks.accuracy.run import RESULTS as ACCURACY_RESULTS
from benchmarks.accuracy.tasks import _task_file, run_tasks
from benchmarks.latency import __main__ as latency_cli
from benchmarks.latency.variants import pad_to_tile
from benchmarks.overhead.stats import paired_comparison
from benchmarks.report.accuracy import accuracy_section, accuracy_sections
from benchmarks.report.accuracy_checks import convergence_line, grid_cells
from benchmarks.report.claims import (
    lowest_run_line,
    summary_section,
    target_failures,
    target_line,
    verdict,
    verdict_section,
    verdicts,
)
from benchmarks.report.page import write_results
from benchmarks.report.speed import zoo_latency_section
from chipnet_tf.compat import keras
from chipnet_tf.io import write_json
from chipnet_tf.latency.timing import channel_step
from tests import bench_quick

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_suite(request):
    """The `make bench-quick` run conftest.py started in the background at collection."""
    run = request.config.stash.get(bench_quick.KEY, None)
    if run is None:  # collected without the hook (e.g. another rootdir): start it now
        run = bench_quick.start()
        request.addfinalizer(run.cleanup)
    out, returncode, output = run.result()
    assert returncode == 0, output[-6000:]
    return out, output


def _load(out, name):
    with open(out / f"{name}.json") as f:
        return json.load(f)


STRUCTURED_KEYS = {
    "method",
    "budget_type",
    "budget",
    "seed",
    "target",
    "achieved",
    "achieved_all",
    "within_budget",
    "params",
    "params_fraction",
    "params_predicted",
    "flops",
    "flops_fraction",
    "flops_profiler",
    "kept_per_group",
    "groups_with_one_channel",
    "minimal_network",
    "accuracy_before_finetune",
    "accuracy",
    "finite",
    "final_train_loss",
    "seconds",
    "search_seconds",
    "finetune_seconds",
    "search_epochs",
    "finetune_epochs",
    "train_epochs",
    "total_epochs",
}


@pytest.mark.slow
def test_bench_quick_writes_every_result_file_and_the_page(quick_suite):
    out, stdout = quick_suite
    for name in ("accuracy", "overhead", "strip_speed", "latency"):
        assert (out / f"{name}.json").is_file(), name
    for png in ("accuracy_vs_budget.png", "latency_vs_flops.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, png
    page = (out / "RESULTS.md").read_text()
    for heading in (
        "## Where ChipNet wins, ties or loses",
        "## Accuracy at a budget — digits",
        "## Budget exactness",
        "## Stability at the most extreme budget (0.05) — digits",
        "## Mask transfer",
        "## Speed: LiteRT latency",
        "## Speed: training-step overhead",
        "## Speed: wrap, mask and strip",
    ):
        assert heading in page, heading
    assert "accuracy_vs_budget.png" in page and "latency_vs_flops.png" in page
    assert "Quick run" in page
    assert not list(out.glob("*.tmp"))
    assert not (out / ".work").exists()  # the accuracy benchmark's resume directory is gone


@pytest.mark.slow
def test_fashion_results_get_their_own_sections(quick_suite, tmp_path):
    out, _ = quick_suite
    fashion = _load(out, "accuracy")
    fashion["config"]["dataset"] = acc_data.describe_split("fashion_mnist")
    (tmp_path / "accuracy_fashion_mnist.json").write_text(json.dumps(fashion))
    page = write_results(tmp_path, tmp_path / "RESULTS.md")
    assert "## Accuracy at a budget — Fashion-MNIST" in page and "## Summary — Fashion-MNIST" in page
    assert "— digits" not in page  # no digits results in this directory
    assert (tmp_path / "accuracy_vs_budget_fashion_mnist.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_bench_quick_accuracy_schema_and_exactness(quick_suite):
    out, _ = quick_suite
    result = _load(out, "accuracy")
    assert set(result) >= {"benchmark", "config", "seeds", "transfer", "summary", "environment", "total_runtime_s"}
    cfg = result["config"]
    assert cfg["quick"] is True and cfg["budgets"] == [0.05] and cfg["budget_types"] == ["flops", "channels"]
    (seed,) = result["seeds"]
    assert set(seed["dense"]) >= {"accuracy", "params", "flops", "flops_profiler"}
    assert seed["dense"]["params"] == 221_914 and seed["dense"]["flops"] == seed["dense"]["flops_profiler"]
    structured = [r for r in seed["runs"] if r["method"] != "tfmot"]
    tfmot = [r for r in seed["runs"] if r["method"] == "tfmot"]
    # 2 budget types x 1 budget x every structured method, and tfmot once per budget.
    assert sorted((r["budget_type"], r["budget"], r["method"]) for r in structured) == sorted(
        (t, 0.05, m) for t in ("flops", "channels") for m in STRUCTURED
    )
    assert [r["budget"] for r in tfmot] == [0.05]
    for r in structured:
        assert set(r) >= STRUCTURED_KEYS, set(STRUCTURED_KEYS) - set(r)
        assert r["within_budget"] and r["achieved"] <= r["budget"] + 1e-9, r
        assert r["params"] == r["params_predicted"], r
        assert r["flops"] == r["flops_profiler"], r
        assert 0.0 <= r["accuracy"] <= 1.0 and r["finite"] is True
    chipnet = [r for r in structured if r["method"] == "chipnet"]
    # --quick: T = 3 epochs, ChipNet searches round(T / 6) -> 1 of them (at least one)
    for r in chipnet:
        assert r["search_epochs"] == 1 and len(r["soft_budget_per_epoch"]) == 1 and r["best_epoch"] == 1, r
    for r in tfmot:
        # unstructured: the dense shape stays, `budget` of the Conv2D/Dense kernels are non-zero
        assert r["params"] == 221_914 and r["flops_fraction"] == 1.0
        assert abs(r["nonzero_kernel_fraction"] - r["budget"]) < 0.005, r
        assert r["nonzero_kernel_fraction"] < r["nonzero_params_fraction"] < 1.0
    summary = result["summary"]
    runs = 2 * len(STRUCTURED)
    assert summary["exactness"]["runs"] == runs
    assert summary["exactness"]["within_budget"] == runs
    assert summary["exactness"]["params_equal_prediction"] == runs
    assert summary["exactness"]["flops_equal_profiler"] == runs
    assert summary["stability"]["budget"] == 0.05
    assert set(summary["stability"]["by_type"]) == {"flops", "channels"}
    for by_method in summary["stability"]["by_type"].values():
        assert set(by_method) == set(STRUCTURED)
        assert all(s["all_finite"] and s["accuracy"]["n"] == 1 for s in by_method.values())
    assert len(summary["table"]) == 2 * len(STRUCTURED) + 1
    (transfer,) = result["transfer"]
    assert sorted(r["method"] for r in transfer["runs"]) == ["direct", "direct_masks", "random", "transferred"]
    by_variant = {r["method"]: r for r in transfer["runs"]}
    # the same masks stripped from the pruned and from the dense model: the same small network
    assert by_variant["direct_masks"]["params"] == by_variant["direct"]["params"]
    assert by_variant["direct_masks"]["flops"] == by_variant["direct"]["flops_profiler"]
    for name in ("transferred", "random"):
        assert 0.0 <= by_variant[name]["mask_overlap_with_direct"] <= 1.0
        assert by_variant[name]["within_budget"]
    assert len(verdicts(result)) == 2 * (len(METHODS) - 2)  # every method but ChipNet and its variant


@pytest.mark.slow
def test_bench_quick_every_method_trains_the_same_epochs(quick_suite):
    """Protocol `equal`: after the shared dense pretraining every method trains T epochs (scratch
    trains pretraining + T from a random start), and records its search and fine-tuning seconds."""
    out, _ = quick_suite
    result = _load(out, "accuracy")
    cfg = result["config"]
    assert cfg["protocol"] == "equal" and 0 < cfg["search_fraction"] < 1
    t = cfg["prune_epochs"] + cfg["finetune_epochs"]
    (seed,) = result["seeds"]
    assert {r["method"] for r in seed["runs"]} == set(METHODS)
    for r in seed["runs"]:
        assert r["search_epochs"] + r["finetune_epochs"] == r["train_epochs"], r["method"]
        assert r["total_epochs"] == cfg["pretrain_epochs"] + t, r["method"]
        assert r["train_epochs"] == (cfg["pretrain_epochs"] + t if r["method"] == "scratch" else t), r["method"]
        assert r["search_seconds"] >= 0 and r["finetune_seconds"] > 0, r["method"]
    assert set(result["summary"]["cost"]) == set(METHODS)
    ours = {r["method"]: r for r in seed["runs"] if r["method"].startswith("chipnet")}
    assert ours["chipnet"]["weights_from"] == "dense" and ours["chipnet_search_weights"]["weights_from"] == "search"
    assert ours["chipnet"]["kept_per_group"] == ours["chipnet_search_weights"]["kept_per_group"]
    assert 0 < ours["chipnet"]["final_soft_budget"] < 1
    for r in seed["runs"]:
        if r["method"] == "scratch":  # ChipNet's widths, fresh weights
            chipnet = next(c for c in seed["runs"] if c["method"] == "chipnet" and c["budget_type"] == r["budget_type"])
            assert r["kept_per_group"] == chipnet["kept_per_group"]
            assert r["kernels_equal_to_pruned_dense"] == 0
        if r["method"] == "taylor":
            steps = r["taylor_steps"]
            assert [s["target"] for s in steps] == sorted((s["target"] for s in steps), reverse=True)
            assert steps[-1]["target"] == pytest.approx(r["budget"]) and steps[-1]["achieved"] == r["achieved"]
            assert r["within_budget"]
    slimming = seed["slimming"]
    assert slimming["split"] == "val" and slimming["lambda"] in slimming["lambda_grid"]
    chosen = next(t for t in slimming["tried"] if t["lambda"] == slimming["lambda"])
    assert chosen["val_accuracy"] == slimming["val_accuracy"]
    page = (out / "RESULTS.md").read_text()
    assert "**Protocol `equal`**" in page and "| method | epochs (search + fine-tuning) |" in page


@pytest.mark.slow
def test_bench_quick_speed_results_schema(quick_suite):
    out, _ = quick_suite
    latency = _load(out, "latency")
    assert set(latency["results"]) == {"resnet50", "mobilenet_v2"}
    for model in latency["results"].values():
        names = set(model["variants"])
        assert {"dense", "chipnet b=0.1", "chipnet b=0.1 r8", "chipnet b=0.1 r16", "tfmot b=0.1"} <= names
        for v in model["variants"].values():
            assert v["median_ms"] > 0 and v["ratio_vs_dense"] > 0
    assert set(latency["target"]) >= {"rule", "met"}
    probe = latency["tile_probe"]
    for curve in probe["curves"].values():
        assert curve["widths"] == list(range(1, 49)) and len(curve["median_us"]) == 48
        assert all(t > 0 for t in curve["median_us"])
    assert probe["models_with_xnnpack_delegate"] == probe["models"] == 96
    tile = probe["tile"]
    for model in latency["results"].values():
        recs = model["variants"]
        controls = [v for v in recs.values() if v["kind"] == "control"]
        budgets = {v["budget"] for v in recs.values() if v["kind"] == "chipnet"}
        # one control per budget: the round_to=1 masks widened to the tile (none without a tile)
        assert sorted(v["budget"] for v in controls) == (sorted(budgets) if tile and tile > 1 else [])
        for control in controls:
            r1 = recs[control["padded_from"]]
            assert r1["round_to"] == 1 and r1["budget"] == control["budget"]
            assert control["flops"] >= r1["flops"] and control["tile"] == tile
            for group, kept in control["channels_kept"].items():
                size = control["group_sizes"][group]
                assert r1["channels_kept"][group] <= kept <= size
                assert kept % tile == 0 or kept == size
                assert kept - r1["channels_kept"][group] < tile
    overhead = _load(out, "overhead")
    assert set(overhead["ratio_vs_plain"]) == {"plain", "chipnet", "tfmot"}
    assert set(overhead["target"]) >= {"rule", "met", "chipnet_vs_tfmot"}
    assert overhead["target"]["chipnet_vs_tfmot"]["rounds"] == overhead["config"]["rounds"]
    strip = _load(out, "strip_speed")
    assert set(strip["timing"]) >= {"wrap", "masks", "strip", "strip_dense"}
    assert "MobileNetV2" in strip["config"]["model"]


def test_finished_tasks_are_not_run_again(tmp_path):
    """A restarted accuracy benchmark loads finished tasks' results instead of rerunning them."""
    args = accuracy_cli.parse_args(["--quick", "--output", str(tmp_path / "accuracy.json")])
    key = ("tfmot", 0, 0.05)
    write_json(_task_file(str(tmp_path), key), [{"method": "tfmot", "accuracy": 0.5}])
    messages = []
    results = run_tasks([[key]], args, str(tmp_path), messages.append)
    assert results == {key: [{"method": "tfmot", "accuracy": 0.5}]}
    assert messages == ["resuming: 1 of 1 tasks already done"]


def test_accuracy_benchmark_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        accuracy_cli.parse_args(["--budgets", "0.5", "1.5"])
    assert "budgets must be in (0, 1]. Received: 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        accuracy_cli.parse_args(["--finetune_epochs", "0"])
    assert "--finetune_epochs must be >= 1. Received: 0" in capsys.readouterr().err


def test_accuracy_benchmark_defaults_follow_the_dataset():
    digits = accuracy_cli.parse_args([])
    assert (digits.pretrain_epochs, digits.prune_epochs, digits.finetune_epochs) == (30, 20, 20)
    assert digits.transfer_budgets == [0.25, 0.05] and digits.output == ACCURACY_RESULTS
    assert digits.search == "default"
    fashion = accuracy_cli.parse_args(["--dataset", "fashion_mnist", "--search", "paper", "--quick"])
    assert (fashion.pretrain_epochs, fashion.prune_epochs, fashion.finetune_epochs) == (2, 2, 1)
    assert fashion.transfer_budgets == [] and fashion.output.name == "accuracy_fashion_mnist.json"
    full = accuracy_cli.parse_args(["--dataset", "fashion_mnist", "--prune_epochs", "6"])
    assert (full.pretrain_epochs, full.prune_epochs, full.finetune_epochs) == (15, 6, 2)
    assert digits.protocol == "equal" and digits.search_fraction == fashion.search_fraction == 1 / 6
    assert protocol.search_epochs(digits) == 7 and protocol.search_epochs(full) == 1  # round(T / 6)
    assert digits.latency_budgets == [0.25, 0.1] and fashion.latency_budgets == []  # --quick: none
    with pytest.raises(SystemExit):
        accuracy_cli.parse_args(["--search_fraction", "1.0"])


@pytest.mark.parametrize("fraction", [None, 0.25, 0.9])
def test_equal_protocol_gives_every_method_the_same_epochs(fraction):
    argv = ["--dataset", "fashion_mnist"] + ([] if fraction is None else ["--search_fraction", str(fraction)])
    args = accuracy_cli.parse_args(argv)
    plan = protocol.plan(args)
    assert set(plan) == set(METHODS)
    t = args.prune_epochs + args.finetune_epochs
    for method, (search, finetune) in plan.items():
        assert finetune >= 1
        assert search + finetune == (args.pretrain_epochs + t if method == "scratch" else t), method
    assert plan["chipnet"][0] == (1 if fraction is None else {0.25: 2, 0.9: 5}[fraction])
    assert plan["chipnet_search_weights"] == plan["chipnet"]
    assert plan["slimming"] == [4, 2] and plan["l1"] == [0, 6] and plan["taylor"] == [3, 3]
    old = accuracy_cli.parse_args(["--dataset", "fashion_mnist", "--protocol", "search_extra"])
    assert protocol.plan(old)["chipnet"] == [4, 2] and protocol.plan(old)["l1"] == [0, 2]


def _small_preresnet():
    import chipnet_tf
    from chipnet_tf import architectures

    keras.utils.set_random_seed(0)
    model = architectures.preresnet(depth=11, input_shape=(8, 8, 1))
    return model, chipnet_tf.analyze(model, warn=False)


@pytest.mark.parametrize("budget_type, budget", [("channels", 0.3), ("flops", 0.2), ("params", 0.1)])
def test_uniform_width_keeps_one_fraction_per_group_and_meets_the_budget(budget_type, budget):
    import chipnet_tf
    from benchmarks.accuracy.baselines import uniform_scores
    from benchmarks.latency.models import channel_scores

    model, analysis = _small_preresnet()
    spec = analysis.spec
    within = channel_scores(model, analysis, 0)[0]
    masks = chipnet_tf.select_masks(spec, uniform_scores(analysis, within), budget, budget_type)
    kept = np.array([masks[n].sum() for n in spec.group_names], dtype=float)
    sizes = np.array(spec.group_sizes, dtype=float)
    # one fraction t for every group, within one channel: max((k - 1) / n) <= min((k + 1) / n)
    assert ((kept - 1) / sizes).max() <= ((kept + 1) / sizes).min() + 1e-12, kept / sizes
    achieved = spec.fraction(kept, budget_type)
    assert achieved <= budget * (1 + 1e-9)
    # exact as the shared selection is: one more channel in the next group in line would overshoot
    nxt = np.argmin((kept + 0.5) / sizes + (kept >= sizes))
    grown = kept.copy()
    grown[nxt] += 1
    assert kept[nxt] >= sizes[nxt] or spec.fraction(grown, budget_type) > budget
    for name in spec.group_names:  # within a group, the channels with the largest L1 norms
        m = masks[name]
        assert within[name][m].min() >= within[name][~m].max() if (~m).any() else True


def test_scratch_reinitialises_the_stripped_network():
    import chipnet_tf
    from benchmarks.accuracy.methods import _kernels_equal, reinitialise

    model, analysis = _small_preresnet()
    masks = chipnet_tf.select_masks(analysis.spec, random_scores_for(analysis), 0.5, "channels")
    small = chipnet_tf.strip_pruning(model, masks=masks)
    fresh = reinitialise(small, seed=1)
    assert [w.shape for w in fresh.weights] == [w.shape for w in small.weights]
    assert _kernels_equal(fresh, small) == 0 and _kernels_equal(small, small) > 0
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    assert not np.allclose(fresh(x).numpy(), small(x).numpy())


def random_scores_for(analysis):
    from benchmarks.accuracy.methods import random_scores

    return random_scores(analysis, 0)


def test_taylor_masks_meet_the_budget_and_zero_the_pruned_channels():
    """Iterative Taylor pruning on the wrapped model: the targets fall geometrically to the budget,
    the final masks meet it, and the wrapped model under them computes the stripped model."""
    import chipnet_tf
    from benchmarks.accuracy.taylor import taylor_prune

    model, analysis = _small_preresnet()
    rng = np.random.default_rng(0)
    data = {"train": (rng.random((192, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 192))}
    wrapped, masks, minimal, info = taylor_prune(model, data, analysis, 0.25, "flops", 0, epochs=1, steps=3)
    targets = [s["target"] for s in info["taylor_steps"]]
    np.testing.assert_allclose(targets, [0.25 ** (1 / 3), 0.25 ** (2 / 3), 0.25])
    assert all(s["achieved"] <= s["target"] + 1e-9 for s in info["taylor_steps"]) and not minimal
    counts = [masks[n].sum() for n in analysis.spec.group_names]
    assert analysis.spec.fraction(counts, "flops") <= 0.25 + 1e-9
    x = data["train"][0][:8]
    small = chipnet_tf.strip_pruning(wrapped, masks=masks)
    np.testing.assert_allclose(wrapped(x, training=False).numpy(), small(x).numpy(), atol=1e-4)


def test_slimming_lambda_is_chosen_on_the_validation_split(monkeypatch):
    """The largest lambda within one point of dense on `val`; test-split accuracy plays no part."""
    from benchmarks.accuracy import baselines

    val = {"dense": 0.90, 1e-2: 0.80, 3e-3: 0.892, 1e-3: 0.895}
    test = {"dense": 0.90, 1e-2: 0.95, 3e-3: 0.10, 1e-3: 0.99}  # would pick otherwise
    monkeypatch.setattr(baselines, "slimming_train", lambda dense, data, seed, epochs, lam: lam)
    monkeypatch.setattr(baselines, "accuracy", lambda m, data, split="test": (val if split == "val" else test)[m])
    model, record = baselines.select_slimming("dense", {}, 0, 2)
    assert model == 3e-3 and record["lambda"] == 3e-3 and record["val_accuracy"] == 0.892
    assert record["split"] == "val" and [t["lambda"] for t in record["tried"]] == [1e-2, 3e-3]
    assert record["dense_val_accuracy"] == 0.90 and record["lambda_grid"] == list(baselines.SLIMMING_LAMBDAS)


def test_verdict_rule():
    def stat(mean, std):
        return {"mean": mean, "std": std, "n": 3}

    assert verdict(stat(0.90, 0.01), stat(0.80, 0.01)) == "win"
    assert verdict(stat(0.80, 0.01), stat(0.90, 0.01)) == "lose"
    # inside the pooled spread: a tie however large the gap looks
    assert verdict(stat(0.90, 0.08), stat(0.80, 0.08)) == "tie"
    # below one accuracy point: a tie even with zero spread
    assert verdict(stat(0.905, 0.0), stat(0.90, 0.0)) == "tie"
    assert verdict(stat(0.92, 0.0), stat(0.90, 0.0)) == "win"


def _equal_results(accuracies, finite=True):
    """A results file of protocol ``equal``: seeds 0 and 1, one FLOPs cell and one latency cell at 0.1;
    ``accuracies`` maps (budget_type, method) to the two seeds' accuracies."""
    cfg = {
        "dataset": "digits (synthetic)",
        "model": "preresnet(depth=20)",
        "seeds": [0, 1],
        "budgets": [0.1],
        "budget_types": ["flops"],
        "latency_budgets": [0.1],
        "latency": "predicted by a LatencyTable",
        "protocol": "equal",
        "pretrain_epochs": 2,
        "epochs_per_method": {m: [1, 2] if m.startswith("chipnet") else [0, 3] for _, m in accuracies},
        "optimizer": "SGD",
    }
    cfg.update({m: m for m in ("chipnet", "slimming", "taylor", "uniform", "scratch")})
    seeds = [{"seed": seed, "runs": []} for seed in (0, 1)]
    table = []
    for (budget_type, method), accs in accuracies.items():
        for seed, acc in zip(seeds, accs):
            run = {"method": method, "budget_type": budget_type, "budget": 0.1, "seed": seed["seed"], "accuracy": acc}
            run["finite"] = finite or (method, budget_type, seed["seed"]) != ("chipnet", "flops", 1)
            if method.startswith("chipnet"):
                run.update(final_soft_budget=0.1, soft_budget_per_epoch=[0.5], best_epoch=1)
                run.update(hard_val_accuracy_per_epoch=[0.5], weights_from="search" if "search" in method else "dense")
            seed["runs"].append(run)
        mean = sum(accs) / 2
        stat = {"mean": mean, "std": abs(accs[0] - accs[1]) / 2**0.5, "n": 2}
        table.append({"budget_type": budget_type, "budget": 0.1, "method": method, "accuracy": stat})
        table[-1]["accuracy_before_finetune"] = {"mean": 0.1, "std": 0.0, "n": 2}
    exactness = {"runs": 0, "within_budget": 0, "params_equal_prediction": 0, "flops_equal_profiler": 0}
    summary = {"dense_accuracy": {"mean": 0.9, "std": 0.0, "n": 2}, "table": table, "exactness": exactness}
    summary["stability"] = {"chance": 0.1}
    return {"config": cfg, "seeds": seeds, "summary": summary}


def _grid(latency_l1, latency_random):
    """ChipNet wins every FLOPs comparison; at latency it trails L1 and ties random unless told otherwise. The
    search-weights variant is far below everything (it must never count), and its runs are the lowest."""
    return {
        ("flops", "chipnet"): [0.80, 0.82],
        ("flops", "chipnet_search_weights"): [0.50, 0.52],
        ("flops", "l1"): [0.70, 0.70],
        ("flops", "random"): [0.70, 0.70],
        ("flops", "uniform"): [0.70, 0.70],
        ("latency", "chipnet"): [0.60, 0.64],
        ("latency", "chipnet_search_weights"): [0.40, 0.40],
        ("latency", "l1"): [latency_l1] * 2,
        ("latency", "random"): [latency_random] * 2,
        ("latency", "uniform"): [0.50, 0.50],
    }


def test_verdicts_cover_latency_cells_and_leave_out_the_search_weights_variant():
    results = _equal_results(_grid(latency_l1=0.70, latency_random=0.61))
    assert grid_cells(results["config"]) == [("flops", 0.1), ("latency", 0.1)]
    assert [row[:4] for row in verdicts(results)] == [
        ("flops", 0.1, "l1", "win"),
        ("flops", 0.1, "random", "win"),
        ("flops", 0.1, "uniform", "win"),
        ("latency", 0.1, "l1", "lose"),
        ("latency", 0.1, "random", "tie"),
        ("latency", 0.1, "uniform", "win"),
    ]
    section = "\n".join(verdict_section(results))
    assert (
        "| Random channels | 1 | 1 | 0 |" in section and "| latency | 0.1 | L1-norm (Li et al.) | **lose** |" in section
    )
    assert "ChipNet, fine-tuned from the search's weights: a variant of ChipNet (the same masks)" in section
    assert "| ChipNet, fine-tuned from the search's weights |" not in section


def test_search_target_names_its_failing_cells():
    missed = _equal_results(_grid(latency_l1=0.70, latency_random=0.61))
    assert target_failures(missed) == [("latency", 0.1, "l1", "lose"), ("latency", 0.1, "random", "tie")]
    assert target_line(missed).endswith(
        "**not met** (2 failing: latency 0.1 vs L1-norm: lose; latency 0.1 vs random: tie)."
    )
    met = _equal_results(_grid(latency_l1=0.50, latency_random=0.50))
    assert target_failures(met) == []
    assert target_line(met).endswith("latency included): **met**.")
    summary = summary_section(met)
    assert target_line(met) in summary and "- At 0.1 of latency: chipnet 62.0 ± 2.8" in "\n".join(summary)


def test_lowest_chipnet_run_and_finiteness():
    results = _equal_results(_grid(latency_l1=0.70, latency_random=0.61))
    assert lowest_run_line(results) == (
        "- ChipNet's lowest single run (every cell and seed): 60.0 % at latency 0.1, seed 0; above chance + 10 "
        "points (20 %). 0 of the 4 ChipNet runs ended fine-tuning with a non-finite weight or loss."
    )
    broken = _equal_results(_grid(latency_l1=0.70, latency_random=0.61), finite=False)
    assert lowest_run_line(broken).endswith(
        "1 of the 4 ChipNet runs ended fine-tuning with a non-finite weight or loss (flops 0.1 seed 1)."
    )


def test_convergence_line_reads_the_final_soft_budget():
    def run(budget, **soft):
        return {"budget_type": "channels", "budget": budget, **soft}

    runs = [
        run(0.1, final_soft_budget=0.115, soft_budget_per_epoch=[0.6]),  # the epoch mean alone would miss
        run(0.1, soft_budget_per_epoch=[0.5, 0.2]),  # older file: the last epoch mean, a miss
        run(0.05, final_soft_budget=0.03),
        {"budget_type": "flops", "budget": 0.1, "final_soft_budget": 0.1},  # not a convergence cell
    ]
    assert convergence_line(runs) == (
        "Convergence target (final V within 0.02 of the target at channels 0.1 and channels 0.05): 1 of 3 runs "
        "(channels 0.1: 1/2, channels 0.05: 0/1)."
    )


def test_accuracy_tables_include_the_latency_cells_and_the_variant():
    results = _equal_results(_grid(latency_l1=0.70, latency_random=0.61))
    text = "\n".join(accuracy_section(results, "plot.png"))
    assert "### flops budget" in text and "### latency budget" in text
    assert "| budget | ChipNet | ChipNet, fine-tuned from the search's weights | L1-norm (Li et al.) |" in text
    assert "| 0.1 | 62.0 ± 2.8 | 40.0 ± 0.0 | 70.0 ± 0.0 | 61.0 ± 0.0 | 50.0 ± 0.0 |" in text
    assert "ChipNet's masks are fine-tuned from the dense model's weights (`weights_from: dense`)" in text


@pytest.mark.parametrize("name", ["accuracy", "accuracy_fashion_mnist"])
def test_recorded_accuracy_results_still_render(name, tmp_path):
    """The recorded files render, whether they come from before the latency cells, the final
    soft budget and the search-weights variant or after them."""
    with open(ACCURACY_RESULTS.parent / f"{name}.json") as f:
        results = json.load(f)
    runs = [r for seed in results["seeds"] for r in seed["runs"]]
    has_latency = any(r.get("budget_type") == "latency" for r in runs)
    has_soft_budget = any("final_soft_budget" in r for r in runs)
    text = "\n".join(accuracy_sections(results, tmp_path, "."))
    assert "### flops budget" in text and "### channels budget" in text
    assert ("### latency budget" in text) == has_latency
    assert "- Search target (" in text
    assert ("this file records no final soft budget" in text) == (not has_soft_budget)
    assert "- ChipNet's lowest single run (every cell and seed): " in text
    (png,) = tmp_path.glob("*.png")
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_slimming_scores_cover_pre_activation_groups():
    """Every group of a pre-activation ResNet gets BN-gamma scores, residual streams included."""
    import chipnet_tf
    from chipnet_tf import architectures

    model = architectures.preresnet(depth=11, input_shape=(8, 8, 1))
    analysis = chipnet_tf.analyze(model, warn=False)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(-1, 1, layer.gamma.shape[0]).astype("float32"))
    scores = bn_gamma_scores(model, analysis)
    assert set(scores) == set(analysis.group_names)
    for group in analysis.groups:
        assert scores[group.name].shape == (group.size,) and (scores[group.name] >= 0).all()
    # A group read by exactly one BatchNorm scores that BN's |gamma|.
    block_conv = next(g for g in analysis.groups if g.name.endswith("conv1") and "shortcut" not in g.name)
    readers = [
        f.layer
        for f in analysis.graph.nodes
        if isinstance(f.layer, keras.layers.BatchNormalization)
        and analysis.layouts.get(f.in_keys[0]) == ([(analysis.group_names.index(block_conv.name), block_conv.size)], 1)
    ]
    assert readers
    expected = np.mean([np.abs(bn.gamma.numpy()) for bn in readers], axis=0)
    np.testing.assert_allclose(scores[block_conv.name], expected, rtol=1e-6)


def test_channel_step_reads_the_staircase():
    widths = list(range(1, 49))
    staircase = [10.0 * (1 + (w - 1) // 16) for w in widths]  # a tile of 16
    assert channel_step(widths, staircase) == 16
    assert channel_step(widths, [10.0 * (1 + (w - 1) // 8) for w in widths]) == 8
    assert channel_step(widths, [10.0 + 0.1 * w for w in widths]) is None  # no jump: no tile
    spiked = list(staircase)
    spiked[5] = 30.0  # one noisy timing at width 6 is not a step
    assert channel_step(widths, spiked) == 16
    shifted = [v * (1.6 if w >= 3 else 1.0) for w, v in zip(widths, staircase)]  # load rose after width 2
    assert channel_step(widths, shifted) == 16


def test_pad_to_tile_widens_with_the_next_best_channels():
    masks = {"a": np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0], bool), "b": np.array([1, 1, 1, 1, 1, 0], bool)}
    scores = {"a": np.array([9.0, 1, 5, 8, 7, 0, 0, 0, 0, 0]), "b": np.zeros(6)}
    padded = pad_to_tile(masks, scores, 4)
    np.testing.assert_array_equal(padded["a"], [1, 0, 1, 1, 1, 0, 0, 0, 0, 0])  # + the two best unkept
    np.testing.assert_array_equal(padded["b"], [1, 1, 1, 1, 1, 1])  # 8 would exceed the group: all 6
    assert pad_to_tile({"a": np.ones(8, bool)}, {"a": np.zeros(8)}, 4)["a"].sum() == 8


def test_latency_probe_only_rejects_no_probe():
    with pytest.raises(SystemExit):
        latency_cli.parse_args(["--probe_only", "--no_tile_probe"])


def test_overhead_comparison_says_when_a_difference_is_noise():
    plain = [1.0] * 12
    summary = {"round_ratio_vs_plain": {"plain": plain, "a": [1.00 + 0.001 * i for i in range(12)]}}
    summary["round_ratio_vs_plain"]["b"] = [1.05 + 0.001 * i for i in range(12)]
    clear = paired_comparison(summary, "a", "b")
    assert clear["rounds"] == 12 and clear["rounds_first_faster"] == 12
    assert clear["distinguishable"] and clear["ci95"][1] < 0
    assert abs(clear["median_difference"] + 0.05) < 1e-9
    noisy = [1.0 + (0.04 if i % 2 else -0.04) for i in range(12)]  # a is faster in half the rounds
    summary["round_ratio_vs_plain"]["b"] = noisy
    summary["round_ratio_vs_plain"]["a"] = [1.0] * 12
    mixed = paired_comparison(summary, "a", "b")
    assert mixed["rounds_first_faster"] == 6 and not mixed["distinguishable"]
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]


def test_ablation_arguments_and_summary():
    from benchmarks.accuracy import ablation

    args = ablation.parse_args([])
    assert args.dataset == "fashion_mnist" and args.seeds == [0, 1]
    assert args.cells == [("flops", 0.1), ("channels", 0.1)]
    assert args.searches == [
        "paper",
        "progress",
        "progress_hard",
        "progress_hard_relative",
        "ramp",
        "constant_gamma",
        "default",
    ]
    assert args.methods == ("chipnet",) and args.output.name == "ablation_fashion_mnist.json"
    for bad in ("flops", "flops:2", "latency:0.1"):
        with pytest.raises(SystemExit):
            ablation.parse_args(["--budgets", bad])

    def run(search, v, before, after):
        return {
            "search": search,
            "budget_type": "flops",
            "budget": 0.1,
            "soft_budget_per_epoch": [1.0, v],
            "accuracy_before_finetune": before,
            "accuracy": after,
            "groups_with_one_channel": 2,
        }

    runs = [run("paper", 1.0, 0.1, 0.5), run("paper", 0.98, 0.1, 0.7), run("default", 0.12, 0.6, 0.8)]
    table = ablation.summarize(runs, ["paper", "default"], [("flops", 0.1)])
    assert [(row["search"], row["converged"], row["runs"]) for row in table] == [("paper", 0, 2), ("default", 1, 1)]
    assert table[0]["accuracy"]["mean"] == pytest.approx(0.6)
    assert table[1]["final_soft_budget"]["mean"] == pytest.approx(0.12)


def test_ablation_reuses_finished_tasks_and_remembers_where_they_came_from(tmp_path):
    from benchmarks.accuracy import ablation

    old, work = tmp_path / "old", tmp_path / "work"
    old.mkdir()
    work.mkdir()
    (old / "dense-0.json").write_text("{}")
    (old / "dense_0.weights.h5").write_bytes(b"w")
    (old / "ablation-0-flops-0.1-paper.json").write_text('{"search": "paper"}')
    keys = [("dense", 0), ("ablation", 0, "flops", 0.1, "paper"), ("ablation", 0, "flops", 0.1, "default")]
    reused = ablation.reuse_tasks([str(old), "abc1234"], work, keys, lambda m: None)
    assert reused == {"abc1234": ["ablation-0-flops-0.1-paper", "dense-0"]}
    assert (work / "dense_0.weights.h5").read_bytes() == b"w"
    assert not (work / "ablation-0-flops-0.1-default.json").exists()
    assert ablation.reuse_tasks(None, work, keys, lambda m: None) == reused  # a resumed run still knows


def test_ablation_section_renders_the_table():
    from benchmarks.report.search import ablation_section

    stat = {"mean": 0.5, "std": 0.1, "n": 2}
    row = {
        "search": "default",
        "budget_type": "flops",
        "budget": 0.1,
        "final_soft_budget": {"mean": 0.123, "std": 0.0, "n": 2},
        "converged": 1,
        "runs": 2,
        "accuracy_before_finetune": stat,
        "accuracy": {"mean": 0.8, "std": 0.0, "n": 1},
        "groups_with_one_channel": {"mean": 1.5, "std": 0.5, "n": 2},
    }
    cfg = {"model": "m", "dataset": "d", "seeds": [0, 1], "prune_epochs": 4, "finetune_epochs": 2}
    cfg["searches"] = {"default": "the default"}
    lines = ablation_section({"config": cfg, "dense_accuracy": stat, "table": [row]})
    assert "| `default` | flops 0.1 | 0.123 | 1/2 | 50.0 ± 10.0 | 80.0 ± 0.0 | 1.5 |" in lines
    assert "- `default`: the default" in lines
    reused = {"abc1234": ["dense-0", "dense-1", "ablation-0-flops-0.1-paper", "ablation-1-flops-0.1-paper"]}
    cfg["searches"] = {"paper": "the paper's", "default": "the default"}
    text = "\n".join(ablation_section({"config": cfg, "dense_accuracy": stat, "table": [row], "reused": reused}))
    assert "at commit abc1234 (`--reuse`" in text and "2 dense models and the `paper` runs (2 tasks)" in text


def test_zoo_latency_section_lists_every_variant():
    cfg = {"runtime": "r", "timing": "t", "weights": "w", "scores": "s"}
    variants = {
        "dense": {"flops_fraction": 1.0, "ratio_vs_dense": 1.0, "median_ms": 0.1},
        "chipnet b=0.25": {"flops_fraction": 0.25, "ratio_vs_dense": 0.38, "median_ms": 0.038},
    }
    lines = zoo_latency_section({"config": cfg, "results": {"mobilenet_v3_small": {"variants": variants}}})
    assert "| mobilenet_v3_small | chipnet b=0.25 | 0.250 | 0.380 | 0.038 |" in lines
    assert "| mobilenet_v3_small | dense | 1.000 | 1.000 | 0.100 |" in lines


@pytest.mark.slow
def test_latency_accuracy_quick_run_meets_its_latency_budgets(tmp_path):
    """ChipNet searched for latency, and for the FLOPs budget of the same predicted latency: both
    networks are predicted within the latency budget, their counts are exact, every network is
    timed, and the page renders the table."""
    from benchmarks.latency import accuracy as latency_accuracy
    from benchmarks.report.speed import latency_accuracy_section

    out = tmp_path / "latency_accuracy.json"
    payload = latency_accuracy.main(["--quick", "--output", str(out), "--grid", str(tmp_path / "none.json")])
    assert json.loads(out.read_text())["table"] == payload["table"]
    runs = payload["runs"]
    assert sorted(r["kind"] for r in runs) == ["flops", "latency"]
    for r in runs:
        assert r["predicted_latency_fraction"] <= 0.25 + 1e-9
        assert r["within_budget"] and r["params"] == r["params_predicted"] and r["flops"] == r["flops_profiler"]
        assert r["measured_ms"] > 0 and 0 < r["measured_ratio"] < 1.5
    latency_run = next(r for r in runs if r["kind"] == "latency")
    flops_run = next(r for r in runs if r["kind"] == "flops")
    assert latency_run["budget_type"] == "latency" and latency_run["achieved"] <= 0.25 + 1e-9
    assert flops_run["budget_type"] == "flops" and flops_run["achieved"] == pytest.approx(flops_run["flops_fraction"])
    assert flops_run["search_flops_budget"] > 0
    # the FLOPs network is cut to the latency network's own predicted latency, at most
    assert flops_run["target_latency_fraction"] == pytest.approx(latency_run["predicted_latency_fraction"])
    assert flops_run["predicted_latency_fraction"] <= latency_run["predicted_latency_fraction"] + 1e-9
    lines = latency_accuracy_section(payload)
    assert sum(line.startswith("| 0.25 | ") for line in lines) == 2
    assert not (tmp_path / ".work").exists()  # a finished run leaves no work directory


def test_latency_accuracy_takes_chipnet_flops_rows_of_the_grid(tmp_path):
    from benchmarks.latency import accuracy as latency_accuracy

    def run(method, budget_type, budget, seed):
        return {"method": method, "budget_type": budget_type, "budget": budget, "seed": seed}

    seeds = [
        {
            "seed": 0,
            "runs": [run("chipnet", "flops", 0.25, 0), run("l1", "flops", 0.25, 0), run("tfmot", "flops", 0.1, 0)],
        },
        {"seed": 1, "runs": [run("chipnet", "flops", 0.1, 1), run("chipnet", "channels", 0.1, 1)]},
        {"seed": 2, "runs": [run("chipnet", "flops", 0.5, 2), run("chipnet", "flops", 0.1, 2)]},
    ]
    path = tmp_path / "accuracy_fashion_mnist.json"
    path.write_text(json.dumps({"seeds": seeds}))
    rows = latency_accuracy.grid_rows(path, [0, 1], [0.25, 0.1])
    assert [(r["seed"], r["budget"], r["kind"]) for r in rows] == [(0, 0.25, "grid_flops"), (1, 0.1, "grid_flops")]
    assert latency_accuracy.grid_rows(tmp_path / "missing.json", [0], [0.25]) == []


def test_keras3_parity_verdict_is_one_point_or_the_pooled_spread():
    from benchmarks.parity.summary import summarise, table

    def rows(flavour, backend, accs):
        return [
            {"flavour": flavour, "backend": backend, "seed": i, "accuracy": a, "fraction": 0.1, "seconds": 1.0}
            for i, a in enumerate(accs)
        ]

    summary = summarise(
        rows("tf_keras", "tensorflow", [0.90, 0.92, 0.94])  # mean 0.92, std 0.02
        + rows("keras3", "tensorflow", [0.905, 0.915, 0.925])  # 0.5 pt behind: within 1 point
        + rows("keras3", "jax", [0.88, 0.89, 0.90])  # 3 pt behind, pooled std ~1.6 pt: no parity
        + rows("keras3", "torch", [0.87, 0.90, 0.93])  # 2 pt behind, pooled std ~2.5 pt: parity
    )
    assert summary["keras3/tensorflow"]["parity"] is True
    assert summary["keras3/jax"]["parity"] is False
    assert summary["keras3/torch"]["parity"] is True
    assert round(summary["keras3/jax"]["gap_points"], 6) == -3.0
    assert "parity" not in summary["tf_keras/tensorflow"]
    assert "| keras3/jax | 3 | 89.00 ± 1.00 | 0.1000 | -3.00 pt (pooled std 1.58) | no |" in table(summary)


def test_keras3_speed_quick_cores_record_paired_ratios_of_their_medians(tmp_path):
    """The Keras 3 overhead run (--quick, this process's backend) and the strip comparison's
    per-flavour core (a ResNet-20 instead of ResNet50, masks drawn with tf_keras and loaded
    from .npz by both Kerases): fields present, ratios positive and computed from the medians."""
    import statistics

    import keras as keras3

    import chipnet_tf
    from benchmarks.overhead import keras3 as overhead_keras3
    from benchmarks.overhead.variants import resnet20
    from benchmarks.strip import keras3_speed

    args = overhead_keras3.parse_args(["--quick"])
    part = overhead_keras3.measure(args)
    write_json(tmp_path / "overhead_keras3.json", overhead_keras3.payload_of(args, {part["backend"]: part}, 0.0))
    payload = json.loads((tmp_path / "overhead_keras3.json").read_text())
    part = payload["backends"][keras3.backend.backend()]
    rounds = part["wall"]["raw_step_intervals_s"]
    assert [len(r) for r in rounds["chipnet"]] == [args.steps - 1] * args.rounds
    round_ratios = [
        statistics.median(c) / statistics.median(p) for c, p in zip(rounds["chipnet"], rounds["plain"], strict=True)
    ]
    assert part["wall"]["round_ratio_vs_plain"]["chipnet"] == pytest.approx(round_ratios)
    assert part["ratio_vs_plain"] == pytest.approx(statistics.median(round_ratios)) and part["ratio_vs_plain"] > 0
    assert part["scatter"]["min"] <= part["ratio_vs_plain"] <= part["scatter"]["max"]
    assert part["cpu_ratio_vs_plain"] > 0 and part["low_quantile"]["ratio"] > 0
    verdict = payload["target"]["per_backend"].get(part["backend"])
    assert verdict is None or verdict["met"] == (part["ratio_vs_plain"] <= overhead_keras3.TARGET_RATIO)

    masks_path = tmp_path / "masks.npz"
    chipnet_tf.save_masks(masks_path, keras3_speed.draw_masks(resnet20(0), 0.5, 0))
    masks = chipnet_tf.load_masks(masks_path)
    parts = {
        "tf_keras": keras3_speed.time_flavour(lambda: resnet20(0), masks, 1, 0.5),
        "keras3/tensorflow": keras3_speed.time_flavour(lambda: resnet20(0, K=keras3), masks, 1, 0.5),
    }
    assert parts["tf_keras"]["stripped_params"] == parts["keras3/tensorflow"]["stripped_params"]
    summary = keras3_speed.summarize([parts], list(parts))
    for path in keras3_speed.PATHS:
        mine, ref = summary["keras3/tensorflow"][path], summary["tf_keras"][path]
        expected = parts["keras3/tensorflow"]["warm_s"][path][0] / parts["tf_keras"]["warm_s"][path][0]
        assert mine["ratio_vs_tf_keras"] == pytest.approx(expected) and expected > 0
        assert mine["ratio_of_medians_vs_tf_keras"] == pytest.approx(mine["warm_median_s"] / ref["warm_median_s"])
        assert mine["cold_ratio_vs_tf_keras"] == pytest.approx(mine["cold_median_s"] / ref["cold_median_s"])
    verdicts = keras3_speed.target_of(summary)["per_flavour"]
    assert set(verdicts) == {"keras3/tensorflow"}
    for v in verdicts["keras3/tensorflow"].values():
        assert v["met"] == (max(v["ratio"], v["cold_ratio"]) <= keras3_speed.TARGET_RATIO)
