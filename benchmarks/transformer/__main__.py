"""Transformer benchmark: ChipNet against L1-norm and random masks on a small vision
transformer (``chipnet_tf.architectures.vit``: 4x4 patches, 6 blocks, width 64, 4 heads, MLP
128) on Fashion-MNIST, at FLOPs budgets 0.5, 0.25 and 0.1, 3 seeds.

Every method trains the same number of epochs after the shared dense pretraining: ChipNet
searches its share of them (the CNN grid's fraction, chosen on held-out data there) and
fine-tunes its masks the rest; L1-norm (heads by their projection norms, MLP and stream
channels by their writers' weight norms) and random masks are fine-tuned all of them. Each
mask is stripped (its FLOPs checked against the budget report), scored before and after the
fine-tuning, and every stripped ViT of seed 0 is timed in LiteRT against the dense one.
ChipNet also searches at a latency budget (seed 0; a table profiled on the dense ViT), and its
stripped ViT's measured latency is set beside the table's prediction.

Run::

    python -m benchmarks.transformer                 # about 4 hours on 2 idle cores
    python -m benchmarks.transformer --quick         # one seed, one budget, 1+2 epochs

Results: ``benchmarks/results/transformer_<dataset>.json``; an interrupted run resumes from its
work directory (one file per finished task).
"""

import argparse
import hashlib
import json
import os
import statistics
import time

from benchmarks import common
from benchmarks.accuracy import data as acc_data
from benchmarks.transformer import runs
from chipnet_tf.io import write_json

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "results")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.transformer", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(acc_data.DATASETS), default="fashion_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    p.add_argument("--latency_budgets", type=float, nargs="*", default=[0.5], help="ChipNet at these, seed 0")
    p.add_argument("--dense_epochs", type=int, default=10)
    p.add_argument("--total_epochs", type=int, default=6, help="every method's epochs after the dense pretraining")
    p.add_argument("--quick", action="store_true", help="seed 0, budget 0.25, 1 dense and 2 total epochs")
    p.add_argument("--out", default=None, help="default: benchmarks/results/transformer_<dataset>.json")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.dense_epochs, args.total_epochs = [0], [0.25], 1, 2
        args.latency_budgets = [0.5]
    if args.total_epochs < 2:
        p.error(f"--total_epochs must be at least 2 (a search and a fine-tuning epoch). Received: {args.total_epochs}")
    quick = os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR
    os.makedirs(quick, exist_ok=True)
    args.out = args.out or os.path.join(quick, f"transformer_{args.dataset}.json")
    return args


def _config(args):
    return {
        "dataset": args.dataset,
        "model": runs.MODEL,
        "seeds": args.seeds,
        "budgets": args.budgets,
        "latency_budgets": args.latency_budgets,
        "dense_epochs": args.dense_epochs,
        "total_epochs": args.total_epochs,
        "plan": {m: list(e) for m, e in runs.plan(args.total_epochs).items()},
        "optimizer": f"AdamW({runs.LR}, weight decay {runs.WEIGHT_DECAY}), cosine decay, batch {runs.BATCH}",
        "split": acc_data.describe_split(args.dataset),
    }


def _work_dir(args):
    key = json.dumps(_config(args), sort_keys=True)
    path = os.path.join(RESULTS_DIR, ".work", "transformer-" + hashlib.sha1(key.encode()).hexdigest()[:12])
    os.makedirs(path, exist_ok=True)
    return path


def _cached(work, name, make, log):
    path = os.path.join(work, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    t0 = time.perf_counter()
    result = make()
    write_json(path, result)
    log(f"{name}: {_describe(result)} ({time.perf_counter() - t0:.0f}s)")
    return result


def _describe(result):
    if "predictor_error" in result:
        return (
            f"latency {result['budget']}: measured {result['measured_ratio']:.3f} of dense, predicted "
            f"{result['predicted_fraction']:.3f}, accuracy {result['accuracy']:.4f}"
        )
    if "ms" in result:
        return "LiteRT ms " + ", ".join(f"{k} {v:.2f}" for k, v in result["ms"].items())
    if "method" not in result:
        return f"dense {result['accuracy']:.4f}"
    return (
        f"{result['method']} {result['accuracy']:.4f} (before fine-tuning {result['accuracy_before_finetune']:.4f}), "
        f"FLOPs {result['flops_fraction']:.3f}, heads {sorted(result['heads'].values())}"
    )


def summarize(records):
    """Mean and spread of each method's accuracy per budget."""
    out = {}
    for r in records:
        out.setdefault(str(r["budget"]), {}).setdefault(r["method"], []).append(r)
    table = {}
    for budget, by_method in out.items():
        table[budget] = {}
        for method, rs in by_method.items():
            acc = [r["accuracy"] for r in rs]
            before = [r["accuracy_before_finetune"] for r in rs]
            table[budget][method] = {
                "accuracy_mean": statistics.mean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "before_finetune_mean": statistics.mean(before),
                "flops_fraction_mean": statistics.mean(r["flops_fraction"] for r in rs),
                "seconds_mean": statistics.mean(r["search_seconds"] + r["finetune_seconds"] for r in rs),
                "runs": len(rs),
            }
    return table


def main(argv=None):
    args = parse_args(argv)
    work = _work_dir(args)
    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:8.1f}s] {message}", flush=True)

    log(f"work directory {work}")
    dense = [_cached(work, f"dense_{s}", lambda s=s: runs.dense_task(args, work, s), log) for s in args.seeds]
    records = []
    for budget in args.budgets:
        for seed in args.seeds:
            for method in runs.METHODS:
                name = f"{method}_{budget}_{seed}"
                records.append(
                    _cached(work, name, lambda m=method, b=budget, s=seed: runs.method_task(args, work, s, m, b), log)
                )
    latency = _cached(work, "latency", lambda: runs.latency_task(args, work, args.seeds[0]), log)
    latency_budgets = [
        _cached(work, f"chipnet_latency_{b}", lambda b=b: runs.latency_budget_task(args, work, args.seeds[0], b), log)
        for b in args.latency_budgets
    ]
    payload = {
        "benchmark": "transformer",
        "config": _config(args),
        "dense": dense,
        "runs": records,
        "summary": summarize(records),
        "latency": latency,
        "latency_budgets": latency_budgets,
        "environment": common.environment("tensorflow", "tf_keras"),
        "total_runtime_s": time.perf_counter() - started,
    }
    write_json(args.out, payload)
    for budget, by_method in payload["summary"].items():
        cells = ", ".join(
            f"{m} {v['accuracy_mean']:.1%} ± {v['accuracy_std']:.1%} (untuned {v['before_finetune_mean']:.1%})"
            for m, v in by_method.items()
        )
        print(f"FLOPs {budget}: {cells}")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
