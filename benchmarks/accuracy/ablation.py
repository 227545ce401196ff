"""Ablation of ChipNet's search: from the paper's configuration to the library's default,
one change at a time (``benchmarks.accuracy.methods.SEARCHES``, in order), ChipNet alone.

Every configuration prunes the same pretrained dense models (one per seed) at the same
budgets and gets the fine-tuning of the accuracy benchmark; the table shows, per
configuration and budget: the final soft budget V and how many runs converged (V within
0.05 of the target), the hard-masked accuracy before fine-tuning (BatchNorm re-estimated:
what the search itself found) and after it. Run::

    python -m benchmarks.accuracy.ablation                       # Fashion-MNIST, flops and channels 0.1, seeds 0 1
    python -m benchmarks.accuracy.ablation --dataset digits --seeds 0

Resumable like the accuracy benchmark (finished tasks are kept in a work directory).
"""

import argparse
import json
import shutil
import time
from pathlib import Path

from benchmarks import common
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy.methods import SEARCHES
from benchmarks.accuracy.run import EPOCHS, RESULTS_DIR, protocol_config, run_logger, work_directory, write_and_clean
from benchmarks.accuracy.summary import _mean_std
from benchmarks.accuracy.tasks import run_tasks
from chipnet_tf.io import write_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(acc_data.DATASETS), default="fashion_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--budgets", nargs="+", default=["flops:0.1", "channels:0.1"], help="TYPE:BUDGET pairs")
    p.add_argument("--searches", nargs="+", choices=list(SEARCHES), default=list(SEARCHES))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--reuse",
        nargs=2,
        metavar=("WORK_DIR", "COMMIT"),
        default=None,
        help="take finished tasks (dense models, searches) from an earlier run's work directory made at COMMIT; "
        "only for tasks whose code path has not changed since. The results record which tasks came from where.",
    )
    args = p.parse_args(argv)
    cells = []
    for item in args.budgets:
        kind, _, value = item.partition(":")
        try:
            budget = float(value)
        except ValueError:
            p.error(f"--budgets takes TYPE:BUDGET pairs such as flops:0.1. Received: {item!r}")
        if kind not in ("flops", "channels", "params", "volume") or not 0 < budget <= 1:
            p.error(f"--budgets takes TYPE:BUDGET with a budget type and a budget in (0, 1]. Received: {item!r}")
        cells.append((kind, budget))
    args.cells = cells
    for name, value in EPOCHS[args.dataset].items():
        setattr(args, name, value)
    args.methods = ("chipnet",)
    if args.output is None:
        args.output = RESULTS_DIR / f"ablation_{args.dataset}.json"
    return args


def reuse_tasks(reuse, work, keys, log):
    """Copies the finished tasks among ``keys`` from an earlier work directory into ``work``
    (a dense model's weights with its result); returns ``{commit: [task names]}`` of every
    task reused into ``work`` so far (``reuse`` None: only reads that record)."""
    record = work / "reused.json"  # kept with the work, so a resumed run still says where tasks came from
    reused = json.loads(record.read_text()) if record.exists() else {}
    if reuse is None:
        return reused
    source, commit = Path(reuse[0]), reuse[1]
    names = []
    for key in keys:
        name = "-".join(str(k) for k in key)
        if not (source / f"{name}.json").exists() or (work / f"{name}.json").exists():
            continue
        if key[0] == "dense":
            shutil.copy2(source / f"dense_{key[1]}.weights.h5", work / f"dense_{key[1]}.weights.h5")
        shutil.copy2(source / f"{name}.json", work / f"{name}.json")
        names.append(name)
    log(f"reused {len(names)} finished tasks from {source} (commit {commit})")
    if names:
        reused[commit] = sorted(set(reused.get(commit, [])) | set(names))
        write_json(record, reused)
    return reused


def summarize(runs, searches, cells):
    table = []
    for search in searches:
        for kind, budget in cells:
            rs = [r for r in runs if r["search"] == search and r["budget_type"] == kind and r["budget"] == budget]
            finals = [r["soft_budget_per_epoch"][-1] for r in rs]
            table.append(
                {
                    "search": search,
                    "budget_type": kind,
                    "budget": budget,
                    "final_soft_budget": _mean_std(finals),
                    "converged": sum(abs(v - budget) <= 0.05 for v in finals),
                    "runs": len(rs),
                    "accuracy_before_finetune": _mean_std([r["accuracy_before_finetune"] for r in rs]),
                    "accuracy": _mean_std([r["accuracy"] for r in rs]),
                    "groups_with_one_channel": _mean_std([r["groups_with_one_channel"] for r in rs]),
                }
            )
    return table


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    log = run_logger(start)

    config = {
        **protocol_config(args),
        "cells": [list(c) for c in args.cells],
        "searches": {s: SEARCHES[s]["text"] for s in args.searches},
    }
    work = work_directory(args.output, config)
    acc_data.load(args.dataset)
    first = [("dense", s) for s in args.seeds]
    second = [("ablation", s, k, b, search) for search in args.searches for s in args.seeds for k, b in args.cells]
    reused = reuse_tasks(args.reuse, work, first + second, log)
    log(f"ablation: {len(args.searches)} searches x {len(args.seeds)} seeds x {len(args.cells)} budgets; work {work}")
    results = run_tasks([first, second], args, str(work), log)
    runs = [results[key] for key in second]
    payload = {
        "benchmark": "ablation",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "dense_accuracy": _mean_std([results[("dense", s)]["dense"]["accuracy"] for s in args.seeds]),
        "runs": runs,
        "reused": reused,
        "table": summarize(runs, args.searches, args.cells),
        "environment": common.environment(),
        "total_runtime_s": time.perf_counter() - start,
    }
    return write_and_clean(args.output, payload, work, log)


if __name__ == "__main__":
    main()
