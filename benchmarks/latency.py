"""LiteRT latency of ChipNet-stripped models vs. the dense model vs. tfmot magnitude pruning.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "LiteRT latency".

Usage (from the repository root)::

    python -m benchmarks.latency            # both models, 3 budgets, ~6-9 minutes (mostly conversion)
    python -m benchmarks.latency --quick    # concrete-function conversion, fewer rounds, ~1-2 minutes
"""

import argparse
import datetime
import gc
import os
import statistics
import time
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from chipnet_tf import architectures
from chipnet_tf import io as chipnet_io
from chipnet_tf.compat import keras, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)
from chipnet_tf.litert_timing import (  # the tile rule and the timer, shared with latency.profile
    channel_step,
    time_invocations,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
TARGET_FACTOR = 1.25
DEFAULT_BUDGETS = (0.5, 0.25, 0.1)
MODEL_NAMES = ("resnet50", "mobilenet_v2", "mobilenet_v3_small")
DEFAULT_MODELS = ("resnet50", "mobilenet_v2")
INPUT_SHAPE = (32, 32, 3)


# -- models and variants --------------------------------------------------------------
def build_dense(name, args):
    """The dense model with random weights and randomised BatchNormalization statistics."""
    keras.utils.set_random_seed(args.seed)
    if name == "resnet50":
        model = architectures.resnet50_cifar(width=args.resnet_width)
    elif name == "mobilenet_v2":
        model = architectures.mobilenet_v2_cifar(alpha=args.mobilenet_alpha)
    elif name == "mobilenet_v3_small":  # hard-swish/hard-sigmoid TF ops: prunable since issue 15
        model = keras.applications.MobileNetV3Small(
            input_shape=INPUT_SHAPE, weights=None, classes=10, classifier_activation=None
        )
    else:
        raise ValueError(f"unknown model {name!r}")
    return randomise_batch_norm(model, args.seed)


def randomise_batch_norm(model, seed):
    """Random BatchNormalization scales and statistics (weights=None models are timed as if trained)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    return model


def model_description(name, args):
    if name == "resnet50":
        return f"chipnet_tf.architectures.resnet50_cifar(width={args.resnet_width:g}), input {INPUT_SHAPE}, 10 classes"
    if name == "mobilenet_v3_small":
        return f"keras.applications.MobileNetV3Small(weights=None), input {INPUT_SHAPE}, 10 classes"
    return (
        f"chipnet_tf.architectures.mobilenet_v2_cifar(alpha={args.mobilenet_alpha:g}), input {INPUT_SHAPE}, 10 classes"
    )


def _channel_l1(layer, size):
    """Per-output-channel L1 norm of a layer's kernel, or None when it has no matching kernel."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = np.abs(layer.depthwise_kernel.numpy())  # (kh, kw, channels, multiplier)
        norms = k.sum(axis=(0, 1, 3)) if k.shape[3] == 1 else None
    elif getattr(layer, "kernel", None) is not None:
        k = np.abs(layer.kernel.numpy())
        norms = k.reshape(-1, k.shape[-1]).sum(axis=0)
    else:
        norms = None
    return norms if norms is not None and norms.shape[0] == size else None


def channel_scores(dense, analysis, seed):
    """``{group: scores}``: mean over the group's writers of their mean-normalised L1 norms.

    A mean, not a sum: every group's scores are then on one scale (about 1), as ChipNet's
    per-channel gate logits are. Summing over writers made groups with many writers (the
    residual stages: 4-7 convs each) score 4-7x higher, so at small budgets the selection
    kept every residual channel and cut the bottlenecks to 1-3 channels, leaving full-width
    projection shortcuts with 82% of the MACs - a mask no trained ChipNet model produces.
    """
    rng = np.random.default_rng(seed)
    scores, fallback = {}, []
    for g in analysis.groups:
        total = np.zeros(g.size)
        found = 0
        for writer in g.writers:
            try:
                norms = _channel_l1(dense.get_layer(writer), g.size)
            except ValueError:
                norms = None
            if norms is not None and norms.mean() > 0:
                total += norms / norms.mean()
                found += 1
        if not found:
            total = rng.random(g.size)
            fallback.append(g.name)
        scores[g.name] = total / max(found, 1)
    return scores, fallback


def prunable_kernel_params(model):
    """Parameters tfmot's prune_low_magnitude prunes here: Conv2D and Dense kernels."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not isinstance(
            layer, keras.layers.DepthwiseConv2D
        ):
            total += int(np.prod(layer.kernel.shape))
    return total


def nonzero_params(model):
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def tfmot_stripped(dense, sparsity):
    """tfmot magnitude pruning at constant ``sparsity`` on a copy of ``dense``, masks applied, stripped."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)

    def wrap(layer):  # layers tfmot does not know (Rescaling, TF-op layers) are kept as they are
        if not PruneRegistry.supports(layer):
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    clone = keras.models.clone_model(dense)
    clone.set_weights(dense.get_weights())
    pruned = keras.models.clone_model(clone, clone_function=wrap)
    # What UpdatePruningStep + one training step do, without training: step 0, mask update
    # (ConstantSparsity prunes at begin_step), then weights *= mask.
    for layer in pruning_wrapper.collect_prunable_layers(pruned):
        layer.pruning_step.assign(0)
        layer.pruning_obj.conditional_mask_update()
        layer.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(pruned)


def convert(model, converter, sparse=False, input_shape=INPUT_SHAPE):
    """Float32 TFLite bytes of ``model`` (``concrete``: traced at batch 1 x ``input_shape``)."""
    if converter == "keras" and not sparse:
        return chipnet_tf.export.to_tflite(model)
    if converter == "keras":
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((1, *input_shape), tf.float32)
        )
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if sparse:
        conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    with common.quiet("absl"):
        return conv.convert()


