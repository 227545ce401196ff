"""LiteRT latency of ChipNet-stripped models vs. the dense model vs. tfmot magnitude pruning.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "LiteRT latency".

Usage (from the repository root)::

    python -m benchmarks.latency            # both models, 3 budgets, ~6-9 minutes (mostly conversion)
    python -m benchmarks.latency --quick    # concrete-function conversion, fewer rounds, ~1-2 minutes

The code is split by role: ``models`` (dense models, channel scores, conversion,
interpreters), ``timing`` (interleaved timing, the channel-tile probe, the machine), ``variants``
(the variants at one budget); this module runs each model, reports and writes the JSON.
"""

import argparse
import datetime
import gc
import os
import time
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks.latency.models import (
    INPUT_SHAPE,
    build_dense,
    channel_scores,
    model_description,
)
from benchmarks.latency.timing import (
    PROBE_WIDTHS,
    environment,
    interleaved_timing,
    probe_channel_tile,
    summarize,
    xnnpack_reference,
)
from benchmarks.latency.variants import (
    build_budget_variants,
    build_variant,
    print_built,
)
from chipnet_tf import io as chipnet_io

RESULTS = Path(__file__).resolve().parent.parent / "results" / "latency.json"
TARGET_FACTOR = 1.25
DEFAULT_BUDGETS = (0.5, 0.25, 0.1)
MODEL_NAMES = ("resnet50", "mobilenet_v2", "mobilenet_v3_small")
DEFAULT_MODELS = ("resnet50", "mobilenet_v2")


# -- one model ------------------------------------------------------------------------
def check_targets(records):
    """Per chipnet variant: its latency ratio against TARGET_FACTOR x its FLOPs fraction
    (actual) and x its budget (nominal)."""
    targets = {}
    for v, rec in records.items():
        if rec["kind"] != "chipnet":
            continue
        ratio = rec["ratio_vs_dense"]
        targets[v] = {
            "ratio": ratio,
            "limit_actual": TARGET_FACTOR * rec["flops_fraction"],
            "met_actual": ratio <= TARGET_FACTOR * rec["flops_fraction"],
            "limit_nominal": TARGET_FACTOR * rec["budget"],
            "met_nominal": ratio <= TARGET_FACTOR * rec["budget"],
        }
    return targets


def run_model(name, args, tile=None):
    """Builds, converts and times every variant of model ``name``; returns its results."""
    t_model = time.perf_counter()
    dense = build_dense(name, args)
    ref = {
        "x": np.random.default_rng(args.seed + 1).standard_normal((1, *INPUT_SHAPE)).astype("float32"),
        "flops": chipnet_tf.count_flops(dense),
        "params": int(dense.count_params()),
    }
    analysis = chipnet_tf.analyze(dense, warn=False)
    scores, fallback = channel_scores(dense, analysis, args.seed)
    print(
        f"\n{name}: {model_description(name, args)}; {ref['params']:,} params, {ref['flops'] / 1e6:.1f} MFLOPs, "
        f"{len(analysis.groups)} channel groups",
        flush=True,
    )
    variants = {"dense": build_variant(dense, "dense", args, ref)}
    print_built("dense", variants["dense"])
    for b in args.budgets:
        variants.update(build_budget_variants(dense, analysis, scores, b, args, ref, tile))
    build_s = time.perf_counter() - t_model

    per_round, orders, load = interleaved_timing({v: d["interp"] for v, d in variants.items()}, args, name)
    summary = summarize(per_round)
    xnn = xnnpack_reference(variants["dense"]["data"], ref["x"], args)
    records = {v: d["record"] for v, d in variants.items()}
    for v, rec in records.items():
        rec["median_ms"] = summary["median_s"][v] * 1e3
        rec["ratio_vs_dense"] = summary["ratio_vs_dense"][v]
        rec["ratio_over_flops_fraction"] = summary["ratio_vs_dense"][v] / rec["flops_fraction"]
    targets = check_targets(records)
    variants.clear()
    gc.collect()
    return {
        "description": model_description(name, args),
        "dense": {"params": ref["params"], "flops": ref["flops"], "groups": len(analysis.groups)},
        "score_fallback_groups": fallback,
        "variants": records,
        "timing": {"raw_invocation_s": per_round, "round_orders": orders, **summary},
        "xnnpack_reference": xnn,
        "target": {"per_variant": targets, "met_actual": all(t["met_actual"] for t in targets.values())},
        "load_average_1min_before_and_after_each_round": load,
        "build_and_convert_s": build_s,
        "total_s": time.perf_counter() - t_model,
    }


