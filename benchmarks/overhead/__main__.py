"""Training-step overhead of ChipNet gates vs. a plain model vs. tfmot magnitude pruning.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "Training-step overhead".

Usage (from the repository root)::

    python -m benchmarks.overhead            # default: 30 rounds x 20 steps, ~4-5 minutes
    python -m benchmarks.overhead --quick    # ~1 minute smoke run
    python -m benchmarks.overhead --breakdown
    python -m benchmarks.overhead --keras 3  # Keras 3, plain vs ChipNet per backend (benchmarks.overhead.keras3)
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.overhead.rounds import build_variants, time_rounds
from benchmarks.overhead.stats import paired_comparison, paired_difference, print_table, summarize
from benchmarks.overhead.variants import (
    BREAKDOWN_VARIANTS,
    DESCRIPTIONS,
    MAIN_VARIANTS,
    synthetic_dataset,
    time_callback_hooks,
    tracing_count,
)
from chipnet_tf import io as chipnet_io
from chipnet_tf.compat import tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

RESULTS = Path(__file__).resolve().parent.parent / "results" / "overhead.json"
TARGET_RATIO = 1.10


# -- reporting ------------------------------------------------------------------------
def environment():
    return {
        **common.environment("tensorflow-model-optimization"),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def write_json_atomic(path, payload):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    chipnet_io.write_json(path, payload)


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    # 30 rounds: per-round ratios scatter by about +-5% here, and chipnet's and tfmot's
    # overheads differ by about 1%; 10 rounds ordered them differently from run to run.
    p.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    p.add_argument("--steps", type=int, default=20, help="timed fit steps per variant per round (default 20)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--warmup_steps", type=int, default=5, help="untimed fit steps per variant before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="~1 minute run: 3 rounds x 8 steps, 3 warm-up steps")
    p.add_argument(
        "--breakdown", action="store_true", help="also time ablations of the ChipNet model (attributes the overhead)"
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    p.add_argument("--keras", choices=("2", "3"), default="2", help="3: the Keras 3 mode (see its --help)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup_steps = 3, 8, 3
    if args.rounds < 1 or args.steps < 2 or args.batch_size < 1 or args.warmup_steps < 1:
        p.error("need --rounds >= 1, --steps >= 2, --batch_size >= 1, --warmup_steps >= 1")
    return args


def print_verdict(wall, cpu, load, target_met, vs_tfmot):
    ratios = wall["ratio_vs_plain"]
    for label, v in (("(b)/(a) chipnet", "chipnet"), ("(c)/(a) tfmot  ", "tfmot")):
        print(
            f"{label} / plain = {ratios[v]:.3f}x   (ratio of pooled medians "
            f"{wall['ratio_of_medians_vs_plain'][v]:.3f}x, CPU time {cpu['ratio_vs_plain'][v]:.3f}x)"
        )
    if load:
        print(
            f"1-min load average during the run: {min(load):.1f} .. {max(load):.1f} (machine has {os.cpu_count()} CPUs)"
        )
    print(
        f"chipnet vs tfmot, per round: ratio difference median {vs_tfmot['median_difference']:+.4f} "
        f"(95% bootstrap interval {vs_tfmot['ci95'][0]:+.4f} .. {vs_tfmot['ci95'][1]:+.4f}); chipnet faster in "
        f"{vs_tfmot['rounds_first_faster']} of {vs_tfmot['rounds']} rounds; "
        + ("distinguishable" if vs_tfmot["distinguishable"] else "not distinguishable at this number of rounds")
    )
    print(
        f"target (chipnet <= {TARGET_RATIO:.2f}x plain and below tfmot's ratio; paired wall-time ratios) met: "
        f"{'yes' if target_met else 'no'}"
    )


def breakdown_of(model, wall, cpu):
    """Attributes the ChipNet overhead from the ablation variants; prints and returns it."""
    hooks = time_callback_hooks(model)
    breakdown = {"callback_hooks_called_directly_s": hooks}
    print(
        "\nChipNet overhead breakdown (paired per-round differences of medians, ms/step; "
        "UpdatePruningStep's batch hooks"
    )
    print(f"called directly in a loop cost {hooks * 1e3:.3f} ms/step):")
    print(f"  {'component':<34} {'wall':>8} {'CPU':>8}")
    for key, hi, lo in (
        ("callback (in fit)", "chipnet", "chipnet_no_callback"),
        ("gradients into the gate masks", "chipnet_no_callback", "chipnet_no_mask_grad"),
        ("gate multiplies (fwd + d/dx)", "chipnet_no_mask_grad", "chipnet_no_gates"),
        ("controller math, losses, metrics", "chipnet_no_gates", "plain"),
        ("total", "chipnet", "plain"),
    ):
        dw = paired_difference(wall, hi, lo)
        dc = paired_difference(cpu, hi, lo)
        breakdown[key] = {"wall_s": dw, "cpu_s": dc, "minuend": hi, "subtrahend": lo}
        print(f"  {key:<34} {dw * 1e3:>8.2f} {dc * 1e3:>8.2f}")
    return breakdown


def payload_of(args, variants, models, timing, results):
    """The JSON document of one run (``results``: the computed summaries and verdicts)."""
    wall, cpu, fit_wall_medians = results["wall"], results["cpu"], results["fit_wall_medians"]
    ratios = wall["ratio_vs_plain"]
    return {
        "benchmark": "chipnet_tf training-step overhead",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "model": "resnet20 (32x32x3, 3x3 basic blocks 16/32/64, Conv-BN-ReLU, 1x1 projection shortcuts, "
            "GAP, Dense(10))",
            "rounds": args.rounds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup_steps,
            "seed": args.seed,
            "quick": args.quick,
            "breakdown": args.breakdown,
            "optimizer": "SGD(0.01, momentum=0.9), loss SparseCategoricalCrossentropy(from_logits), accuracy",
            "timing": "step time = interval between consecutive batch ends within one fit call (steps - 1 "
            "per fit; the first batch, setup and teardown of each fit excluded), recorded by a callback placed "
            "after the pruning callback, as wall (perf_counter) and process CPU time (process_time, all "
            "threads); median_per_step_s = median of all rounds' intervals; ratio_vs_plain (headline) = median "
            "over rounds of the ratio of round medians (paired); fit wall = whole fit() call / steps",
        },
        "variants": {v: DESCRIPTIONS[v] for v in variants},
        "params": {v: int(models[v][0].count_params()) for v in variants},
        "round_orders": timing["orders"],
        "wall": {"raw_step_intervals_s": timing["wall"], **wall},
        "cpu": {"raw_step_intervals_s": timing["cpu"], **cpu},
        "fit_wall": {
            "raw_per_step_s": timing["fit_wall"],
            "median_per_step_s": fit_wall_medians,
            "ratio_vs_plain": {v: fit_wall_medians[v] / fit_wall_medians["plain"] for v in variants},
        },
        "median_per_step_s": wall["median_per_step_s"],
        "ratio_vs_plain": ratios,
        "target": {
            "rule": f"paired wall step-time ratios: chipnet/plain <= {TARGET_RATIO} and chipnet/plain < tfmot/plain",
            "chipnet_ratio": ratios["chipnet"],
            "tfmot_ratio": ratios["tfmot"],
            "met": bool(results["target_met"]),
            "chipnet_vs_tfmot": results["vs_tfmot"],
        },
        "breakdown": results["breakdown"],
        "warmup_s": results["warmup"],
        "train_function_tracing_counts": results["traces"],
        "environment": results["environment"],
        "load_average_1min_at_start_and_after_each_round": timing["load"],
        "total_runtime_s": results["elapsed"],
    }


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--keras", choices=("2", "3"), default="2")
    flavour, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if flavour.keras == "3":
        from benchmarks.overhead import keras3

        return keras3.main(rest)
    args = parse_args(rest)
    t_start = time.perf_counter()
    variants = list(MAIN_VARIANTS) + (list(BREAKDOWN_VARIANTS) if args.breakdown else [])
    dataset = synthetic_dataset(args.batch_size, args.seed)
    env = environment()
    print(
        f"chipnet_tf overhead benchmark: ResNet-20 32x32x3, batch {args.batch_size}, {args.rounds} rounds x "
        f"{args.steps} steps, CPU x{env['os_cpu_count']}, tf {env['tensorflow']}, tf_keras {env['tf_keras']}, "
        f"tfmot {env['tensorflow_model_optimization']}",
        flush=True,
    )
    models, warmup, traces = build_variants(variants, args, dataset)
    timing = time_rounds(models, variants, args, dataset)
    for v in variants:
        traces[v]["after_timing"] = tracing_count(models[v][0])
    retraced = [v for v in variants if traces[v]["after_warmup"] != traces[v]["after_timing"]]

    wall = summarize(timing["wall"], variants)
    cpu = summarize(timing["cpu"], variants)
    fit_wall_medians = {v: statistics.median(timing["fit_wall"][v]) for v in variants}
    print()
    print_table(variants, wall, cpu, fit_wall_medians)
    print()
    if retraced:
        print(f"WARNING: train_function retraced during timing for {retraced}")
    ratios = wall["ratio_vs_plain"]
    target_met = ratios["chipnet"] <= TARGET_RATIO and ratios["chipnet"] < ratios["tfmot"]
    vs_tfmot = paired_comparison(wall, "chipnet", "tfmot")
    print_verdict(wall, cpu, timing["load"], target_met, vs_tfmot)
    breakdown = breakdown_of(models["chipnet"][0], wall, cpu) if args.breakdown else None

    elapsed = time.perf_counter() - t_start
    results = {
        "wall": wall,
        "cpu": cpu,
        "fit_wall_medians": fit_wall_medians,
        "target_met": target_met,
        "vs_tfmot": vs_tfmot,
        "breakdown": breakdown,
        "warmup": warmup,
        "traces": traces,
        "environment": env,
        "elapsed": elapsed,
    }
    payload = payload_of(args, variants, models, timing, results)
    write_json_atomic(args.output, payload)
    print(f"\nwrote {args.output}  (total run time {elapsed:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