def make_interpreter(data, x, resolver=None):
    """A 1-thread LiteRT interpreter for ``data`` with ``x`` (batch 1) set as its input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if resolver is None else resolver
    interp = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    if tuple(inp["shape"]) != x.shape:
        raise RuntimeError(f"unexpected TFLite input shape {inp['shape']}")
    interp.set_tensor(inp["index"], x)
    return interp


def interpreter_info(interp):
    ops = interp._get_ops_details()
    names = [o["op_name"] for o in ops]
    sparse_tensors = sum(1 for t in interp.get_tensor_details() if t.get("sparsity_parameters"))
    return {
        "delegate_nodes": names.count("DELEGATE"),
        "op_counts": {n: names.count(n) for n in sorted(set(names))},
        "sparse_weight_tensors": sparse_tensors,
    }


def tflite_output(interp):
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


# -- timing ---------------------------------------------------------------------------


def interleaved_timing(interps, args, label):
    """``{variant: [[seconds] * invocations] * rounds]}``, the round orders and the load averages."""
    names = list(interps)
    for name in names:
        time_invocations(interps[name], args.warmup)
    per_round = {v: [] for v in names}
    orders, load = [], [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    gc.collect()
    gc.disable()
    try:
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            orders.append(order)
            for v in order:
                per_round[v].append(time_invocations(interps[v], args.invocations))
            if load:
                load.append(os.getloadavg()[0])
            if (r + 1) % max(1, args.rounds // 5) == 0 or r + 1 == args.rounds:
                dense_ms = statistics.median(per_round["dense"][-1]) * 1e3
                print(
                    f"  {label} round {r + 1}/{args.rounds}: dense {dense_ms:.2f} ms"
                    + (f", 1-min load average {load[-1]:.1f}" if load else ""),
                    flush=True,
                )
    finally:
        gc.enable()
    return per_round, orders, load


def summarize(per_round):
    """Medians and paired ratios to dense (see the module docstring)."""
    names = list(per_round)
    round_medians = {v: [statistics.median(x) for x in per_round[v]] for v in names}
    medians = {v: statistics.median([t for x in per_round[v] for t in x]) for v in names}
    round_ratios = {v: [a / b for a, b in zip(round_medians[v], round_medians["dense"])] for v in names}
    return {
        "median_s": medians,
        "min_s": {v: min(t for x in per_round[v] for t in x) for v in names},
        "round_median_s": round_medians,
        "round_ratio_vs_dense": round_ratios,
        "ratio_vs_dense": {v: statistics.median(round_ratios[v]) for v in names},
        "ratio_of_medians_vs_dense": {v: medians[v] / medians["dense"] for v in names},
    }


def xnnpack_reference(dense_data, x, args):
    """Paired dense latency with the default delegates (XNNPACK) vs. without them."""
    from ai_edge_litert.interpreter import OpResolverType

    interps = {
        "xnnpack": make_interpreter(dense_data, x),
        "builtin": make_interpreter(dense_data, x, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    }
    info = {k: interpreter_info(v)["delegate_nodes"] for k, v in interps.items()}
    for it in interps.values():
        time_invocations(it, 2)
    times = {k: [] for k in interps}
    for _ in range(3):
        for k, it in interps.items():
            times[k].append(statistics.median(time_invocations(it, max(3, args.invocations // 2))))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "median_s": med,
        "builtin_over_xnnpack": med["builtin"] / med["xnnpack"],
        "delegate_nodes": info,
        "method": "3 alternating rounds of max(3, invocations // 2) invocations each, median of round medians",
    }


# -- channel tile probe -----------------------------------------------------------------
PROBE_WIDTHS = tuple(range(1, 49))
PROBE_INPUT = (16, 16, 64)


def _layer_interpreter(layer, input_shape):
    inp = keras.Input(input_shape, batch_size=1)
    data = convert(keras.Model(inp, layer(inp)), "concrete", input_shape=input_shape)
    return make_interpreter(data, np.random.default_rng(0).standard_normal((1, *input_shape)).astype("float32"))


def probe_channel_tile(args):
    """Latency of one LiteRT op against its channel count, in the runtime used below.

    A 1x1 Conv2D (input 16x16x64) with 1..48 output channels, and a 3x3 DepthwiseConv2D
    with 1..48 channels, each a one-op model, timed interleaved (``--probe_rounds`` rounds of
    ``--invocations`` x 5 invocations; median of round medians). XNNPACK computes
    convolutions in tiles of ``nr`` output channels (its GEMM microkernel width), so a
    width costs like the next multiple of ``nr``: the staircase's step is the tile a
    ``round_to`` should use on this machine.
    """
    t0 = time.perf_counter()
    layers = {}
    for w in PROBE_WIDTHS:
        layers[("conv1x1", w)] = _layer_interpreter(keras.layers.Conv2D(w, 1), PROBE_INPUT)
        layers[("depthwise3x3", w)] = _layer_interpreter(
            keras.layers.DepthwiseConv2D(3, padding="same"), (*PROBE_INPUT[:2], w)
        )
    delegated = sum(interpreter_info(it)["delegate_nodes"] >= 1 for it in layers.values())
    n = args.invocations * 5
    for it in layers.values():
        time_invocations(it, args.warmup)
    rounds = {k: [] for k in layers}
    gc.collect()
    gc.disable()
    try:
        for _ in range(args.probe_rounds):
            for k, it in layers.items():
                rounds[k].append(statistics.median(time_invocations(it, n)))
    finally:
        gc.enable()
    curves = {}
    for op in ("conv1x1", "depthwise3x3"):
        us = [statistics.median(rounds[(op, w)]) * 1e6 for w in PROBE_WIDTHS]
        curves[op] = {"widths": list(PROBE_WIDTHS), "median_us": us, "step": channel_step(PROBE_WIDTHS, us)}
    step = curves["conv1x1"]["step"]
    out = {
        "method": f"one-op models, input {PROBE_INPUT} (depthwise: 16x16xC), {args.probe_rounds} interleaved rounds "
        f"of {n} invocations, median of round medians; step = first width after which latency jumps > 1.4x",
        "curves": curves,
        "tile": step,
        "models_with_xnnpack_delegate": delegated,
        "models": len(layers),
        "probe_s": time.perf_counter() - t0,
    }
    c = curves["conv1x1"]["median_us"]
    if step:
        out["conv1x1_cost_of_width_1_over_width_tile"] = c[0] / c[step - 1]
        out["conv1x1_cost_of_width_tile_plus_1_over_width_tile"] = c[step] / c[step - 1]
        found = (
            f"1x1 conv latency is flat for 1..{step} output channels ({c[0]:.1f} vs {c[step - 1]:.1f} us) and "
            f"jumps at {step + 1} ({c[step]:.1f} us): this runtime's output-channel tile is {step}"
        )
    else:
        found = f"no step in the 1x1 conv latency over 1..{PROBE_WIDTHS[-1]} channels ({c[0]:.1f}..{c[-1]:.1f} us)"
    print(
        f"channel tile probe: {found}; depthwise step {curves['depthwise3x3']['step']}; XNNPACK delegate in "
        f"{delegated} of {len(layers)} one-op models ({out['probe_s']:.0f} s)",
        flush=True,
    )
    return out


def pad_to_tile(masks, scores, tile):
    """``masks`` with every group widened to the next multiple of ``tile`` channels (or the whole
    group), adding the group's next-best channels by score: the widths the runtime computes
    anyway when a group's width is not a multiple of its tile."""
    out = {}
    for g, m in masks.items():
        m = np.asarray(m, bool)
        want = min(m.size, -(-int(m.sum()) // tile) * tile)
        order = [i for i in np.lexsort((np.arange(m.size), -np.asarray(scores[g]))) if not m[i]]
        padded = m.copy()
        padded[order[: want - int(m.sum())]] = True
        out[g] = padded
    return out


# -- one model ------------------------------------------------------------------------
def build_variant(model, kind, args, ref, budget=None, round_to=None, sparse=False, extra=None):
    """Converts one variant and checks it against Keras: ``{"interp", "data", "record"}``.

    ``ref``: ``{"x": the input, "flops": dense FLOPs, "params": dense params}``.
    """
    t0 = time.perf_counter()
    data = convert(model, args.converter, sparse=sparse)
    conv_s = time.perf_counter() - t0
    flops = chipnet_tf.count_flops(model)
    params = int(model.count_params())
    nnz = nonzero_params(model)
    interp = make_interpreter(data, ref["x"])
    lite = tflite_output(interp)
    want = np.asarray(model(ref["x"], training=False))
    diff = float(np.abs(lite.reshape(want.shape) - want).max())
    record = {
        "kind": kind,
        "budget": budget,
        "round_to": round_to,
        "flops": flops,
        "flops_fraction": flops / ref["flops"],
        "params": params,
        "params_fraction": params / ref["params"],
        "nonzero_params": nnz,
        "nonzero_params_fraction": nnz / ref["params"],
        "tflite_bytes": len(data),
        "convert_s": conv_s,
        "max_abs_diff_tflite_vs_keras": diff,
        "max_rel_diff_tflite_vs_keras": diff / max(float(np.abs(want).max()), 1e-30),
        **interpreter_info(interp),
        **(extra or {}),
    }
    return {"interp": interp, "data": data, "record": record}


def _print_built(vname, variant):
    r = variant["record"]
    print(
        f"  built {vname:<22} FLOPs {r['flops_fraction']:.3f}, params {r['params_fraction']:.3f}, non-zero "
        f"{r['nonzero_params_fraction']:.3f}, {r['tflite_bytes'] / 1e6:.1f} MB tflite, converted in "
        f"{r['convert_s']:.1f} s, delegate nodes {r['delegate_nodes']}, max |TFLite - Keras| / max |Keras| "
        f"{r['max_rel_diff_tflite_vs_keras']:.1e}",
        flush=True,
    )


def build_budget_variants(dense, analysis, scores, budget, args, ref, tile):
    """The chipnet (round_to 1/8/16), padded-control and tfmot variants at one budget."""
    out = {}

    def add(vname, model, kind, **kwargs):
        out[vname] = build_variant(model, kind, args, ref, budget=budget, **kwargs)
        _print_built(vname, out[vname])

    masks_by_round = {}
    for round_to in (1, 8, 16):
        masks = masks_by_round[round_to] = chipnet_tf.select_masks(
            analysis.spec, scores, budget, "flops", round_to=round_to
        )
        small = chipnet_tf.strip_pruning(dense, masks=masks)
        kept = {g: int(np.sum(m)) for g, m in masks.items()}
        vname = f"chipnet b={budget:g}" + (f" r{round_to}" if round_to > 1 else "")
        add(vname, small, "chipnet", round_to=round_to, extra={"channels_kept": kept})
        if round_to == 1:
            target_fraction = small.count_params() / ref["params"]
        del small
    if tile and tile > 1:
        # Control: the round_to=1 masks widened to the measured tile (the same output
        # tiles, more FLOPs): if it runs barely slower than round_to=1, the unrounded
        # model already pays for whole tiles.
        padded = pad_to_tile(masks_by_round[1], scores, tile)
        small = chipnet_tf.strip_pruning(dense, masks=padded)
        extra = {
            "channels_kept": {g: int(np.sum(m)) for g, m in padded.items()},
            "group_sizes": {g.name: int(g.size) for g in analysis.groups},
            "padded_from": f"chipnet b={budget:g}",
            "tile": tile,
        }
        add(f"chipnet b={budget:g} pad{tile}", small, "control", extra=extra)
        del small
    # tfmot: non-zero parameter fraction = ours (round_to=1) at this budget.
    prunable = prunable_kernel_params(dense)
    keep_prunable = (target_fraction * ref["params"] - (ref["params"] - prunable)) / prunable
    sparsity = float(np.clip(1.0 - keep_prunable, 0.0, 0.999))
    tmodel = tfmot_stripped(dense, sparsity)
    extra = {"tfmot_sparsity": sparsity, "matched_params_fraction": target_fraction}
    add(f"tfmot b={budget:g}", tmodel, "tfmot", extra=extra)
    if args.tfmot_sparse:
        add(f"tfmot+sparse b={budget:g}", tmodel, "tfmot_sparse", sparse=True, extra=extra)
    return out


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
    _print_built("dense", variants["dense"])
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
def cpu_description():
    """The CPU model and its widest SIMD extensions (from /proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    simd = [f for f in ("avx512f", "avx2", "fma", "avx", "sse4_2", "asimd", "neon", "sve") if f in flags]
    return {"cpu_model": fields.get("model name") or fields.get("CPU part"), "cpu_simd": simd}


def environment():
    return {**common.environment("ai-edge-litert", "tensorflow-model-optimization"), **cpu_description()}


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
                f"(round_to=1 latency / its tile-padded FLOPs fraction {r1['ratio_vs_dense'] / pad['flops_fraction']:.2f})"
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
