"""Strip benchmark, the measured steps: the dense models, what each step builds outside the
measured region and runs, and their timing, sanity checks and profile in this process.

Part of ``benchmarks.strip`` (method: benchmarks/README.md, section "Strip time and memory").
"""

import cProfile
import gc
import io
import pstats
import time

import numpy as np

import chipnet_tf
from chipnet_tf.compat import keras  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

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
