"""Training-step overhead on Keras 3: the plain ResNet-20 against the ChipNet-wrapped one, per backend.

The tf_keras benchmark's model, data, optimiser, timer and statistics (``benchmarks.overhead``),
with the model built by ``import keras``. Keras 3's backend is chosen per process, so the
parent starts one child process per backend (``KERAS_BACKEND`` set before Keras is imported);
each child times its two variants in interleaved rounds and writes its part, and the parent
writes them together. The method is described in benchmarks/README.md, section
"Training-step overhead".

Usage (from the repository root)::

    python -m benchmarks.overhead --keras 3                    # TensorFlow and JAX, 20 rounds x 10 steps each
    python -m benchmarks.overhead --keras 3 --quick            # TensorFlow, 2 rounds x 3 steps, ~1-2 minutes
    python -m benchmarks.overhead --keras 3 --resume           # measure only the backends without a finished part
    python -m benchmarks.overhead --keras 3 --backends torch --output /tmp/overhead_torch.json
"""

import argparse
import datetime
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.overhead.rounds import build_variants, time_rounds
from benchmarks.overhead.stats import paired_comparison, print_table, summarize
from benchmarks.overhead.variants import make_variant, synthetic_dataset, tracing_count
from chipnet_tf import io as chipnet_io

RESULTS = Path(__file__).resolve().parent.parent / "results" / "overhead_keras3.json"
VARIANTS = ("plain", "chipnet")
TARGET_RATIO = 1.05
TARGET_BACKENDS = ("tensorflow", "jax")  # PyTorch is measured when asked for, not a target
DESCRIPTIONS = {
    "plain": "(a) plain Keras 3 ResNet-20 (import keras)",
    "chipnet": "(b) chipnet_tf.prune_low_budget(flops, 0.5) + UpdatePruningStep, the same optimiser",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead --keras 3", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backends",
        nargs="+",
        choices=("tensorflow", "jax", "torch"),
        help="Keras 3 backends, one child process each (default tensorflow jax; --quick: tensorflow)",
    )
    # Keras 3 steps take 2-10x tf_keras' here (JAX and PyTorch on CPU), hence fewer, smaller
    # steps than the tf_keras run: the ratio, not the step time, is the measurement.
    p.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds per backend (default 20)")
    p.add_argument("--steps", type=int, default=10, help="timed fit steps per variant per round (default 10)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed fit steps per variant before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 rounds x 3 steps of batch 8, 1 warm-up step")
    p.add_argument(
        "--resume", action="store_true", help="reuse a backend's finished part (same settings) from the work directory"
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    p.add_argument("--child_output", type=Path, help=argparse.SUPPRESS)  # set: this process is one backend's child
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.batch_size, args.warmup_steps = 2, 3, 8, 1
    args.backends = args.backends or (["tensorflow"] if args.quick else list(TARGET_BACKENDS))
    if args.rounds < 1 or args.steps < 2 or args.batch_size < 1 or args.warmup_steps < 1:
        p.error("need --rounds >= 1, --steps >= 2, --batch_size >= 1, --warmup_steps >= 1")
    return args


# -- one backend (this process) -----------------------------------------------------------
def settings_of(args):
    """What a backend's part was measured with (a part is reused by --resume only if equal)."""
    return {k: getattr(args, k) for k in ("rounds", "steps", "batch_size", "warmup_steps", "seed")}


def low_quantile_ratio(per_round, q=10):
    """chipnet / plain of the pooled ``q``-th percentile step intervals: the steps least slowed
    by other processes, a secondary number for a machine that is shared."""
    low = {v: float(np.percentile([t for x in per_round[v] for t in x], q)) for v in VARIANTS}
    return {"q": q, "per_step_s": low, "ratio": low["chipnet"] / low["plain"]}


def scatter(summary, variant="chipnet"):
    """How the per-round paired ratios of ``variant`` to plain spread: range, quartiles and a
    95% bootstrap interval of their median (stats.paired_comparison against plain, whose own
    ratio is 1 in every round)."""
    rr = np.asarray(summary["round_ratio_vs_plain"][variant])
    vs_plain = paired_comparison(summary, variant, "plain")
    return {
        "min": float(rr.min()),
        "q25": float(np.percentile(rr, 25)),
        "median": float(np.median(rr)),
        "q75": float(np.percentile(rr, 75)),
        "max": float(rr.max()),
        "median_ci95": [1.0 + vs_plain["ci95"][0], 1.0 + vs_plain["ci95"][1]],
        "rounds_chipnet_faster": vs_plain["rounds_first_faster"],
    }


def measure(args):
    """Builds, warms up and times plain and chipnet with this process's Keras 3 backend;
    returns this backend's part of the JSON document."""
    import keras  # the backend is this process's KERAS_BACKEND

    t_start = time.perf_counter()
    dataset = synthetic_dataset(args.batch_size, args.seed)
    print(f"-- Keras {keras.__version__}, backend {keras.backend.backend()}", flush=True)
    make = functools.partial(make_variant, K=keras)
    models, warmup, traces = build_variants(VARIANTS, args, dataset, make)
    timing = time_rounds(models, VARIANTS, args, dataset)
    for v in VARIANTS:
        traces[v]["after_timing"] = tracing_count(models[v][0])
    wall = summarize(timing["wall"], VARIANTS)
    cpu = summarize(timing["cpu"], VARIANTS)
    fit_wall = summarize({v: [[t] for t in timing["fit_wall"][v]] for v in VARIANTS}, VARIANTS)
    print()
    print_table(VARIANTS, wall, cpu, fit_wall["median_per_step_s"])
    ratio = wall["ratio_vs_plain"]["chipnet"]
    spread = scatter(wall)
    print(
        f"backend {keras.backend.backend()}: chipnet / plain = {ratio:.3f}x (per-round range {spread['min']:.3f} .. "
        f"{spread['max']:.3f}, 95% interval of the median {spread['median_ci95'][0]:.3f} .. "
        f"{spread['median_ci95'][1]:.3f}); CPU time {cpu['ratio_vs_plain']['chipnet']:.3f}x; fit() wall "
        f"{fit_wall['ratio_vs_plain']['chipnet']:.3f}x",
        flush=True,
    )
    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "variants": DESCRIPTIONS,
        "params": {v: int(models[v][0].count_params()) for v in VARIANTS},
        "round_orders": timing["orders"],
        "wall": {"raw_step_intervals_s": timing["wall"], **wall},
        "cpu": {"raw_step_intervals_s": timing["cpu"], **cpu},
        "fit_wall": {"raw_per_step_s": timing["fit_wall"], **fit_wall},
        "median_per_step_s": wall["median_per_step_s"],
        "ratio_vs_plain": ratio,
        "scatter": spread,
        "settings": settings_of(args),
        "warmup_s": warmup,
        "train_function_tracing_counts": traces,
        "load_average_1min_at_start_and_after_each_round": timing["load"],
        "runtime_s": time.perf_counter() - t_start,
    }


