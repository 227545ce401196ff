"""Accuracy at equal measured latency: ChipNet pruned for latency next to ChipNet
pruned for FLOPs, on the accuracy benchmark's Fashion-MNIST PreResNet-20.

1. the dense models of the accuracy benchmark's protocol (one per seed; ``--reuse`` takes
   them from an earlier run's work directory) and one latency table of the model (LiteRT
   float32, 1 thread: ``chipnet_tf.latency.profile``);
2. per seed and latency budget (0.25, 0.1): ChipNet searched under the latency budget, and
   then ChipNet searched under the FLOPs budget whose L1-norm cut the table predicts at the
   latency network's predicted latency, its learned gates then cut at the FLOPs budget
   where their own cut is predicted there (at most); both get the accuracy benchmark's
   fine-tuning;
3. every stripped network, and ChipNet's FLOPs 0.25 / 0.1 networks of the accuracy grid
   (``--grid``, rebuilt from their kept channel counts: latency depends on the counts
   only), converted and timed interleaved with the dense model (``benchmarks.latency``).

Resumable like the accuracy benchmark. Run::

    python -m benchmarks.latency.accuracy --reuse WORK_DIR COMMIT   # the dense models of a grid run
    python -m benchmarks.latency.accuracy --quick                    # digits, 1 seed, few epochs
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy.ablation import reuse_tasks
from benchmarks.accuracy.grid import latency_table_path
from benchmarks.accuracy.run import EPOCHS, RESULTS_DIR, protocol_config, run_logger, work_directory, write_and_clean
from benchmarks.accuracy.run import load_weights as _load_weights
from benchmarks.accuracy.summary import _mean_std
from benchmarks.accuracy.tasks import run_tasks
from benchmarks.latency import timing as lat_timing
from benchmarks.latency.budget import _convert
from benchmarks.latency.models import make_interpreter
from chipnet_tf.latency.table import LatencyTable, attach

BUDGETS = (0.25, 0.1)
KINDS = ("latency", "flops")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(acc_data.DATASETS), default="fashion_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    p.add_argument("--invocations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--grid", type=Path, default=None, help="accuracy grid results whose ChipNet FLOPs rows to time")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--reuse", nargs=2, metavar=("WORK_DIR", "COMMIT"), default=None, help="dense models of a run")
    p.add_argument("--quick", action="store_true", help="digits, seed 0, budget 0.25, 2/2/1 epochs")
    args = p.parse_args(argv)
    for budget in args.budgets:
        if not 0 < budget <= 1:
            p.error(f"--budgets takes budgets in (0, 1]. Received: {budget!r}")
    for name, value in EPOCHS[args.dataset].items():
        setattr(args, name, value)
    if args.quick:
        args.dataset, args.seeds, args.budgets, args.rounds = "digits", [0], [0.25], 3
        args.pretrain_epochs, args.prune_epochs, args.finetune_epochs = 2, 2, 1
    args.methods = ("chipnet",)  # the dense task trains no slimming copy
    if args.output is None:
        args.output = RESULTS_DIR / f"latency_accuracy_{args.dataset}{'_quick' if args.quick else ''}.json"
    if args.grid is None:
        args.grid = RESULTS_DIR / ("accuracy.json" if args.dataset == "digits" else f"accuracy_{args.dataset}.json")
    return args


def _close(a, b):
    return bool(np.isclose(a, b, rtol=1e-9, atol=0.0))


def grid_rows(path, seeds, budgets):
    """ChipNet's FLOPs-budget runs of the accuracy grid at ``budgets`` (none if no such file)."""
    if not Path(path).exists():
        return []
    runs = [r for s in json.loads(Path(path).read_text())["seeds"] for r in s["runs"]]
    keep = [
        r
        for r in runs
        if r["method"] == "chipnet"
        and r["budget_type"] == "flops"
        and r["seed"] in seeds
        and any(_close(r["budget"], b) for b in budgets)
    ]
    return [{**r, "kind": "grid_flops", "latency_budget": None} for r in keep]


