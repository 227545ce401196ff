"""Strip time on Keras 3 against tf_keras: ``strip_pruning`` of the same architecture and masks.

keras.applications ResNet50 (``weights=None``, 224x224), built by tf_keras and by Keras 3
(``import keras``; TensorFlow and JAX backends), stripped to the same masks: one seeded
random draw at a FLOPs budget, made once with tf_keras and handed to every flavour as an
``.npz`` file (``chipnet_tf.save_masks``/``load_masks``; the keys are the channel groups'
names, which each flavour checks against its own analysis). Two paths are timed, as in
``benchmarks.strip``: ``strip_pruning(dense, masks=masks)`` and ``strip_pruning(pruned,
masks=masks)`` of the wrapped model. Each flavour runs in its own child process (Keras 3's
backend is per process): one cold strip and ``--repeats`` warm ones on fresh models (built
untimed), in ``--rounds`` rounds whose flavour order rotates, so that every round pairs the
flavours measured minutes apart. The method is described in benchmarks/README.md, section
"Strip time and memory".

Usage (from the repository root)::

    python -m benchmarks.strip.keras3_speed            # ResNet50, 3 rounds x (1 cold + 2 warm), ~15 min
    python -m benchmarks.strip.keras3_speed --quick    # 1 round x (1 cold + 1 warm), TensorFlow backend only
"""

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from benchmarks.strip.steps import MODELS
from chipnet_tf import io as chipnet_io

RESULTS = Path(__file__).resolve().parent.parent / "results" / "strip_speed_keras3.json"
PATHS = ("strip_dense", "strip")
DESCRIPTIONS = {
    "strip_dense": "chipnet_tf.strip_pruning(dense, masks=masks)  (mask-transfer path)",
    "strip": "chipnet_tf.strip_pruning(pruned, masks=masks), pruned = prune_low_budget(dense) with the masks applied",
}
TARGET_RATIO = 1.5
REFERENCE = "tf_keras"


def flavour_name(flavour, backend):
    return REFERENCE if flavour == REFERENCE else f"keras3/{backend}"


def keras_module(flavour):
    if flavour == REFERENCE:
        from chipnet_tf.compat import keras

        return keras
    import keras  # this process's KERAS_BACKEND

    return keras


def build(K, model, seed):
    """The dense keras.applications model of Keras ``K`` (random weights)."""
    K.utils.set_random_seed(seed)
    return getattr(K.applications, MODELS[model][0])(weights=None)


def draw_masks(dense, budget, seed):
    """Budget-aware hard masks at a FLOPs budget from seeded random N(0, 1) channel scores."""
    rng = np.random.default_rng(seed)
    an = chipnet_tf.analyze(dense, warn=False)
    scores = {g.name: rng.normal(size=g.size) for g in an.groups}
    return chipnet_tf.select_masks(an.spec, scores, budget, "flops")


# -- one flavour (this process) -------------------------------------------------------------
def time_flavour(make_dense, masks, repeats, budget):
    """Strips fresh dense and wrapped models to ``masks``: 1 cold + ``repeats`` warm runs per
    path, wall seconds; checks the masks' keys against this Keras' groups first."""
    dense = make_dense()
    groups = [g.name for g in chipnet_tf.analyze(dense, warn=False).groups]
    keys_match = sorted(groups) == sorted(masks)
    if not keys_match:
        raise ValueError(f"mask keys differ from the groups: {sorted(set(groups) ^ set(masks))[:5]}")
    times = {p: [] for p in PATHS}
    small_params = {}
    K = chipnet_tf.compat.keras_of(dense)
    for i in range(1 + repeats):
        dense = dense if i == 0 else make_dense()
        for path in PATHS:
            source = dense
            if path == "strip":
                source = chipnet_tf.prune_low_budget(dense, budget=budget, budget_type="flops")
                chipnet_tf.apply_masks(source, masks)
            gc.collect()
            t0 = time.perf_counter()
            small = chipnet_tf.strip_pruning(source, masks=masks)
            times[path].append(time.perf_counter() - t0)
            small_params[path] = int(small.count_params())
            del small, source
        del dense
        K.backend.clear_session()
        gc.collect()
        print(
            "    " + ", ".join(f"{p} {times[p][-1]:.2f} s" for p in PATHS) + (" (cold)" if i == 0 else ""), flush=True
        )
    return {
        "cold_s": {p: times[p][0] for p in PATHS},
        "warm_s": {p: times[p][1:] for p in PATHS},
        "mask_keys_match_groups": keys_match,
        "groups": len(groups),
        "stripped_params": small_params,
    }


def settings_of(args):
    """What a child measured with (``--resume`` reuses its file only if equal)."""
    return {k: getattr(args, k) for k in ("model", "repeats", "budget", "seed")}