# -- the parent: one child per backend ------------------------------------------------------
def _child_command(args, backend, out):
    flags = ["--rounds", args.rounds, "--steps", args.steps, "--batch_size", args.batch_size]
    flags += ["--warmup_steps", args.warmup_steps, "--seed", args.seed, "--child_output", out]
    return [sys.executable, "-m", "benchmarks.overhead.keras3", *map(str, flags)]


def run_backend(args, backend, work_dir):
    """Runs one backend's child process (with --resume, unless its part with the same
    settings is in ``work_dir``); returns its part."""
    out = Path(work_dir) / f"{backend}.json"
    if args.resume and out.exists():
        with open(out) as f:
            part = json.load(f)
        if part.get("settings") == settings_of(args):
            print(f"-- backend {backend}: reusing {out}", flush=True)
            return {**part, "reused": True}
    env = {**os.environ, "KERAS_BACKEND": backend}
    subprocess.run(_child_command(args, backend, out), env=env, check=True)
    with open(out) as f:
        return json.load(f)


def target_of(parts):
    """The verdict per target backend measured: chipnet's paired wall ratio <= TARGET_RATIO."""
    checked = {b: p["ratio_vs_plain"] for b, p in parts.items() if b in TARGET_BACKENDS}
    return {
        "rule": f"paired wall step-time ratio chipnet/plain <= {TARGET_RATIO} on each of "
        f"{', '.join(TARGET_BACKENDS)} (other backends reported, not a target)",
        "ratio": TARGET_RATIO,
        "per_backend": {b: {"ratio": r, "met": bool(r <= TARGET_RATIO)} for b, r in checked.items()},
        "met": bool(checked) and all(r <= TARGET_RATIO for r in checked.values()),
    }