# -- reporting ------------------------------------------------------------------------
def print_table(name, result):
    recs, timing = result["variants"], result["timing"]
    print(f"\n{name}: {result['description']}")
    print(
        "ratio = paired latency ratio vs dense (median over rounds of per-round median ratios) [min..max over rounds];"
    )
    print(
        f"target: chipnet ratio <= {TARGET_FACTOR} x FLOPs fraction (actual fraction of the stripped model; "
        "'nominal' = vs the budget); params = non-zero parameter fraction"
    )
    header = (
        f"{'variant':<22} {'FLOPs':>6} {'params':>6} {'median ms':>9} {'ratio':>7} {'[per-round range]':>17}"
        f" {'ratio/FLOPs':>11} {'target (actual)':>22} {'nominal':>8}"
    )
    print(header)
    print("-" * len(header))
    for v, r in recs.items():
        rr = timing["round_ratio_vs_dense"][v]
        t = result["target"]["per_variant"].get(v)
        if t is None:
            tgt = {"dense": "-", "control": "control"}.get(r["kind"], "as measured")
            nom = "-"
        else:
            tgt = f"{'met' if t['met_actual'] else 'NOT met'} (<= {t['limit_actual']:.3f})"
            nom = "met" if t["met_nominal"] else "NOT met"
        print(
            f"{v:<22} {r['flops_fraction']:>6.3f} {r['nonzero_params_fraction']:>6.3f} {r['median_ms']:>9.3f}"
            f" {r['ratio_vs_dense']:>6.3f}x {f'[{min(rr):.3f}..{max(rr):.3f}]':>17}"
            f" {r['ratio_over_flops_fraction']:>11.2f} {tgt:>22} {nom:>8}"
        )
    xnn = result["xnnpack_reference"]
    print(
        f"dense without default delegates (builtin kernels): {xnn['median_s']['builtin'] * 1e3:.2f} ms vs XNNPACK "
        f"{xnn['median_s']['xnnpack'] * 1e3:.2f} ms ({xnn['builtin_over_xnnpack']:.2f}x; delegate nodes "
        f"{xnn['delegate_nodes']})"
    )
    recs_r = {(r["budget"], r["round_to"]): r for r in recs.values() if r["kind"] == "chipnet"}
    for b in sorted({k[0] for k in recs_r}, reverse=True):
        r1, r8, r16 = recs_r.get((b, 1)), recs_r.get((b, 8)), recs_r.get((b, 16))
        if r1 and r16:
            print(
                f"budget {b:g}: round_to=16 / round_to=1 latency {r16['ratio_vs_dense'] / r1['ratio_vs_dense']:.3f}x "
                f"(FLOPs fraction {r16['flops_fraction']:.3f} vs {r1['flops_fraction']:.3f})"
            )
        if r1 and r8:
            print(
                f"budget {b:g}: round_to=8 / round_to=1 latency {r8['ratio_vs_dense'] / r1['ratio_vs_dense']:.3f}x "
                f"(FLOPs fraction {r8['flops_fraction']:.3f} vs {r1['flops_fraction']:.3f})"
            )
        pad = next((r for r in recs.values() if r["kind"] == "control" and r["budget"] == b), None)
        if r1 and pad:
            print(
                f"budget {b:g}: round_to=1 widened to the tile ({pad['tile']}) / round_to=1 latency "
                f"{pad['ratio_vs_dense'] / r1['ratio_vs_dense']:.3f}x for {pad['flops'] / r1['flops']:.2f}x the FLOPs "
                "(round_to=1 latency / its tile-padded FLOPs fraction "
                f"{r1['ratio_vs_dense'] / pad['flops_fraction']:.2f})"
            )


