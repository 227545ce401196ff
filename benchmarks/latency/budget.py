"""Latency as a budget: is the table's prediction right, and do latency budgets
deliver the latency asked for?

Per model and quantization (float32, int8):

1. ``chipnet_tf.latency.profile`` of the dense model (timed, with a fresh cache), then again
   (the cache hit);
2. predictor: 20 random mask sets (random channel scores, FLOPs budgets spread over
   0.05-0.9), stripped, converted and timed interleaved with the dense model (the method
   of benchmarks/latency/); predicted ratio = table(masks) / table(dense), error =
   measured ratio / predicted ratio - 1;
3. latency budgets 0.5 / 0.25 / 0.1 (L1-norm channel scores, as benchmarks/latency/),
   side by side with FLOPs budgets 0.5 / 0.25 / 0.1 and with the FLOPs-budget network of
   equal predicted latency (FLOPs and parameters kept at the same latency), all timed in
   the same interleaved rounds as the predictor's sets.

Usage::

    python -m benchmarks.latency.budget                      # all models, float32 and int8
    python -m benchmarks.latency.budget --models resnet50 --quantizations none --sets 5
"""

import argparse
import datetime
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks.latency.models import build_dense, channel_scores, make_interpreter
from benchmarks.latency.timing import environment, interleaved_timing, summarize
from chipnet_tf import io as chipnet_io
from chipnet_tf.compat import keras
from chipnet_tf.latency.table import attach
from chipnet_tf.litert import convert_traced

RESULTS = Path(__file__).resolve().parent.parent / "results" / "latency_budget.json"
MODELS = ("resnet50", "mobilenet_v2", "keras_mobilenet_v2_96")
BUDGETS = (0.5, 0.25, 0.1)
TARGET_FACTOR = 1.10


def build(name, args):
    if name == "keras_mobilenet_v2_96":
        keras.utils.set_random_seed(args.seed)
        model = keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), weights=None, classes=10, classifier_activation=None
        )
        rng = np.random.default_rng(args.seed)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.gamma.shape[0]
                layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
                layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        return model
    return build_dense(name, args)


def _convert(model, quantization):
    shapes = [tuple(model.inputs[0].shape[1:])]
    return convert_traced(model, shapes, quantization, int8_io=False)


def flops_budget_at_latency(spec, masks_at, target_ms):
    """The FLOPs budget whose masks (``masks_at(budget)``) have the predicted latency closest
    to ``target_ms`` from below (binary search: more FLOPs never cost less latency)."""
    lo, hi = 0.001, 1.0
    for _ in range(25):
        mid = (lo + hi) / 2
        masks = masks_at(mid)
        if spec.value([masks[g].sum() for g in spec.group_names], "latency") <= target_ms:
            lo = mid
        else:
            hi = mid
    return lo