def environment():
    return {**common.environment("keras", "jax", "jaxlib", "torch")}


def with_secondary(part):
    """The part with its secondary numbers, computed from its recorded data: the paired CPU
    time ratio and the low-quantile wall ratio."""
    return {
        **part,
        "cpu_ratio_vs_plain": part["cpu"]["ratio_vs_plain"]["chipnet"],
        "low_quantile": low_quantile_ratio(part["wall"]["raw_step_intervals_s"]),
    }


def payload_of(args, parts, elapsed):
    parts = {b: with_secondary(p) for b, p in parts.items()}
    return {
        "benchmark": "chipnet_tf training-step overhead on Keras 3",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "model": "resnet20 built with Keras 3 (import keras): 32x32x3, 3x3 basic blocks 16/32/64, "
            "Conv-BN-ReLU, 1x1 projection shortcuts, GAP, Dense(10)",
            "backends": list(parts),
            "rounds": args.rounds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup_steps,
            "seed": args.seed,
            "quick": args.quick,
            "optimizer": "SGD(0.01, momentum=0.9) for both variants, loss SparseCategoricalCrossentropy"
            "(from_logits), accuracy; data: synthetic tf.data pipeline",
            "timing": "as overhead.json: interval between consecutive batch ends within one fit call (steps - 1 "
            "per fit), wall and process CPU; the timer callback makes Keras 3 dispatch batch ends synchronously "
            "with the logs converted to Python numbers, so every timed step of both variants ends with its "
            "results on the host; ratio_vs_plain = median over rounds of the ratio of round medians (paired); "
            "fit_wall = whole fit() call / steps, paired the same way; one child process per backend",
        },
        "backends": parts,
        "reused_parts": [b for b, p in parts.items() if p.get("reused")],
        "target": target_of(parts),
        "environment": environment(),
        "total_runtime_s": elapsed,  # of this parent; each part has its own runtime_s
    }


def main(argv=None):
    args = parse_args(argv)
    if args.child_output:
        part = measure(args)
        chipnet_io.write_json(args.child_output, part)
        return part
    t_start = time.perf_counter()
    work_dir = args.output.parent / ".work" / "overhead_keras3"
    work_dir.mkdir(parents=True, exist_ok=True)
    parts = {b: run_backend(args, b, work_dir) for b in args.backends}
    payload = payload_of(args, parts, time.perf_counter() - t_start)
    chipnet_io.write_json(args.output, payload)
    print()
    for b, part in parts.items():
        s = part["scatter"]
        verdict = payload["target"]["per_backend"].get(b)
        print(
            f"{b:<10} chipnet / plain = {part['ratio_vs_plain']:.3f}x  [per-round {s['min']:.3f} .. {s['max']:.3f}, "
            f"95% interval {s['median_ci95'][0]:.3f} .. {s['median_ci95'][1]:.3f}]  "
            + (f"target <= {TARGET_RATIO}: {'met' if verdict['met'] else 'NOT met'}" if verdict else "(no target)")
        )
    print(f"wrote {args.output}  (total run time {payload['total_runtime_s']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
