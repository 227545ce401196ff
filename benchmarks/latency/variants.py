"""The variants the LiteRT latency benchmark builds from one dense model at one budget.

ChipNet-stripped models (round_to 1, 8, 16), the tile-padded control and tfmot magnitude
pruning, each converted and checked against Keras. Part of ``benchmarks.latency`` (method:
benchmarks/README.md, section "LiteRT latency").
"""

import time

import numpy as np

import chipnet_tf
from benchmarks.latency.models import (
    convert,
    interpreter_info,
    make_interpreter,
    nonzero_params,
    prunable_kernel_params,
    tflite_output,
    tfmot_stripped,
)


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


def print_built(vname, variant):
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
        print_built(vname, out[vname])

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