def child_main(args):
    K = keras_module(args.child)
    masks = chipnet_tf.load_masks(args.masks)
    part = time_flavour(lambda: build(K, args.model, args.seed), masks, args.repeats, args.budget)
    backend = K.backend.backend() if args.child == "keras3" else "tensorflow"
    part.update({"flavour": flavour_name(args.child, backend), "keras": K.__version__, "settings": settings_of(args)})
    chipnet_io.write_json(args.child_output, part)


# -- summary ----------------------------------------------------------------------------------
def summarize(rounds, flavours):
    """Per flavour and path: medians of the warm and the cold runs; per Keras 3 flavour and
    path the paired ratio to tf_keras (median over rounds of the ratio of the rounds' warm
    medians) with its per-round range, and the ratio of the pooled warm medians."""
    out = {}
    for f in flavours:
        parts = [r[f] for r in rounds]
        out[f] = {
            p: {
                "warm_median_s": statistics.median([t for x in parts for t in x["warm_s"][p]]),
                "cold_median_s": statistics.median([x["cold_s"][p] for x in parts]),
                "round_warm_median_s": [statistics.median(x["warm_s"][p]) for x in parts],
            }
            for p in PATHS
        }
    for f in flavours:
        if f == REFERENCE:
            continue
        for p in PATHS:
            mine, ref = out[f][p], out[REFERENCE][p]
            rr = [a / b for a, b in zip(mine["round_warm_median_s"], ref["round_warm_median_s"])]
            mine["round_ratio_vs_tf_keras"] = rr
            mine["ratio_vs_tf_keras"] = statistics.median(rr)
            mine["ratio_range"] = [min(rr), max(rr)]
            mine["ratio_of_medians_vs_tf_keras"] = mine["warm_median_s"] / ref["warm_median_s"]
            mine["cold_ratio_vs_tf_keras"] = mine["cold_median_s"] / ref["cold_median_s"]
    return out


def target_of(summary):
    """Per Keras 3 flavour and path: the warm (paired) and the cold ratio to tf_keras, each
    <= TARGET_RATIO (as benchmarks.strip checks the worse of cold and warm)."""
    per = {
        f: {
            p: {
                "ratio": s[p]["ratio_vs_tf_keras"],
                "cold_ratio": s[p]["cold_ratio_vs_tf_keras"],
                "warm_met": s[p]["ratio_vs_tf_keras"] <= TARGET_RATIO,
                "cold_met": s[p]["cold_ratio_vs_tf_keras"] <= TARGET_RATIO,
                "met": max(s[p]["ratio_vs_tf_keras"], s[p]["cold_ratio_vs_tf_keras"]) <= TARGET_RATIO,
            }
            for p in PATHS
        }
        for f, s in summary.items()
        if f != REFERENCE
    }
    return {
        "rule": f"strip-time ratio Keras 3 / tf_keras <= {TARGET_RATIO}, warm (paired) and cold (ratio of the cold "
        "medians), for each Keras 3 backend measured and both paths",
        "ratio": TARGET_RATIO,
        "per_flavour": per,
        "met": bool(per) and all(v["met"] for x in per.values() for v in x.values()),
    }


