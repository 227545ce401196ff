"""How the LiteRT latency benchmark times interpreters, and its channel-tile probe.

Interleaved rounds of single invocations, their medians and paired ratios to the dense
model, the XNNPACK-vs-builtin reference, and the probe of one-op models that finds the
runtime's output-channel tile. Part of ``benchmarks.latency`` (method: benchmarks/README.md,
section "LiteRT latency").
"""

import gc
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.latency.models import convert, interpreter_info, make_interpreter
from chipnet_tf.compat import keras  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)
from chipnet_tf.latency.timing import (  # the tile rule and the timer, shared with latency.profile
    channel_step,
    time_invocations,
)


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
    """Medians and paired ratios to dense (benchmarks/README.md, section "LiteRT latency")."""
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
    """Latency of one LiteRT op against its channel count, in the runtime the variants are timed in.

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


# -- the machine --------------------------------------------------------------------
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
    """``common.environment`` with LiteRT's and tfmot's versions and the CPU (``cpu_description``)."""
    return {**common.environment("ai-edge-litert", "tensorflow-model-optimization"), **cpu_description()}
