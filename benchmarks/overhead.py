"""Training-step overhead of ChipNet gates vs. a plain model vs. tfmot magnitude pruning.

Measures, side by side in one process, the ``model.fit`` step time of

  (a) ``plain``:   a ResNet-20-size CIFAR-shape tf_keras model,
  (b) ``chipnet``: the same model wrapped by
      ``chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="flops")`` and trained
      with ``chipnet_tf.UpdatePruningStep()``,
  (c) ``tfmot``:   the same model wrapped by
      ``tfmot.sparsity.keras.prune_low_magnitude`` (``ConstantSparsity(0.5, 0)``) and
      trained with ``tfmot.sparsity.keras.UpdatePruningStep()``,

on CPU, on an in-memory synthetic dataset (fixed seed). Every variant is compiled and
traced (warm-up) before timing. Against drift, the timing is interleaved: ``--rounds``
rounds, each of which runs ``fit(steps_per_epoch=--steps, epochs=1)`` once per variant (the
order rotates from round to round). The per-step time of one such fit is measured by a
callback placed after the pruning callbacks, from the end of the first batch to the end of
the last one, so it contains the train step *and* every callback's per-batch work, and
leaves out the per-``fit`` setup and ``on_epoch_end`` work (which a real epoch amortises
over hundreds of steps); the whole ``fit`` wall time per step is recorded too.

Reported: the median over rounds of each variant's per-step time, the ratios of those
medians to ``plain`` (and the median of the per-round paired ratios), and whether the
project's target (chipnet <= 1.10x plain and below tfmot's ratio) is met. Results go to
``benchmarks/results/overhead.json`` (written atomically).

``--breakdown`` adds ablations of the ChipNet model (built in-process by replacing the
``call`` of single layer *instances*; no library file is changed) that attribute the
overhead to the per-batch callback, the ChannelGate layers and the controller's math.

Usage (from the repository root)::

    python -m benchmarks.overhead            # default: 5 rounds x 20 steps, a few minutes
    python -m benchmarks.overhead --quick    # ~1 minute smoke run
    python -m benchmarks.overhead --breakdown
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

import chipnet_tf
from chipnet_tf.compat import keras, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
TARGET_RATIO = 1.10
MAIN_VARIANTS = ("plain", "chipnet", "tfmot")
BREAKDOWN_VARIANTS = ("chipnet_no_callback", "chipnet_no_gates", "chipnet_skeleton")
DESCRIPTIONS = {
    "plain": "(a) plain tf_keras ResNet-20",
    "chipnet": "(b) chipnet_tf.prune_low_budget(flops, 0.5) + UpdatePruningStep",
    "tfmot": "(c) tfmot prune_low_magnitude(ConstantSparsity(0.5, 0)) + UpdatePruningStep",
    "chipnet_no_callback": "(b) without the UpdatePruningStep callback (schedule state set once)",
    "chipnet_no_gates": "... and every ChannelGate replaced by identity (controller still adds losses/metrics)",
    "chipnet_skeleton": "... and the controller returning constant masks, no losses/metrics",
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
    cb.on_train_begin()


def _identity_gate_call(self, inputs):
    return inputs[0]


def _constant_controller_call(self, inputs, training=None):
    return tf.split(tf.ones((self.total,), tf.float32), self.sizes)


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
        if name in ("chipnet_no_gates", "chipnet_skeleton"):
            for layer in model.layers:
                if isinstance(layer, chipnet_tf.ChannelGate):
                    layer.call = types.MethodType(_identity_gate_call, layer)
        if name == "chipnet_skeleton":
            for layer in model.layers:
                if isinstance(layer, chipnet_tf.ChipNetController):
                    layer.call = types.MethodType(_constant_controller_call, layer)
        _start_schedule_without_callback(model)
        return compile_model(model), list
    raise ValueError(f"unknown variant {name!r}")


class StepTimer(keras.callbacks.Callback):
    """Records ``perf_counter`` at every batch end; must be the last user callback."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True  # do not force a numpy conversion of the logs
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def timed_fit(model, callbacks_factory, dataset, steps):
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[*callbacks_factory(), timer])
    wall = time.perf_counter() - start
    if len(timer.ends) != steps:
        raise RuntimeError(f"expected {steps} batches, timed {len(timer.ends)}")
    steady = (timer.ends[-1] - timer.ends[0]) / (steps - 1)
    return steady, wall / steps


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
def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment():
    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "tf_keras": _version("tf_keras"),
        "tensorflow_model_optimization": _version("tensorflow-model-optimization"),
        "chipnet_tf": chipnet_tf.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "os_cpu_count": os.cpu_count(),
        "sched_affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def write_json_atomic(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def print_table(variants, medians, ratios, paired, walls):
    header = f"{'variant':<22} {'median ms/step':>14} {'vs plain':>9} {'paired':>8} {'fit wall ms/step':>17}"
    print(header)
    print("-" * len(header))
    for v in variants:
        print(f"{v:<22} {medians[v] * 1e3:>14.1f} {ratios[v]:>8.3f}x {paired[v]:>7.3f}x {walls[v] * 1e3:>17.1f}")


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
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

    models, warmup = {}, {}
    for v in variants:
        t0 = time.perf_counter()
        model, cbs = make_variant(v, args.seed)
        model.fit(dataset, steps_per_epoch=args.warmup_steps, epochs=1, verbose=0, callbacks=cbs())
        warmup[v] = time.perf_counter() - t0
        models[v] = (model, cbs)
        print(f"  built + warmed up {v:<20} in {warmup[v]:6.1f} s ({model.count_params():,} params)", flush=True)

    steady = {v: [] for v in variants}
    wall = {v: [] for v in variants}
    orders = []
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        orders.append(order)
        for v in order:
            model, cbs = models[v]
            s, w = timed_fit(model, cbs, dataset, args.steps)
            steady[v].append(s)
            wall[v].append(w)
        print(
            f"  round {r + 1}/{args.rounds}: "
            + ", ".join(f"{v} {steady[v][-1] * 1e3:.1f}" for v in variants)
            + " ms/step",
            flush=True,
        )

    medians = {v: statistics.median(steady[v]) for v in variants}
    wall_medians = {v: statistics.median(wall[v]) for v in variants}
    ratios = {v: medians[v] / medians["plain"] for v in variants}
    paired = {v: statistics.median([a / b for a, b in zip(steady[v], steady["plain"])]) for v in variants}
    wall_ratios = {v: wall_medians[v] / wall_medians["plain"] for v in variants}

    print()
    print_table(variants, medians, ratios, paired, wall_medians)
    print()
    target_met = ratios["chipnet"] <= TARGET_RATIO and ratios["chipnet"] < ratios["tfmot"]
    print(f"(b)/(a) chipnet / plain = {ratios['chipnet']:.3f}x   (paired per-round median {paired['chipnet']:.3f}x)")
    print(f"(c)/(a) tfmot   / plain = {ratios['tfmot']:.3f}x   (paired per-round median {paired['tfmot']:.3f}x)")
    print(f"target (chipnet <= {TARGET_RATIO:.2f}x plain and below tfmot's ratio) met: {'yes' if target_met else 'no'}")

    breakdown = None
    if args.breakdown:
        hooks = time_callback_hooks(models["chipnet"][0])
        m = medians
        breakdown = {
            "callback_per_step_s": m["chipnet"] - m["chipnet_no_callback"],
            "callback_hooks_direct_s": hooks,
            "channel_gates_s": m["chipnet_no_callback"] - m["chipnet_no_gates"],
            "controller_losses_metrics_s": m["chipnet_no_gates"] - m["chipnet_skeleton"],
            "rebuilt_graph_s": m["chipnet_skeleton"] - m["plain"],
            "total_overhead_s": m["chipnet"] - m["plain"],
        }
        print("\nChipNet overhead breakdown (differences of medians; noise is ~ the round-to-round spread):")
        for k, val in breakdown.items():
            share = val / breakdown["total_overhead_s"] * 100 if breakdown["total_overhead_s"] > 0 else float("nan")
            extra = "" if k in ("total_overhead_s", "callback_hooks_direct_s") else f" ({share:5.1f}% of total)"
            print(f"  {k:<30} {val * 1e3:8.3f} ms/step{extra}")

    elapsed = time.perf_counter() - t_start
    payload = {
        "benchmark": "chipnet_tf training-step overhead",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "model": "resnet20 (32x32x3, 3x3 basic blocks 16/32/64, Conv-BN-ReLU, 1x1 projection shortcuts, GAP, Dense(10))",
            "rounds": args.rounds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup_steps,
            "seed": args.seed,
            "quick": args.quick,
            "optimizer": "SGD(0.01, momentum=0.9)",
            "timing": "per-step = (end of last batch - end of first batch) / (steps - 1) within one fit call, "
            "timer callback after the pruning callback; median over rounds",
        },
        "variants": {v: DESCRIPTIONS[v] for v in variants},
        "params": {v: int(models[v][0].count_params()) for v in variants},
        "round_orders": orders,
        "raw_per_step_s": steady,
        "raw_fit_wall_per_step_s": wall,
        "warmup_s": warmup,
        "median_per_step_s": medians,
        "median_fit_wall_per_step_s": wall_medians,
        "ratio_vs_plain": ratios,
        "paired_ratio_vs_plain": paired,
        "fit_wall_ratio_vs_plain": wall_ratios,
        "target": {
            "rule": f"chipnet/plain <= {TARGET_RATIO} and chipnet/plain < tfmot/plain",
            "chipnet_ratio": ratios["chipnet"],
            "tfmot_ratio": ratios["tfmot"],
            "met": bool(target_met),
        },
        "breakdown": breakdown,
        "environment": env,
        "total_runtime_s": elapsed,
    }
    write_json_atomic(args.output, payload)
    print(f"\nwrote {args.output}  (total run time {elapsed:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