# -- the parent: masks once, then rounds of child processes -------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.strip.keras3_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="resnet50", help="dense model (default resnet50)")
    p.add_argument("--backends", nargs="+", choices=("tensorflow", "jax", "torch"), help="Keras 3 backends")
    p.add_argument("--budget", type=float, default=0.5, help="FLOPs budget of the random masks (default 0.5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of one child process per flavour (default 3)")
    p.add_argument("--repeats", type=int, default=2, help="warm strips per path per child (default 2)")
    p.add_argument("--quick", action="store_true", help="1 round, 1 warm strip, TensorFlow backend only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    p.add_argument(
        "--resume", action="store_true", help="reuse finished child results (same settings) from the work directory"
    )
    p.add_argument("--child", choices=(REFERENCE, "keras3"), help=argparse.SUPPRESS)
    p.add_argument("--masks", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child_output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats = 1, 1
    args.backends = args.backends or (["tensorflow"] if args.quick else ["tensorflow", "jax"])
    if args.rounds < 1 or args.repeats < 1 or not 0.0 < args.budget <= 1.0:
        p.error("need --rounds >= 1, --repeats >= 1 and 0 < --budget <= 1")
    return args


def write_masks(args, path):
    """Draws the masks with tf_keras and saves them; returns what the JSON records of them."""
    dense = build(keras_module(REFERENCE), args.model, args.seed)
    masks = draw_masks(dense, args.budget, args.seed)
    if args.resume and Path(path).exists():  # reused children stripped to the file's masks: they must be these
        old = chipnet_tf.load_masks(path)
        if list(old) != list(masks) or any(not np.array_equal(old[k], masks[k]) for k in masks):
            raise ValueError(f"{path} holds other masks than this draw: run without --resume")
    chipnet_tf.save_masks(path, masks)
    report = chipnet_tf.budget_report(dense, masks=masks)
    return {
        "draw": f"select_masks(analyze(dense).spec, random N(0, 1) scores (numpy default_rng({args.seed})), "
        f"{args.budget}, 'flops') on the tf_keras model, saved with save_masks (.npz), loaded with load_masks",
        "groups": len(masks),
        "channels_kept": int(sum(int(m.sum()) for m in masks.values())),
        "channels_total": int(sum(m.size for m in masks.values())),
        "flops_fraction": float(report.totals["flops"]["fraction"]),
    }


def run_child(args, flavour, backend, masks_path, out):
    """One flavour's child process (with --resume, its finished result if the settings match)."""
    if args.resume and out.exists():
        with open(out) as f:
            part = json.load(f)
        if part.get("settings") == settings_of(args):
            print(f"  {flavour_name(flavour, backend)}: reusing {out}", flush=True)
            return {**part, "reused": True}
    cmd = [sys.executable, "-m", "benchmarks.strip.keras3_speed", "--child", flavour, "--model", args.model]
    cmd += ["--masks", str(masks_path), "--child_output", str(out), "--repeats", str(args.repeats)]
    cmd += ["--budget", str(args.budget), "--seed", str(args.seed)]
    print(f"  {flavour_name(flavour, backend)}", flush=True)
    subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": backend}, check=True)
    with open(out) as f:
        return json.load(f)


def print_summary(summary, target):
    for f, s in summary.items():
        for p in PATHS:
            line = f"  {f:<17} {p:<12} warm median {s[p]['warm_median_s']:6.2f} s, cold {s[p]['cold_median_s']:6.2f} s"
            if "ratio_vs_tf_keras" in s[p]:
                lo, hi = s[p]["ratio_range"]
                line += f"; / tf_keras {s[p]['ratio_vs_tf_keras']:.2f}x (rounds {lo:.2f} .. {hi:.2f})"
                line += f", cold {s[p]['cold_ratio_vs_tf_keras']:.2f}x"
            print(line)
    verdict = "met" if target["met"] else "NOT met"
    print(f"target (Keras 3 / tf_keras <= {TARGET_RATIO}x, warm paired and cold): {verdict}")


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    t_start = time.perf_counter()
    work_dir = args.output.parent / ".work" / "strip_speed_keras3"
    work_dir.mkdir(parents=True, exist_ok=True)
    masks_path = work_dir / "masks.npz"
    masks_info = write_masks(args, masks_path)
    jobs = [(REFERENCE, "tensorflow")] + [("keras3", b) for b in args.backends]
    flavours = [flavour_name(*j) for j in jobs]
    load = [os.getloadavg()[0]]
    rounds, orders = [], []
    for r in range(args.rounds):
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
        orders.append([flavour_name(*j) for j in order])
        print(f"round {r + 1}/{args.rounds}", flush=True)
        rounds.append(
            {flavour_name(*j): run_child(args, *j, masks_path, work_dir / f"{r}-{j[0]}-{j[1]}.json") for j in order}
        )
        load.append(os.getloadavg()[0])
    summary = summarize(rounds, flavours)
    target = target_of(summary)
    print_summary(summary, target)
    params = {f: rounds[0][f]["stripped_params"] for f in flavours}
    payload = {
        "benchmark": "chipnet_tf strip_pruning time, Keras 3 against tf_keras",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "model": f"keras.applications.{MODELS[args.model][0]}(weights=None), 224x224x3, in each flavour's Keras",
            "flavours": flavours,
            "paths": DESCRIPTIONS,
            "budget": args.budget,
            "budget_type": "flops",
            "rounds": args.rounds,
            "repeats": args.repeats,
            "quick": args.quick,
            "seed": args.seed,
            "timing": "wall perf_counter around strip_pruning only; one child process per flavour per round (flavour "
            "order rotating), in each: 1 cold strip per path then --repeats warm ones on freshly built models "
            "(builds, wrapping and apply_masks untimed); ratio = median over rounds of the ratio of the rounds' warm "
            "medians (paired)",
        },
        "masks": masks_info,
        "round_orders": orders,
        "rounds": rounds,
        "reused_child_results": sum(bool(part.get("reused")) for r in rounds for part in r.values()),
        "summary": summary,
        "stripped_params": params,
        "stripped_params_equal": all(p == params[REFERENCE] for p in params.values()),
        "target": target,
        "environment": common.environment("keras", "jax", "jaxlib"),
        "load_average_1min_at_start_and_after_each_round": load,
        "total_runtime_s": time.perf_counter() - t_start,  # this parent's; reused children's not included
    }
    chipnet_io.write_json(args.output, payload)
    print(f"wrote {args.output}  (total run time {payload['total_runtime_s']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
