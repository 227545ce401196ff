"""Time and peak memory of wrapping and stripping ResNet-50 at 50 % channels.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "Strip time and memory".

Usage (from the repository root)::

    python -m benchmarks.strip_speed                  # ResNet-50, 1 cold + 3 timed runs, ~3-5 minutes
    python -m benchmarks.strip_speed --quick          # 1 cold + 1 timed run, ~3 minutes
    python -m benchmarks.strip_speed --model mobilenetv2 --profile
"""

import argparse
import cProfile
import datetime
import gc
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from chipnet_tf import io as chipnet_io
from chipnet_tf.compat import keras  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "strip_speed.json"
TARGET_STRIP_S = 5.0
TARGET_MEMORY_RATIO = 2.0
STEPS = ("wrap", "masks", "strip", "strip_dense")
STRIP_STEPS = ("strip", "strip_dense")
DESCRIPTIONS = {
    "wrap": "(a) chipnet_tf.prune_low_budget(dense, budget, 'channels')",
    "masks": "(b) analyze(dense) + select_masks(random N(0,1) scores, budget, 'channels') + apply_masks(pruned)",
    "strip": "(c) chipnet_tf.strip_pruning(pruned, masks=masks)",
    "strip_dense": "(d) chipnet_tf.strip_pruning(dense, masks=masks)  (mask-transfer path)",
}
MODELS = {
    "resnet50": ("ResNet50", lambda: keras.applications.ResNet50(weights=None)),
    "mobilenetv2": ("MobileNetV2", lambda: keras.applications.MobileNetV2(weights=None)),
}
MB = 1e6


# -- the measured steps -------------------------------------------------------------------
def build_dense(model, seed):
    keras.utils.set_random_seed(seed)
    return MODELS[model][1]()


def weight_bytes(model):
    return int(sum(int(np.prod(v.shape)) * v.dtype.size for v in model.weights))


def random_masks(dense, budget, seed):
    """Budget-aware hard masks from random N(0, 1) channel scores."""
    rng = np.random.default_rng(seed)
    an = chipnet_tf.analyze(dense, warn=False)
    return chipnet_tf.select_masks(an.spec, {g.name: rng.normal(size=g.size) for g in an.groups}, budget, "channels")


def prepare(step, args):
    """Everything ``step`` needs, built outside the measured region."""
    state = {"dense": build_dense(args.model, args.seed)}
    if step in ("masks", "strip"):
        state["pruned"] = chipnet_tf.prune_low_budget(state["dense"], budget=args.budget, budget_type="channels")
    if step in ("strip", "strip_dense"):
        state["masks"] = random_masks(state["dense"], args.budget, args.seed)
    if step == "strip":
        chipnet_tf.apply_masks(state["pruned"], state["masks"])
    return state


def run_step(step, state, args):
    """Runs the measured step; returns its result (kept alive by the caller)."""
    if step == "wrap":
        return chipnet_tf.prune_low_budget(state["dense"], budget=args.budget, budget_type="channels")
    if step == "masks":
        masks = random_masks(state["dense"], args.budget, args.seed)
        chipnet_tf.apply_masks(state["pruned"], masks)
        return masks
    if step == "strip":
        return chipnet_tf.strip_pruning(state["pruned"], masks=state["masks"])
    if step == "strip_dense":
        return chipnet_tf.strip_pruning(state["dense"], masks=state["masks"])
    raise ValueError(f"unknown step {step!r}")


