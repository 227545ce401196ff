"""Time and peak memory of wrapping and stripping ResNet-50 at 50 % channels.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "Strip time and memory".

Usage (from the repository root)::

    python -m benchmarks.strip                  # ResNet-50, 1 cold + 3 timed runs, ~3-5 minutes
    python -m benchmarks.strip --quick          # 1 cold + 1 timed run, ~3 minutes
    python -m benchmarks.strip --model mobilenetv2 --profile
"""

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

from benchmarks import common
from benchmarks.strip.memory import MB, child_main, measure_memory_all
from benchmarks.strip.steps import (
    DESCRIPTIONS,
    MODELS,
    STEPS,
    STRIP_STEPS,
    build_dense,
    profile_strip,
    time_steps,
    weight_bytes,
)
from chipnet_tf import io as chipnet_io

RESULTS = Path(__file__).resolve().parent.parent / "results" / "strip_speed.json"
TARGET_STRIP_S = 5.0
TARGET_MEMORY_RATIO = 2.0


# -- reporting ----------------------------------------------------------------------------------
def environment():
    return {
        **common.environment(),
        "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }


def _traced_mb(memory):
    traced = memory.get("tracemalloc", {}).get("tracemalloc_peak_bytes")
    return "-" if traced is None else f"{traced / MB:.1f}"


def summarize_times(times, cpu_times):
    out = {}
    for step, t in times.items():
        warm, cpu = t[1:], cpu_times[step]
        out[step] = {
            "cold_s": t[0],
            "median_s": statistics.median(warm),
            "min_s": min(warm),
            "raw_s": t,
            "cpu_cold_s": cpu[0],
            "cpu_median_s": statistics.median(cpu[1:]),
            "cpu_raw_s": cpu,
        }
    return out


def print_table(timing, memory, dense_bytes):
    print("cold/median/min s = wall time in this process (cold = first run); CPU med s = process CPU time;")
    print("fresh s = wall time of the cold run in the memory child; peak extra = peak RSS during the step - RSS")
    print(
        "before it, fresh process, result alive; ratio = peak extra / dense weights "
        f"({dense_bytes / MB:.1f} MB); MB = 1e6 B"
    )
    header = (
        f"{'step':<12} {'cold s':>7} {'median s':>8} {'min s':>6} {'CPU med s':>9} {'fresh s':>7}"
        f" {'peak extra MB':>13} {'ratio':>6} {'warm MB':>8} {'warm ratio':>10} {'retained MB':>11}"
        f" {'tracemalloc MB':>14}"
    )
    print(header)
    print("-" * len(header))
    for step in STEPS:
        t, m = timing[step], memory[step]
        cold, warm = m["cold"], m["warm"]
        print(
            f"{step:<12} {t['cold_s']:>7.2f} {t['median_s']:>8.2f} {t['min_s']:>6.2f} {t['cpu_median_s']:>9.2f}"
            f" {cold['time_s']:>7.2f}"
            f" {cold['peak_extra_bytes'] / MB:>13.1f} {cold['peak_extra_bytes'] / dense_bytes:>5.2f}x"
            f" {warm['peak_extra_bytes'] / MB:>8.1f} {warm['peak_extra_bytes'] / dense_bytes:>9.2f}x"
            f" {cold['retained_bytes'] / MB:>11.1f} {_traced_mb(m):>14}"
        )


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.strip", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="resnet50", help="dense model (default resnet50)")
    p.add_argument("--budget", type=float, default=0.5, help="channel budget (default 0.5)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per step after the cold one (default 3)")
    p.add_argument("--quick", action="store_true", help="1 repeat after the cold run; no tracemalloc phase")
    p.add_argument("--profile", action="store_true", help="cProfile one warm strip run, print the top 15")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    p.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--child_output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.repeats < 1 or not 0.0 < args.budget <= 1.0:
        p.error("need --repeats >= 1 and 0 < --budget <= 1")
    if args.child and not args.child_output:
        p.error("--child needs --child_output")
    return args


def describe_dense(args):
    """``(weight bytes, params, input shape)`` of the dense model (built, then dropped)."""
    dense = build_dense(args.model, args.seed)
    return weight_bytes(dense), int(dense.count_params()), tuple(dense.input_shape[1:])


def print_sanity(sanity):
    for step in STRIP_STEPS:
        s = sanity[step]
        line = (
            f"sanity {step:<11}: small.count_params() = {s['small_count_params']:,}, budget_report kept params = "
            f"{s['budget_report_params_kept']:,} ({'match' if s['params_match'] else 'MISMATCH'}; dense "
            f"{s['dense_count_params']:,})"
        )
        if "max_abs_prediction_diff_vs_wrapped_hard" in s:
            line += f", max |wrapped(hard) - stripped| = {s['max_abs_prediction_diff_vs_wrapped_hard']:.2e}"
        print(line)


def check_targets(timing, memory, dense_bytes):
    """Per strip path: the time and memory targets, printed and returned."""
    targets = {}
    for step in STRIP_STEPS:
        worst_s = max(timing[step]["cold_s"], timing[step]["median_s"])
        ratio = memory[step]["cold"]["peak_extra_bytes"] / dense_bytes
        targets[step] = tt = {
            "time_s_checked": worst_s,
            "time_met": worst_s <= TARGET_STRIP_S,
            "memory_ratio_checked": ratio,
            "memory_met": ratio <= TARGET_MEMORY_RATIO,
        }
        print(
            f"target {step:<11} strip <= {TARGET_STRIP_S:g} s: {'met' if tt['time_met'] else 'NOT met'} "
            f"(measured {worst_s:.2f} s = worse of cold {timing[step]['cold_s']:.2f} s and median "
            f"{timing[step]['median_s']:.2f} s)"
        )
        print(
            f"target {step:<11} peak memory <= {TARGET_MEMORY_RATIO:g}x dense weights: "
            f"{'met' if tt['memory_met'] else 'NOT met'} (measured {ratio:.2f}x = "
            f"{memory[step]['cold']['peak_extra_bytes'] / MB:.1f} MB)"
        )
    return targets


def payload_of(args, dense, measured):
    """The JSON document of one run. ``dense``: ``(weight bytes, params, input shape)``;
    ``measured``: timing, memory, sanity, targets, profile, environment, load, elapsed."""
    dense_bytes, dense_params, input_shape = dense
    memory, targets = measured["memory"], measured["targets"]
    return {
        "benchmark": "chipnet_tf strip_pruning / prune_low_budget time and peak memory",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "model": f"keras.applications.{MODELS[args.model][0]}(weights=None), input {input_shape}",
            "budget": args.budget,
            "budget_type": "channels",
            "masks": "select_masks on random N(0, 1) scores (numpy default_rng(seed))",
            "repeats": args.repeats,
            "quick": args.quick,
            "seed": args.seed,
            "timing": "wall perf_counter in the parent process; fresh objects per run (built untimed); "
            "clear_session after every round; run 0 = cold, median/min over the rest",
            "memory": "fresh subprocess per step; peak extra = max(5 ms VmRSS samples, VmHWM reset via "
            "/proc/self/clear_refs, RSS after) - RSS before, result kept alive; phases cold, warm "
            "(second run in the process), tracemalloc (third run, tracemalloc peak = secondary number)",
        },
        "steps": DESCRIPTIONS,
        "dense": {"params": dense_params, "weight_bytes": dense_bytes},
        "timing": measured["timing"],
        "memory": memory,
        "memory_ratio_to_dense_weights": {
            s: {ph: memory[s][ph]["peak_extra_bytes"] / dense_bytes for ph in ("cold", "warm")} for s in STEPS
        },
        "sanity": measured["sanity"],
        "target": {
            "rule": f"strip (both paths) <= {TARGET_STRIP_S} s (worse of cold and median) and peak extra RSS "
            f"(cold, fresh process) <= {TARGET_MEMORY_RATIO}x dense weight bytes",
            "per_step": targets,
            "met": all(t["time_met"] and t["memory_met"] for t in targets.values()),
        },
        "profile_strip_top15_cumulative": measured["profile"],
        "environment": measured["environment"],
        "load_average_1min_start_end": measured["load"],
        "total_runtime_s": measured["elapsed"],
    }


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    t_start = time.perf_counter()
    env = environment()
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    dense = describe_dense(args)
    dense_bytes, dense_params, input_shape = dense
    print(
        f"chipnet_tf strip benchmark: {MODELS[args.model][0]} {input_shape}, {dense_params:,} params, weights "
        f"{dense_bytes / MB:.1f} MB; budget {args.budget:g} channels; 1 cold + {args.repeats} timed runs per step; "
        f"CPU x{env['os_cpu_count']}, tf {env['tensorflow']}, tf_keras {env['tf_keras']}",
        flush=True,
    )
    times, cpu_times, sanity = time_steps(args)
    timing = summarize_times(times, cpu_times)
    memory = measure_memory_all(args)
    print()
    print_table(timing, memory, dense_bytes)
    print()
    print_sanity(sanity)
    targets = check_targets(timing, memory, dense_bytes)
    if load:
        load.append(os.getloadavg()[0])
        print(f"1-min load average at start / end: {load[0]:.1f} / {load[1]:.1f} (machine has {os.cpu_count()} CPUs)")
    profile = None
    if args.profile:
        profile = profile_strip(args)
        print("\ncProfile of one warm strip_pruning(pruned, masks=masks) run, top 15 by cumulative time:")
        print(profile)
    elapsed = time.perf_counter() - t_start
    measured = {
        "timing": timing,
        "memory": memory,
        "sanity": sanity,
        "targets": targets,
        "profile": profile,
        "environment": env,
        "load": load,
        "elapsed": elapsed,
    }
    payload = payload_of(args, dense, measured)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    chipnet_io.write_json(args.output, payload)
    print(f"\nwrote {args.output}  (total run time {elapsed:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
