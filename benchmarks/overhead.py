"""Training-step overhead of ChipNet gates vs. a plain model vs. tfmot magnitude pruning.

The method (what is built, how it is timed, what is reported) is described in
benchmarks/README.md, section "Training-step overhead".

Usage (from the repository root)::

    python -m benchmarks.overhead            # default: 30 rounds x 20 steps, ~4-5 minutes
    python -m benchmarks.overhead --quick    # ~1 minute smoke run
    python -m benchmarks.overhead --breakdown
"""

import argparse
import datetime
import os
import statistics
import time
import types
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from chipnet_tf import io as chipnet_io
from chipnet_tf.compat import keras, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
TARGET_RATIO = 1.10
MAIN_VARIANTS = ("plain", "chipnet", "tfmot")
BREAKDOWN_VARIANTS = ("chipnet_no_callback", "chipnet_no_mask_grad", "chipnet_no_gates")
DESCRIPTIONS = {
    "plain": "(a) plain tf_keras ResNet-20",
    "chipnet": "(b) chipnet_tf.prune_low_budget(flops, 0.5) + UpdatePruningStep",
    "tfmot": "(c) tfmot prune_low_magnitude(ConstantSparsity(0.5, 0)) + UpdatePruningStep",
    "chipnet_no_callback": "(b) without the UpdatePruningStep callback (schedule state set once)",
    "chipnet_no_mask_grad": "... and every ChannelGate multiplying by stop_gradient(mask) (no d loss / d mask)",
    "chipnet_no_gates": "... and every ChannelGate replaced by identity (controller still adds losses/metrics)",
}