# -- memory (child process) ------------------------------------------------------------------
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_hwm():
    """Resets the kernel's peak-RSS mark VmHWM (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """Samples the process RSS every ``interval`` seconds; ``peak`` is the largest sample."""

    def __init__(self, interval=0.005):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = rss_bytes()
        self.samples = 1
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_bytes())
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_bytes())


def measure_memory(step, state, args, with_tracemalloc=False):
    """RSS (and optionally tracemalloc) peak of one run of ``step``, beyond the RSS before it."""
    gc.collect()
    time.sleep(0.05)
    before = rss_bytes()
    hwm_reset = reset_hwm()
    sampler = RssSampler()
    sampler.start()
    if with_tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = run_step(step, state, args)
    elapsed = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] if with_tracemalloc else None
    if with_tracemalloc:
        tracemalloc.stop()
    sampler.stop()
    after = rss_bytes()
    hwm = _status_kb("VmHWM") if hwm_reset else None
    peak = max(sampler.peak, after, hwm or 0)
    del result
    return {
        "time_s": elapsed,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "peak_rss_sampled_bytes": sampler.peak,
        "peak_rss_vmhwm_bytes": hwm,
        "samples": sampler.samples,
        "peak_extra_bytes": peak - before,
        "retained_bytes": after - before,
        "tracemalloc_peak_bytes": traced,
    }


def child_main(args):
    out = {"step": args.child, "dense_weight_bytes": None}
    phases = ("cold", "warm") if args.quick else ("cold", "warm", "tracemalloc")  # tracemalloc is slow
    for phase in phases:
        state = prepare(args.child, args)
        out["dense_weight_bytes"] = weight_bytes(state["dense"])
        out[phase] = measure_memory(args.child, state, args, with_tracemalloc=phase == "tracemalloc")
        del state
        gc.collect()
    out["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    chipnet_io.write_json(args.child_output, out)


def _traced_mb(memory):
    traced = memory.get("tracemalloc", {}).get("tracemalloc_peak_bytes")
    return "-" if traced is None else f"{traced / MB:.1f}"


def measure_in_subprocess(step, args):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "child.json"
        cmd = [sys.executable, "-m", "benchmarks.strip_speed", "--child", step, "--child_output", str(path)]
        cmd += ["--model", args.model, "--seed", str(args.seed), "--budget", str(args.budget)]
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise RuntimeError(f"memory child for step {step!r} failed (exit {proc.returncode})")
        return json.loads(path.read_text())


# -- timing, sanity and profile (this process) -------------------------------------------------
def time_steps(args):
    """Wall and process CPU ``{step: [seconds, ...]}`` (index 0: cold) and the first round's sanity checks."""
    times = {s: [] for s in STEPS}
    cpu_times = {s: [] for s in STEPS}
    sanity = {}
    for r in range(1 + args.repeats):
        for step in STEPS:
            state = prepare(step, args)
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_step(step, state, args)
            times[step].append(time.perf_counter() - t0)
            cpu_times[step].append(time.process_time() - c0)
            if r == 0 and step in STRIP_STEPS:
                sanity[step] = sanity_check(step, state, result)
            del state, result
        keras.backend.clear_session()
        gc.collect()
        print(
            f"  round {r + 1}/{1 + args.repeats}{' (cold)' if r == 0 else ''}: "
            + ", ".join(f"{s} {times[s][-1]:.2f} s" for s in STEPS),
            flush=True,
        )
    return times, cpu_times, sanity


def sanity_check(step, state, small):
    dense, masks = state["dense"], state["masks"]
    expected = int(chipnet_tf.budget_report(dense, masks=masks).totals["params"]["kept"])
    out = {
        "small_count_params": int(small.count_params()),
        "budget_report_params_kept": expected,
        "dense_count_params": int(dense.count_params()),
    }
    out["params_match"] = out["small_count_params"] == expected
    if step == "strip":  # the stripped model against the wrapped model under its hard masks
        x = np.random.default_rng(1).normal(size=(2, *dense.input_shape[1:])).astype("float32")
        diff = np.abs(np.asarray(state["pruned"](x, training=False)) - np.asarray(small(x, training=False)))
        out["max_abs_prediction_diff_vs_wrapped_hard"] = float(diff.max())
    return out


def profile_strip(args, top=15):
    state = prepare("strip", args)
    run_step("strip", state, args)  # warm-up: profile a warm run
    profiler = cProfile.Profile()
    profiler.enable()
    result = run_step("strip", state, args)
    profiler.disable()
    del result
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


# -- reporting ----------------------------------------------------------------------------------
def environment():
    return {
        **common.environment(),
        "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }


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
        f"before it, fresh process, result alive; ratio = peak extra / dense weights ({dense_bytes / MB:.1f} MB); MB = 1e6 B"
    )
    header = (
        f"{'step':<12} {'cold s':>7} {'median s':>8} {'min s':>6} {'CPU med s':>9} {'fresh s':>7}"
        f" {'peak extra MB':>13} {'ratio':>6} {'warm MB':>8} {'warm ratio':>10} {'retained MB':>11} {'tracemalloc MB':>14}"
    )
    print(header)
    print("-" * len(header))
    for step in STEPS:
        t, m = timing[step], memory[step]
        cold, warm = m["cold"], m["warm"]
        print(
            f"{step:<12} {t['cold_s']:>7.2f} {t['median_s']:>8.2f} {t['min_s']:>6.2f} {t['cpu_median_s']:>9.2f} {cold['time_s']:>7.2f}"
            f" {cold['peak_extra_bytes'] / MB:>13.1f} {cold['peak_extra_bytes'] / dense_bytes:>5.2f}x"
            f" {warm['peak_extra_bytes'] / MB:>8.1f} {warm['peak_extra_bytes'] / dense_bytes:>9.2f}x"
            f" {cold['retained_bytes'] / MB:>11.1f} {_traced_mb(m):>14}"
        )


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.strip_speed", description=__doc__.split("\n\n")[0])
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


def measure_memory_all(args):
    """Per step, the fresh-subprocess memory measurement (see :func:`measure_in_subprocess`)."""
    memory = {}
    for step in STEPS:
        memory[step] = measure_in_subprocess(step, args)
        c = memory[step]["cold"]
        print(
            f"  memory child {step:<11}: RSS before {c['rss_before_bytes'] / MB:.0f} MB, peak extra "
            f"{c['peak_extra_bytes'] / MB:.1f} MB ({c['samples']} samples, VmHWM "
            f"{'reset' if c['peak_rss_vmhwm_bytes'] is not None else 'unavailable'})",
            flush=True,
        )
    return memory


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