def print_probe(probe):
    print("\nchannel tile probe (LiteRT, XNNPACK, 1 thread): median us per invocation by channel count")
    curves = probe["curves"]
    for start in range(0, len(PROBE_WIDTHS), 16):
        ws = PROBE_WIDTHS[start : start + 16]
        print("  width        " + " ".join(f"{w:>5d}" for w in ws))
        for op, c in curves.items():
            print(f"  {op:<12} " + " ".join(f"{c['median_us'][w - 1]:>5.1f}" for w in ws))
    tile = probe["tile"]
    advice = (
        f"round_to={tile} is the width rounding that pays here"
        if tile and tile > 1
        else "no channel tile found: width rounding should not pay here"
    )
    print(f"  step: conv1x1 {curves['conv1x1']['step']}, depthwise3x3 {curves['depthwise3x3']['step']} -> {advice}")


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODEL_NAMES,
        default=list(DEFAULT_MODELS),
        help="default: the two CIFAR models of the committed results; mobilenet_v3_small on request",
    )
    p.add_argument("--budgets", nargs="+", type=float, default=list(DEFAULT_BUDGETS), help="FLOPs budgets")
    p.add_argument("--resnet_width", type=float, default=1.0, help="resnet50_cifar width (default 1.0)")
    p.add_argument("--mobilenet_alpha", type=float, default=1.0, help="mobilenet_v2_cifar alpha (default 1.0)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds (default 20)")
    p.add_argument("--invocations", type=int, default=10, help="timed invocations per variant per round (default 10)")
    p.add_argument("--warmup", type=int, default=10, help="untimed invocations per variant before timing")
    p.add_argument(
        "--converter",
        choices=("keras", "concrete"),
        default="keras",
        help="keras: chipnet_tf.export.to_tflite (from_keras_model, default); concrete: a batch-1 concrete "
        "function (much faster to convert, deprecated converter path)",
    )
    p.add_argument(
        "--no_tfmot_sparse",
        dest="tfmot_sparse",
        action="store_false",
        help="skip the tfmot variants converted with EXPERIMENTAL_SPARSITY",
    )
    p.add_argument(
        "--no_tile_probe",
        dest="tile_probe",
        action="store_false",
        help="skip the channel-tile probe (and the tile-padded control variants)",
    )
    p.add_argument("--probe_rounds", type=int, default=5, help="interleaved rounds of the tile probe (default 5)")
    p.add_argument(
        "--probe_only",
        action="store_true",
        help="run only the channel-tile probe and print its staircase (writes no JSON): run it on the device "
        "you deploy to and pass the step it reports as round_to",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="~1-2 minute run: --converter concrete, 6 rounds x 5 invocations"
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.converter, args.rounds, args.invocations, args.warmup, args.probe_rounds = "concrete", 6, 5, 5, 2
    if min(args.rounds, args.invocations, args.warmup, args.probe_rounds) < 1:
        p.error("need --rounds, --invocations, --warmup and --probe_rounds >= 1")
    if args.probe_only and not args.tile_probe:
        p.error("--probe_only and --no_tile_probe exclude each other")
    if not all(0.0 < b <= 1.0 for b in args.budgets):
        p.error("budgets must be in (0, 1]")
    return args


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    env = environment()
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    print(
        f"chipnet_tf LiteRT latency benchmark: models {', '.join(args.models)}; FLOPs budgets "
        f"{', '.join(f'{b:g}' for b in args.budgets)}; {args.rounds} rounds x {args.invocations} invocations, "
        f"1 thread, batch 1; converter {args.converter}; CPU x{env['os_cpu_count']}, tf {env['tensorflow']}, "
        f"ai-edge-litert {env['ai_edge_litert']}, tfmot {env['tensorflow_model_optimization']}",
        flush=True,
    )
    probe = probe_channel_tile(args) if args.tile_probe else None
    if args.probe_only:
        print_probe(probe)
        return {"tile_probe": probe, "environment": env}
    tile = probe["tile"] if probe else None
    results = {name: run_model(name, args, tile) for name in args.models}
    for name, result in results.items():
        print_table(name, result)
    met = all(r["target"]["met_actual"] for r in results.values())
    if probe:
        print_probe(probe)
    if load:
        load.append(os.getloadavg()[0])
        all_load = load + [v for r in results.values() for v in r["load_average_1min_before_and_after_each_round"]]
        print(
            f"\n1-min load average during the run: {min(all_load):.1f} .. {max(all_load):.1f} "
            f"(machine has {os.cpu_count()} CPUs)"
        )
    print(
        f"target (every chipnet variant's latency ratio <= {TARGET_FACTOR} x its actual FLOPs fraction) met: "
        f"{'yes' if met else 'no'}"
    )

    elapsed = time.perf_counter() - t_start
    payload = {
        "benchmark": "chipnet_tf LiteRT latency of stripped models vs dense vs tfmot prune_low_magnitude",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "models": {name: model_description(name, args) for name in args.models},
            "weights": "random init (he_normal, seed), BatchNormalization gamma U(0.5, 1.5), beta N(0, 0.1), "
            "moving mean N(0, 0.1), moving variance U(0.5, 1.5)",
            "budgets": args.budgets,
            "budget_type": "flops",
            "round_to": [1, 8, 16],
            "scores": "per group: mean over writer layers of (per-channel kernel L1 norm / its mean)",
            "tfmot": "prune_low_magnitude(ConstantSparsity(s, begin_step=0, frequency=1)) on a copy of the dense "
            "model, pruning_step=0 + each wrapper's conditional_mask_update + weight_mask_op (no training), "
            "strip_pruning; s chosen so that the non-zero parameter fraction equals chipnet round_to=1's "
            "parameter fraction at the same budget",
            "tfmot_sparse": args.tfmot_sparse,
            "converter": args.converter,
            "runtime": "ai_edge_litert Interpreter(num_threads=1), OpResolverType.AUTO (default XNNPACK delegate), "
            "float32, batch 1",
            "rounds": args.rounds,
            "invocations": args.invocations,
            "warmup": args.warmup,
            "seed": args.seed,
            "quick": args.quick,
            "timing": "each interp.invoke() timed alone (perf_counter), gc disabled; variants interleaved per "
            "round, order rotated; median_s = median of all invocations; ratio_vs_dense (headline) = median "
            "over rounds of round median(variant) / round median(dense)",
        },
        "tile_probe": probe,
        "results": results,
        "target": {
            "rule": f"chipnet latency ratio vs dense <= {TARGET_FACTOR} x the stripped model's FLOPs fraction at "
            "every budget (met_nominal: vs the budget itself); tfmot reported as measured",
            "met": bool(met),
        },
        "environment": env,
        "load_average_1min_start_end": load,
        "total_runtime_s": elapsed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    chipnet_io.write_json(args.output, payload)
    print(f"\nwrote {args.output}  (total run time {elapsed:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