def time_networks(args, work, runs):
    """Measured ms and ratio to dense of every run's network, timed interleaved with the dense model."""
    dense = _load_weights(args, work, f"dense_{args.seeds[0]}")
    table = LatencyTable.load(latency_table_path(work))
    spec = attach(chipnet_tf.analyze(dense, warn=False), table)
    x = np.random.default_rng(0).standard_normal((1, *dense.inputs[0].shape[1:])).astype("float32")
    interps = {"dense": make_interpreter(_convert(dense, None), x)}
    for i, run in enumerate(runs):
        kept = run["kept_per_group"]
        masks = {g: np.arange(n) < kept[g] for g, n in zip(spec.group_names, spec.group_sizes)}
        interps[i] = make_interpreter(_convert(chipnet_tf.strip_pruning(dense, masks=masks), None), x)
        run["predicted_ms"] = spec.value([kept[g] for g in spec.group_names], "latency")
        run["predicted_latency_fraction"] = run["predicted_ms"] / spec.dense("latency")
    per_round, _, load = lat_timing.interleaved_timing(interps, args, "networks")
    summary = lat_timing.summarize(per_round)
    for i, run in enumerate(runs):
        run["measured_ms"] = summary["median_s"][i] * 1e3
        run["measured_ratio"] = summary["ratio_vs_dense"][i]
    return {"dense_ms": summary["median_s"]["dense"] * 1e3, "load_average_1min": load}


def summarize(runs, budgets):
    """Per latency budget and kind: accuracy, measured latency ratio and FLOPs kept, over seeds."""
    rows = []
    for budget in budgets:
        for kind in (*KINDS, "grid_flops"):
            key = "budget" if kind == "grid_flops" else "latency_budget"
            rs = [r for r in runs if r["kind"] == kind and _close(r[key], budget)]
            if not rs:
                continue
            rows.append(
                {
                    "budget": budget,
                    "kind": kind,
                    "runs": len(rs),
                    "accuracy": _mean_std([r["accuracy"] for r in rs]),
                    "accuracy_before_finetune": _mean_std([r["accuracy_before_finetune"] for r in rs]),
                    "measured_ratio": _mean_std([r["measured_ratio"] for r in rs]),
                    "predicted_ratio": _mean_std([r["predicted_latency_fraction"] for r in rs]),
                    "flops_fraction": _mean_std([r["flops_fraction"] for r in rs]),
                    "params_fraction": _mean_std([r["params_fraction"] for r in rs]),
                }
            )
    return rows


def print_table(rows):
    labels = {"latency": "latency budget", "flops": "FLOPs, equal latency", "grid_flops": "FLOPs budget (grid)"}
    print(f"{'budget':>6}  {'network':<22} {'accuracy':>14} {'before FT':>14} {'latency':>8} {'pred':>6} {'FLOPs':>6}")
    for r in rows:
        acc, before = r["accuracy"], r["accuracy_before_finetune"]
        print(
            f"{r['budget']:>6g}  {labels[r['kind']]:<22} {acc['mean']:>8.4f}±{acc['std']:.3f} "
            f"{before['mean']:>8.4f}±{before['std']:.3f} {r['measured_ratio']['mean']:>7.3f}x "
            f"{r['predicted_ratio']['mean']:>6.3f} {r['flops_fraction']['mean']:>6.3f}"
        )


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    log = run_logger(start)

    config = {
        **protocol_config(args),
        "latency_budgets": args.budgets,
        "table": "chipnet_tf.latency.profile(model, threads=1): LiteRT float32, XNNPACK",
    }
    work = work_directory(args.output, config)
    acc_data.load(args.dataset)
    # The table is profiled alone (no training beside its timings); each FLOPs search matches
    # the predicted latency of its seed's latency network, so it runs after it.
    table = [("latency_table",)]
    dense = [("dense", s) for s in args.seeds]
    searches = {k: [("latency_search", s, k, b) for b in args.budgets for s in args.seeds] for k in KINDS}
    reused = reuse_tasks(args.reuse, work, dense, log)
    log(f"latency vs FLOPs at equal latency: {len(args.seeds)} seeds x {len(args.budgets)} budgets; work {work}")
    results = run_tasks([table, dense, searches["latency"], searches["flops"]], args, str(work), log)
    runs = [results[key] for k in KINDS for key in searches[k]] + grid_rows(args.grid, args.seeds, args.budgets)
    log(f"timing {len(runs)} networks interleaved with the dense model")
    timing = time_networks(args, str(work), runs)
    rows = summarize(runs, args.budgets)
    print_table(rows)
    payload = {
        "benchmark": "accuracy at equal measured latency: latency budget vs FLOPs budget",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "dense_accuracy": _mean_std([results[("dense", s)]["dense"]["accuracy"] for s in args.seeds]),
        "latency_table": results[("latency_table",)],
        "timing": timing,
        "grid": str(args.grid) if args.grid.exists() else None,
        "runs": runs,
        "table": rows,
        "reused": reused,
        "environment": common.environment(),
        "total_runtime_s": time.perf_counter() - start,
    }
    return write_and_clean(args.output, payload, work, log)


if __name__ == "__main__":
    main()