def _select(spec, scores, budget, budget_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return chipnet_tf.select_masks(spec, scores, budget, budget_type)


def variants_for(dense, spec, args):
    """``{name: (masks, record)}``: the predictor's random sets and the budget rows."""
    rng = np.random.default_rng(args.seed + 7)
    out = {}
    for i, b in enumerate(np.linspace(0.05, 0.9, args.sets)):
        scores = {g: rng.random(n) for g, n in zip(spec.group_names, spec.group_sizes)}
        out[f"random{i:02d} f={b:.2f}"] = (_select(spec, scores, b, "flops"), {"kind": "random", "budget": float(b)})
    analysis = chipnet_tf.analyze(dense, warn=False)
    scores, _ = channel_scores(dense, analysis, args.seed)
    for b in BUDGETS:
        lat = _select(spec, scores, b, "latency")
        out[f"latency b={b:g}"] = (lat, {"kind": "latency", "budget": b})
        out[f"flops b={b:g}"] = (_select(spec, scores, b, "flops"), {"kind": "flops", "budget": b})
        target = spec.value([m.sum() for m in lat.values()], "latency")
        fb = flops_budget_at_latency(spec, lambda f, scores=scores: _select(spec, scores, f, "flops"), target)
        out[f"flops@lat b={b:g}"] = (_select(spec, scores, fb, "flops"), {"kind": "flops_equal_latency", "budget": b})
        out[f"flops@lat b={b:g}"][1]["flops_budget"] = fb
    return out


def run(name, quantization, args):
    t0 = time.perf_counter()
    dense = build(name, args)
    cache = Path(args.cache_dir) / f"{name}-{quantization or 'float32'}-{args.cache_tag or os.getpid()}"
    table = chipnet_tf.latency.profile(dense, quantization=quantization, cache_dir=str(cache), progress=False)
    profile_s = table.stats["profile_s"]
    again = chipnet_tf.latency.profile(dense, quantization=quantization, cache_dir=str(cache), progress=False)
    print(
        f"\n{name} {quantization or 'float32'}: profiled in {profile_s:.1f} s ({table.stats['one_op_models']} one-op "
        f"models, {table.stats['unique_configurations']} configurations for {table.stats['timed_calls']} calls); "
        f"again {again.stats['profile_s']:.2f} s (cache hit {again.stats['cache_hit']}); tiles {table.meta['tiles']}",
        flush=True,
    )
    spec = attach(chipnet_tf.analyze(dense, warn=False), table)
    dense_pred = spec.dense("latency")
    x = np.random.default_rng(args.seed + 1).standard_normal((1, *dense.inputs[0].shape[1:])).astype("float32")
    interps = {"dense": make_interpreter(_convert(dense, quantization), x)}
    records = {"dense": {"kind": "dense", "predicted_ms": dense_pred, "flops": chipnet_tf.count_flops(dense)}}
    records["dense"]["params"] = int(dense.count_params())
    skipped = {}
    for vname, (masks, rec) in variants_for(dense, spec, args).items():
        small = chipnet_tf.strip_pruning(dense, masks=masks)
        counts = [masks[g].sum() for g in spec.group_names]
        rec.update(
            predicted_ms=spec.value(counts, "latency"),
            predicted_ratio=spec.value(counts, "latency") / dense_pred,
            flops=chipnet_tf.count_flops(small),
            params=int(small.count_params()),
        )
        rec["flops_fraction"] = rec["flops"] / records["dense"]["flops"]
        try:
            interps[vname] = make_interpreter(_convert(small, quantization), x)
        except RuntimeError as e:  # XNNPACK refuses some degenerate int8 networks: reported, not timed
            skipped[vname] = str(e).splitlines()[0]
            print(f"  {vname}: not timed ({skipped[vname]})", flush=True)
            continue
        records[vname] = rec
    build_s = time.perf_counter() - t0
    per_round, _, load = interleaved_timing(interps, args, f"{name} {quantization or 'float32'}")
    summary = summarize(per_round)
    for v, rec in records.items():
        rec["measured_ms"] = summary["median_s"][v] * 1e3
        rec["measured_ratio"] = summary["ratio_vs_dense"][v]
        if v != "dense":
            rec["error"] = rec["measured_ratio"] / rec["predicted_ratio"] - 1
    errors = [r["error"] for r in records.values() if r["kind"] == "random"] or [float("nan")]
    result = {
        "profile_s": profile_s,
        "profile_again_s": again.stats["profile_s"],
        "cache_hit": again.stats["cache_hit"],
        "table_stats": table.stats,
        "skipped": skipped,
        "tiles": table.meta["tiles"],
        "dense_measured_ms_at_profile": table.dense_ms,
        "records": records,
        "predictor": {
            "max_abs_error": max(abs(e) for e in errors),
            "median_abs_error": statistics.median(abs(e) for e in errors),
            "within_10pct": all(abs(e) <= 0.10 for e in errors),
        },
        "load_average_1min": load,
        "build_s": build_s,
        "total_s": time.perf_counter() - t0,
    }
    print_result(name, quantization, result)
    return result


def print_result(name, quantization, result):
    recs = result["records"]
    p = result["predictor"]
    print(
        f"{name} {quantization or 'float32'}: predictor over "
        f"{sum(r['kind'] == 'random' for r in recs.values())} random "
        f"mask sets: median |error| {p['median_abs_error']:.1%}, max |error| {p['max_abs_error']:.1%} "
        f"(all within 10%: {p['within_10pct']})"
    )
    print(f"  {'variant':<16} {'budget':>6} {'FLOPs':>6} {'params':>7} {'pred':>6} {'measured':>8} {'target':>16}")
    dense = recs["dense"]
    for v, r in recs.items():
        if r["kind"] in ("random", "dense"):
            continue
        tgt = ""
        if r["kind"] == "latency":
            ok = r["measured_ratio"] <= TARGET_FACTOR * r["budget"]
            tgt = f"{'met' if ok else 'NOT met'} (<= {TARGET_FACTOR * r['budget']:.3f})"
        print(
            f"  {v:<16} {r['budget']:>6g} {r['flops'] / dense['flops']:>6.3f} {r['params'] / dense['params']:>7.3f}"
            f" {r['predicted_ratio']:>6.3f} {r['measured_ratio']:>7.3f}x {tgt:>16}"
        )
    for b in BUDGETS:
        lat, eq = recs.get(f"latency b={b:g}"), recs.get(f"flops@lat b={b:g}")
        if lat and eq:
            print(
                f"  latency b={b:g} vs FLOPs-budget network of equal predicted latency: measured "
                f"{lat['measured_ratio']:.3f}x vs {eq['measured_ratio']:.3f}x; "
                f"FLOPs kept x{lat['flops'] / eq['flops']:.3f}, "
                f"params kept x{lat['params'] / eq['params']:.3f}"
            )


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency.budget", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--quantizations", nargs="+", choices=("none", "int8"), default=["none", "int8"])
    p.add_argument("--sets", type=int, default=20, help="random mask sets per model (default 20)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--invocations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resnet_width", type=float, default=1.0)
    p.add_argument("--mobilenet_alpha", type=float, default=1.0)
    p.add_argument("--cache_dir", default="/tmp/chipnet_tf_latency_bench_cache")
    p.add_argument("--cache_tag", default=None, help="reuse a cache directory (default: a fresh one per run)")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--keep_existing", action="store_true", help="add to --output's results (e.g. int8 after float32)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    payload = {
        "benchmark": "chipnet_tf latency budget: predictor error, latency budgets vs FLOPs budgets",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {**vars(args), "output": str(args.output), "target_factor": TARGET_FACTOR},
        "environment": environment(),
        "results": {},
    }
    if args.keep_existing and args.output.exists():
        previous = json.loads(args.output.read_text())
        payload["results"] = previous["results"]
        payload["earlier_runs"] = previous.get("earlier_runs", []) + [
            {k: previous.get(k) for k in ("date_utc", "config", "total_runtime_s")}
        ]
    for q in args.quantizations:
        for name in args.models:
            quantization = None if q == "none" else q
            payload["results"][f"{name} {q if quantization else 'float32'}"] = run(name, quantization, args)
            payload["total_runtime_s"] = time.perf_counter() - t0
            args.output.parent.mkdir(parents=True, exist_ok=True)
            chipnet_io.write_json(args.output, payload)  # after every model: a stopped run keeps its results
    print(f"\nwrote {args.output} ({time.perf_counter() - t0:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