# -- model and data -------------------------------------------------------------------
def resnet20(seed, num_classes=10):
    """ResNet-20-size CIFAR model: 3 stages x 3 basic blocks (16/32/64), Conv-BN-ReLU, GAP, Dense.

    Down-sampling blocks use a 1x1-conv + BN projection shortcut. ~0.27M parameters.
    """
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            prefix = f"s{stage}b{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv1")(x)
            y = L.BatchNormalization(name=f"{prefix}_bn1")(y)
            y = L.ReLU(name=f"{prefix}_relu1")(y)
            y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
            y = L.BatchNormalization(name=f"{prefix}_bn2")(y)
            if stride != 1 or x.shape[-1] != filters:
                x = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{prefix}_proj")(x)
                x = L.BatchNormalization(name=f"{prefix}_proj_bn")(x)
            x = L.Add(name=f"{prefix}_add")([x, y])
            x = L.ReLU(name=f"{prefix}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def synthetic_dataset(batch_size, seed, batches=8):
    rng = np.random.default_rng(seed)
    n = batch_size * batches
    x = rng.standard_normal((n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# -- variants -------------------------------------------------------------------------
def _chipnet_model(seed):
    return chipnet_tf.prune_low_budget(resnet20(seed), budget=0.5, budget_type="flops")


def _start_schedule_without_callback(model):
    """What UpdatePruningStep.on_train_begin does, once, so the model trains without it."""
    cb = chipnet_tf.UpdatePruningStep()
    cb.set_model(model)
    # set_params is needed: on_train_begin reads self.params, which tf_keras's Callback only
    # has once set_params ran (fit calls it; a bare custom loop would get AttributeError).
    cb.set_params({"epochs": 1, "steps": None, "verbose": 0})
    cb.on_train_begin()


def _identity_gate_call(self, inputs):
    return inputs[0]


def _no_mask_grad_gate_call(self, inputs):
    return chipnet_tf.ChannelGate.call(self, [inputs[0], *[tf.stop_gradient(m) for m in inputs[1:]]])


def make_variant(name, seed):
    """Returns ``(model, callbacks_factory)``; every variant starts from the same weights."""
    if name == "plain":
        return compile_model(resnet20(seed)), list
    if name == "chipnet":
        return compile_model(_chipnet_model(seed)), lambda: [chipnet_tf.UpdatePruningStep()]
    if name == "tfmot":
        import tensorflow_model_optimization as tfmot

        # prune_low_magnitude wraps (shares) the given model's layers: give it its own copy.
        model = tfmot.sparsity.keras.prune_low_magnitude(
            resnet20(seed), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0)
        )
        return compile_model(model), lambda: [tfmot.sparsity.keras.UpdatePruningStep()]
    if name in BREAKDOWN_VARIANTS:
        model = _chipnet_model(seed)
        gate_call = {"chipnet_no_mask_grad": _no_mask_grad_gate_call, "chipnet_no_gates": _identity_gate_call}
        if name in gate_call:
            for layer in model.layers:
                if isinstance(layer, chipnet_tf.ChannelGate):
                    layer.call = types.MethodType(gate_call[name], layer)
        _start_schedule_without_callback(model)
        return compile_model(model), list
    raise ValueError(f"unknown variant {name!r}")


class StepTimer(keras.callbacks.Callback):
    """Records wall and process CPU time at every batch end; must be the last user callback."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True  # do not force a numpy conversion of the logs
        self.wall = []
        self.cpu = []

    def on_train_batch_end(self, batch, logs=None):
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())


def timed_fit(model, callbacks_factory, dataset, steps):
    """One ``fit`` of ``steps`` steps: (wall intervals, CPU intervals, fit wall time / steps)."""
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[*callbacks_factory(), timer])
    wall = time.perf_counter() - start
    if len(timer.wall) != steps:
        raise RuntimeError(f"expected {steps} batches, timed {len(timer.wall)}")
    return np.diff(timer.wall).tolist(), np.diff(timer.cpu).tolist(), wall / steps


def _tracing_count(model):
    fn = getattr(model, "train_function", None)
    getter = getattr(fn, "experimental_get_tracing_count", None)
    return getter() if getter else None


def time_callback_hooks(model, iterations=2000):
    """Per-step cost of chipnet_tf.UpdatePruningStep's batch hooks, called directly."""
    cb = chipnet_tf.UpdatePruningStep()
    cb.set_model(model)
    cb.set_params({"steps": iterations, "epochs": 1, "verbose": 0})
    cb.on_train_begin()
    start = time.perf_counter()
    for i in range(iterations):
        cb.on_train_batch_begin(i)
        cb.on_train_batch_end(i)
    return (time.perf_counter() - start) / iterations


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


def summarize(per_round, variants):
    """Medians and ratios to plain of one clock's step intervals.

    ``ratio_vs_plain`` (the headline) is paired: the median over rounds of
    ``round median(variant) / round median(plain)``, each pair measured seconds apart, so
    that slow drift of the machine's load cancels. ``ratio_of_medians_vs_plain`` divides
    the medians of all pooled intervals instead (not drift-corrected).
    """
    round_medians = {v: [statistics.median(x) for x in per_round[v]] for v in variants}
    medians = {v: statistics.median([t for x in per_round[v] for t in x]) for v in variants}
    round_ratios = {v: [a / b for a, b in zip(round_medians[v], round_medians["plain"])] for v in variants}
    return {
        "median_per_step_s": medians,
        "round_median_per_step_s": round_medians,
        "round_mean_per_step_s": {v: [statistics.fmean(x) for x in per_round[v]] for v in variants},
        "round_ratio_vs_plain": round_ratios,
        "ratio_vs_plain": {v: statistics.median(round_ratios[v]) for v in variants},
        "ratio_of_medians_vs_plain": {v: medians[v] / medians["plain"] for v in variants},
    }


def paired_difference(summary, hi, lo):
    """Median over rounds of ``round median(hi) - round median(lo)``."""
    rm = summary["round_median_per_step_s"]
    return statistics.median([a - b for a, b in zip(rm[hi], rm[lo])])


def paired_comparison(summary, a, b, resamples=2000, seed=0):
    """How ``a``'s paired ratio to plain compares with ``b``'s, round by round.

    Per round, ``ratio(a) - ratio(b)`` (both against that round's plain): the median over
    rounds, a 95% percentile-bootstrap interval of that median (``resamples`` resamples of
    the rounds, fixed seed), and in how many rounds ``a`` was the faster. When the interval
    contains 0, the two overheads are not distinguishable at this number of rounds. The
    interval covers the scatter between rounds of one run only: separate runs (new
    processes) have differed by more than it.
    """
    rr = summary["round_ratio_vs_plain"]
    diff = np.asarray(rr[a]) - np.asarray(rr[b])
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(diff, size=(resamples, diff.size), replace=True), axis=1)
    low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    return {
        "median_difference": float(np.median(diff)),
        "ci95": [low, high],
        "rounds": int(diff.size),
        "rounds_first_faster": int(np.sum(diff < 0)),
        "distinguishable": bool(low > 0 or high < 0),
    }


def print_table(variants, wall, cpu, fit_wall):
    print("wall = step time (primary); ratio = paired, median over rounds of per-round ratios [min..max over")
    print("rounds]; med/med = ratio of pooled medians; CPU = process CPU time per step (all threads)")
    header = (
        f"{'variant':<21} {'wall ms/step':>12} {'ratio':>7} {'[per-round range]':>17} {'med/med':>8}"
        f" {'CPU ms/step':>11} {'CPU ratio':>9} {'fit() ms/step':>13}"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        rr = wall["round_ratio_vs_plain"][v]
        print(
            f"{v:<21} {wall['median_per_step_s'][v] * 1e3:>12.1f} {wall['ratio_vs_plain'][v]:>6.3f}x"
            f" {f'[{min(rr):.3f}..{max(rr):.3f}]':>17} {wall['ratio_of_medians_vs_plain'][v]:>7.3f}x"
            f" {cpu['median_per_step_s'][v] * 1e3:>11.1f} {cpu['ratio_vs_plain'][v]:>8.3f}x"
            f" {fit_wall[v] * 1e3:>13.1f}"
        )


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
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup_steps = 3, 8, 3
    if args.rounds < 1 or args.steps < 2 or args.batch_size < 1 or args.warmup_steps < 1:
        p.error("need --rounds >= 1, --steps >= 2, --batch_size >= 1, --warmup_steps >= 1")
    return args


def build_variants(variants, args, dataset):
    """Builds and warms up every variant: ``({variant: (model, callbacks factory)}, warm-up
    seconds, train_function tracing counts)``."""
    models, warmup, traces = {}, {}, {}
    for v in variants:
        t0 = time.perf_counter()
        model, cbs = make_variant(v, args.seed)
        model.fit(dataset, steps_per_epoch=args.warmup_steps, epochs=1, verbose=0, callbacks=cbs())
        warmup[v] = time.perf_counter() - t0
        traces[v] = {"after_warmup": _tracing_count(model)}
        models[v] = (model, cbs)
        print(f"  built + warmed up {v:<20} in {warmup[v]:6.1f} s ({model.count_params():,} params)", flush=True)
    return models, warmup, traces


def time_rounds(models, variants, args, dataset):
    """The interleaved timing: per variant, per round, the (steps - 1) batch-end to
    batch-end intervals (wall and CPU), the fit wall time per step, the load averages and
    the variant order of every round."""
    timing = {
        "wall": {v: [] for v in variants},
        "cpu": {v: [] for v in variants},
        "fit_wall": {v: [] for v in variants},
        "load": [os.getloadavg()[0]] if hasattr(os, "getloadavg") else [],
        "orders": [],
    }
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        timing["orders"].append(order)
        for v in order:
            model, cbs = models[v]
            w, c, f = timed_fit(model, cbs, dataset, args.steps)
            timing["wall"][v].append(w)
            timing["cpu"][v].append(c)
            timing["fit_wall"][v].append(f)
        load = timing["load"]
        if load:
            load.append(os.getloadavg()[0])
        print(
            f"  round {r + 1}/{args.rounds}: "
            + ", ".join(f"{v} {statistics.median(timing['wall'][v][-1]) * 1e3:.1f}" for v in variants)
            + " ms/step (round medians)"
            + (f", 1-min load average {load[-1]:.1f}" if load else ""),
            flush=True,
        )
    return timing


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
        "\nChipNet overhead breakdown (paired per-round differences of medians, ms/step; UpdatePruningStep's batch hooks"
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
    args = parse_args(argv)
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
        traces[v]["after_timing"] = _tracing_count(models[v][0])
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
