"""Accuracy at a budget on digits: ChipNet against L1-norm, network slimming, random and tfmot.

What runs (all on scikit-learn's digits through the offline ``digits`` tfds builder; 1,437
training images of which the last 10% are held out for ChipNet's model selection, 360 test
images that only the final evaluation sees):

* **dense**: ``chipnet_tf.architectures.preresnet(depth=20, input_shape=(8, 8, 1))`` - the
  paper's PreResNet family (bottleneck pre-activation blocks) at depth 20: 16 channel
  groups, 912 channels, 221,914 parameters, 2.09 MFLOPs. Trained per seed with SGD
  (momentum 0.9, Nesterov, lr 0.05, x0.1 at 50% and 75% of the epochs, weight decay 1e-3).
* for every seed, budget type (FLOPs, channels) and budget (0.5 ... 0.02), one mask per method:

  * ``chipnet``: ``prune_low_budget`` on the dense model, paper defaults (AdamW 1e-3, weight
    decay 1e-3 except on the mask logits, budget weight 30, crispness weight 10, the default
    schedules), ``--prune_epochs`` epochs with ``BestHardMasks`` (the reference code's model
    selection: the pruning epoch whose hard network, BatchNorm re-estimated, validates best
    on the held-out 10%). The pruned model's weights are the ones fine-tuned.
  * ``l1`` (Li et al. 2017, "Pruning filters for efficient ConvNets"): a channel scores the
    L1 norm of its filter, normalised by its layer's mean (averaged over a group's writers);
    the highest-scoring channels are kept globally under the budget by the same
    ``select_masks`` ChipNet uses. Li et al. pick per-layer rates by a sensitivity analysis;
    a global ranking of normalised norms is the usual budget-driven variant.
  * ``slimming`` (Liu et al. 2017, "Learning efficient convolutional networks through network
    slimming"): the dense model is trained further for ``--prune_epochs`` epochs with an L1
    penalty ``lambda * sum |gamma|`` on the BatchNorm scales (same SGD as pretraining);
    channels are ranked globally by ``|gamma|`` (mean over the BN layers of a group) and
    kept under the budget with ``select_masks``. ``lambda`` gives the same total L1 shrinkage
    ``lambda * lr * steps`` as Liu et al.'s CIFAR schedule (1e-4 x 0.1 x 62,400 steps), i.e.
    ``0.624 / (lr * steps)``.
  * ``random``: N(0, 1) scores, kept under the budget with ``select_masks``.

  Every mask ends as a real smaller model through ``chipnet_tf.strip_pruning(source,
  masks=...)``. All of them get the *same* fine-tuning: ``--finetune_epochs`` epochs of SGD
  (momentum 0.9, lr 0.05 with x0.1 steps at 50% and 75%, weight decay 1e-3), batch 64.
  ChipNet and slimming additionally had their ``--prune_epochs`` search epochs; L1 and
  random are one-shot (that is what the methods are).
* ``tfmot``: ``prune_low_magnitude`` with ``ConstantSparsity(1 - budget)`` - the same
  fraction of Conv2D/Dense weights kept as the budget - fine-tuned with the same schedule,
  then ``strip_pruning``. Unstructured: the model keeps its dense shape and FLOPs.

Recorded per run: test accuracy after fine-tuning and before it (stripped, BatchNorm
re-estimated on 10 training batches), target vs achieved budget, the stripped model's
``count_params()``, its FLOPs by ``chipnet_tf.count_flops`` and by the TensorFlow profiler
(independent), kept channels per group, groups left with one channel, and whether any loss
or weight was not finite.

**Mask transfer** (digits 0-4 -> 5-9): two 5-class dense models, one per task. ChipNet
prunes each at a FLOPs budget. On task B (5-9) we then fine-tune (identically):
``direct`` - B's own ChipNet model; ``direct_masks`` - B's masks on B's dense weights;
``transferred`` - A's masks on B's dense weights; ``random`` - random masks on B's dense
weights. Masks are compared by per-group overlap.

Run::

    python -m benchmarks.accuracy            # the full grid, ~30 minutes on 2 cores
    python -m benchmarks.accuracy --quick    # one seed, one budget, few epochs (~1 min)
"""

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks import common
from benchmarks.latency import channel_scores, prunable_kernel_params
from chipnet_tf import architectures
from chipnet_tf.callbacks import recalibrate_batch_norm, restore_batch_norm
from chipnet_tf.compat import keras, tf
from chipnet_tf.io import write_json
from tests.flops_profiler import profiler_flops

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy.json"
STRUCTURED = ("chipnet", "l1", "slimming", "random")
METHODS = STRUCTURED + ("tfmot",)
DEFAULT_BUDGETS = (0.5, 0.25, 0.1, 0.05, 0.02)
DEFAULT_TYPES = ("flops", "channels")
MODEL = {"name": "preresnet", "kwargs": {"depth": 20}, "input_shape": (8, 8, 1)}
BATCH = 64
LR = 0.05
WEIGHT_DECAY = 1e-3
SLIMMING_TOTAL_SHRINK = 1e-4 * 0.1 * 62_400  # Liu et al. CIFAR: lambda x lr x steps


# -- data -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_digits():
    """Numpy arrays: train (first 90% of the tfds train split), val (last 10%), test."""
    import tensorflow_datasets as tfds

    from recipes import data as recipe_data

    out = {}
    for key, split in (("train", "train[:90%]"), ("val", "train[90%:]"), ("test", "test")):
        ds = recipe_data.load("digits", split)
        images, labels = zip(*tfds.as_numpy(ds))
        out[key] = (np.stack(images).astype("float32") / 255.0, np.asarray(labels, "int64"))
    return out


def task_subset(data, classes):
    """The images of ``classes`` only, relabelled ``0..len(classes)-1``."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = {}
    for key, (x, y) in data.items():
        keep = np.isin(y, classes)
        out[key] = (x[keep], np.asarray([lookup[int(v)] for v in y[keep]], "int64"))
    return out


# -- training -------------------------------------------------------------------------
def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _step_decay(epochs):
    def lr(epoch):
        return LR * (0.1 ** int(epoch >= 0.5 * epochs)) * (0.1 ** int(epoch >= 0.75 * epochs))

    return keras.callbacks.LearningRateScheduler(lr)


def _sgd():
    return keras.optimizers.SGD(LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)


def _fit(model, data, epochs, seed, callbacks=()):
    """``fit`` on the training arrays; returns the history dict (losses per epoch)."""
    if epochs <= 0:
        return {}
    keras.utils.set_random_seed(seed)
    x, y = data["train"]
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=list(callbacks))
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def accuracy(model, data, split="test"):
    model.compile(loss=_loss(), metrics=["accuracy"])
    x, y = data[split]
    return float(model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def pretrain(data, seed, epochs, num_classes=10):
    keras.utils.set_random_seed(seed)
    model = _model(num_classes)
    model.compile(_sgd(), _loss(), metrics=["accuracy"])
    history = _fit(model, data, epochs, seed, [_step_decay(epochs)])
    return model, history


def finetune(small, data, seed, epochs):
    """The one fine-tuning every method gets. Returns (history, all weights finite)."""
    small.compile(_sgd(), _loss(), metrics=["accuracy"])
    history = _fit(small, data, epochs, seed, [_step_decay(epochs)])
    finite = all(np.isfinite(w).all() for w in small.get_weights())
    finite = finite and all(math.isfinite(v) for v in history.get("loss", []))
    return history, bool(finite)


# -- methods --------------------------------------------------------------------------
def _select(spec, scores, budget, budget_type):
    """``select_masks`` that reports (instead of printing) the minimal-network warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masks = chipnet_tf.select_masks(spec, scores, budget, budget_type)
    minimal = any("below what keeping" in str(w.message) for w in caught)
    return masks, minimal


def chipnet_prune(dense, data, budget, budget_type, seed, epochs):
    """ChipNet at the paper's defaults with BestHardMasks. Returns (pruned model, masks, info)."""
    keras.utils.set_random_seed(seed)
    pruned = chipnet_tf.prune_low_budget(clone(dense), budget=budget, budget_type=budget_type)
    opt = keras.optimizers.AdamW(1e-3, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    pruned.compile(opt, _loss(), metrics=["accuracy"])
    best = chipnet_tf.BestHardMasks(data["val"], calibration_data=data["train"][0])
    history = _fit(pruned, data, epochs, seed, [chipnet_tf.UpdatePruningStep(), best])
    masks = chipnet_tf.get_masks(pruned)
    info = {
        "best_epoch": int(best.best_epoch) + 1 if epochs else None,
        "soft_budget_per_epoch": history.get("budget", []),
        "crispness_per_epoch": history.get("crispness", []),
        "hard_val_accuracy_per_epoch": history.get("hard_accuracy", []),
    }
    return pruned, masks, info


def slimming_train(dense, data, seed, epochs):
    """Liu et al.'s sparsity training: L1 on every BatchNorm gamma. Returns (model, lambda)."""
    model = clone(dense)
    steps = epochs * math.ceil(len(data["train"][1]) / BATCH)
    lam = SLIMMING_TOTAL_SHRINK / (LR * max(steps, 1))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    model.add_loss(lambda: lam * tf.add_n([tf.reduce_sum(tf.abs(bn.gamma)) for bn in bns]))
    model.compile(_sgd(), _loss(), metrics=["accuracy"])
    _fit(model, data, epochs, seed, [_step_decay(epochs)])
    plain = clone(dense)  # without the added loss: what gets stripped and fine-tuned
    plain.set_weights(model.get_weights())
    return plain, lam


def bn_gamma_scores(model, analysis):
    """``{group: mean |gamma| over the BatchNorm layers that normalise exactly that group}``.

    A BatchNorm counts for a group when its input is the group's channels in order: the BN
    after a conv (post-activation) and the BN at the start of a pre-activation block, which
    Liu et al. use for pre-ResNets (with their channel-selection layer).
    """
    sums = [np.zeros(g.size) for g in analysis.groups]
    counts = [0] * len(analysis.groups)
    for fnode in analysis.graph.nodes:
        if not isinstance(fnode.layer, keras.layers.BatchNormalization) or len(fnode.in_keys) != 1:
            continue
        layout = analysis.layouts.get(fnode.in_keys[0])
        if layout is None or len(layout[0]) != 1 or layout[1] != 1:
            continue
        g, size = layout[0][0]
        if g is not None and size == analysis.groups[g].size:
            sums[g] += np.abs(fnode.layer.gamma.numpy())
            counts[g] += 1
    missing = [analysis.groups[g].name for g, c in enumerate(counts) if not c]
    if missing:
        raise ValueError(f"groups without a BatchNormalization to score: {missing}")
    return {g.name: s / c for g, s, c in zip(analysis.groups, sums, counts)}


def random_scores(analysis, seed):
    rng = np.random.default_rng(seed)
    return {g.name: rng.standard_normal(g.size) for g in analysis.groups}


def tfmot_finetune(dense, data, keep, seed, epochs):
    """``prune_low_magnitude`` keeping ``keep`` of the Conv2D/Dense weights, fine-tuned, stripped."""
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.ConstantSparsity(1.0 - keep, begin_step=0, frequency=1)
    with common.quiet("tensorflow"):
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(clone(dense), pruning_schedule=schedule)
    wrapped.compile(_sgd(), _loss(), metrics=["accuracy"])
    history = _fit(wrapped, data, max(epochs, 1), seed, [_step_decay(epochs), tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    finite = all(np.isfinite(w).all() for w in stripped.get_weights()) and all(
        math.isfinite(v) for v in history.get("loss", [])
    )
    return stripped, history, bool(finite)


# -- measuring one stripped model -----------------------------------------------------
def measure(small, masks, budget, budget_type, spec):
    """Budget exactness and structure of a stripped model (before fine-tuning changes weights)."""
    counts = np.asarray([int(masks[name].sum()) for name in spec.group_names], dtype=np.float64)
    achieved = {t: float(spec.fraction(counts, t)) for t in chipnet_tf.BUDGET_TYPES}
    dense_params = spec.dense("params")  # exact: equal to dense.count_params() and count_flops(dense)
    dense_flops = spec.dense("flops")
    params = small.count_params()
    flops = chipnet_tf.count_flops(small)
    return {
        "target": budget,
        "achieved": achieved[budget_type],
        "achieved_all": achieved,
        "within_budget": bool(achieved[budget_type] <= budget * (1 + 1e-9)),
        "params": int(params),
        "params_fraction": params / dense_params,
        "params_predicted": int(round(spec.value(counts, "params"))),
        "flops": int(flops),
        "flops_fraction": flops / dense_flops,
        "flops_profiler": int(profiler_flops(small)),
        "kept_per_group": {name: int(masks[name].sum()) for name in spec.group_names},
        "groups_with_one_channel": int(sum(1 for name in spec.group_names if masks[name].sum() == 1)),
    }


def _one_shot_accuracy(small, data):
    saved = recalibrate_batch_norm(small, data["train"][0], steps=10)
    acc = accuracy(small, data)
    restore_batch_norm(saved)
    return acc


def structured_run(method, source, masks, minimal, budget, budget_type, spec, data, seed, args, extra=None):
    t0 = time.perf_counter()
    small = chipnet_tf.strip_pruning(source, masks=masks)
    record = {"method": method, "budget_type": budget_type, "budget": budget, "seed": seed}
    record.update(measure(small, masks, budget, budget_type, spec))
    record["minimal_network"] = minimal
    record["accuracy_before_finetune"] = _one_shot_accuracy(small, data)
    history, finite = finetune(small, data, seed, args.finetune_epochs)
    record["accuracy"] = accuracy(small, data)
    record["finite"] = finite
    record["final_train_loss"] = history.get("loss", [None])[-1]
    record.update(extra or {})
    record["seconds"] = time.perf_counter() - t0
    return record


# -- tasks ----------------------------------------------------------------------------
# The grid is split into tasks that run in a pool of worker processes (one TensorFlow
# thread each: these models are too small for intra-op parallelism to pay) and write their
# results atomically into a work directory; a rerun of the same configuration skips the
# finished tasks, so an interrupted run resumes and loses nothing.
def _weights_path(work, name):
    return os.path.join(work, f"{name}.weights.h5")


def _save_weights(model, work, name):
    target = _weights_path(work, name)
    tmp = target[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, target)


def _model(num_classes=10):
    return architectures.get(
        MODEL["name"], input_shape=MODEL["input_shape"], num_classes=num_classes, **MODEL["kwargs"]
    )


def _load_weights(work, name, num_classes=10):
    model = _model(num_classes)
    model.load_weights(_weights_path(work, name))
    return model


def task_dense(args, work, seed):
    """Pretrains the seed's dense model and its slimming (sparsity-trained) copy."""
    data = load_digits()
    t0 = time.perf_counter()
    dense, history = pretrain(data, seed, args.pretrain_epochs)
    record = {
        "accuracy": accuracy(dense, data),
        "params": dense.count_params(),
        "flops": int(chipnet_tf.count_flops(dense)),
        "flops_profiler": int(profiler_flops(dense)),
        "final_train_loss": history.get("loss", [None])[-1],
        "seconds": time.perf_counter() - t0,
    }
    t0 = time.perf_counter()
    slim, lam = slimming_train(dense, data, seed, args.prune_epochs)
    slimming = {"lambda": lam, "seconds": time.perf_counter() - t0, "accuracy": accuracy(slim, data)}
    _save_weights(dense, work, f"dense_{seed}")
    _save_weights(slim, work, f"slimming_{seed}")
    return {"seed": seed, "dense": record, "slimming": slimming}


def task_grid(args, work, seed, budget_type, budget):
    """The four structured methods at one (seed, budget type, budget)."""
    data = load_digits()
    dense = _load_weights(work, f"dense_{seed}")
    slim_source = _load_weights(work, f"slimming_{seed}")
    analysis = chipnet_tf.analyze(dense, warn=False)
    spec = analysis.spec
    records = []
    for method in STRUCTURED:
        if method == "chipnet":
            t0 = time.perf_counter()
            pruned, masks, info = chipnet_prune(dense, data, budget, budget_type, seed, args.prune_epochs)
            info["prune_seconds"] = time.perf_counter() - t0
            records.append(
                structured_run(method, pruned, masks, False, budget, budget_type, spec, data, seed, args, info)
            )
            continue
        if method == "l1":
            scores = channel_scores(dense, analysis, seed)[0]
        elif method == "slimming":
            scores = bn_gamma_scores(slim_source, analysis)
        else:
            scores = random_scores(analysis, 1000 * seed + int(1000 * budget))
        source = slim_source if method == "slimming" else dense
        masks, minimal = _select(spec, scores, budget, budget_type)
        records.append(structured_run(method, source, masks, minimal, budget, budget_type, spec, data, seed, args))
    return records


def task_tfmot(args, work, seed, budget):
    data = load_digits()
    dense = _load_weights(work, f"dense_{seed}")
    t0 = time.perf_counter()
    stripped, history, finite = tfmot_finetune(dense, data, budget, seed, args.finetune_epochs)
    nonzero = int(sum(np.count_nonzero(w) for w in stripped.get_weights()))
    kernels = [
        layer.kernel.numpy()
        for layer in stripped.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
    ]  # what prune_low_magnitude prunes, as latency.prunable_kernel_params counts it
    flops = chipnet_tf.count_flops(stripped)
    return [
        {
            "method": "tfmot",
            "budget_type": "weights",
            "budget": budget,
            "seed": seed,
            "accuracy": accuracy(stripped, data),
            "finite": finite,
            "params": int(stripped.count_params()),
            "nonzero_params": nonzero,
            "nonzero_params_fraction": nonzero / dense.count_params(),
            "nonzero_kernel_fraction": sum(np.count_nonzero(k) for k in kernels) / prunable_kernel_params(stripped),
            "flops": int(flops),
            "flops_fraction": flops / chipnet_tf.count_flops(dense),
            "final_train_loss": history.get("loss", [None])[-1],
            "seconds": time.perf_counter() - t0,
        }
    ]


TASK_A, TASK_B = tuple(range(5)), tuple(range(5, 10))


def task_transfer_dense(args, work, seed):
    """The two 5-class dense models of the transfer study (digits 0-4 and 5-9)."""
    data = load_digits()
    out = {"seed": seed}
    for name, classes in (("a", TASK_A), ("b", TASK_B)):
        task = task_subset(data, list(classes))
        dense, _ = pretrain(task, seed, args.pretrain_epochs, num_classes=5)
        out[f"dense_{name}_accuracy"] = accuracy(dense, task)
        _save_weights(dense, work, f"transfer_{name}_{seed}")
    return out


def _overlap(a, b):
    inter = sum(int(np.logical_and(a[k], b[k]).sum()) for k in a)
    union = sum(int(np.logical_or(a[k], b[k]).sum()) for k in a)
    return inter / union if union else 1.0


def task_transfer(args, work, seed, budget):
    """Masks from digits 0-4 applied to 5-9, against pruning 5-9 directly, at one FLOPs budget."""
    data = load_digits()
    task_a, task_b = task_subset(data, list(TASK_A)), task_subset(data, list(TASK_B))
    dense_a = _load_weights(work, f"transfer_a_{seed}", num_classes=5)
    dense_b = _load_weights(work, f"transfer_b_{seed}", num_classes=5)
    analysis = chipnet_tf.analyze(dense_b, warn=False)
    _, masks_a, _ = chipnet_prune(dense_a, task_a, budget, "flops", seed, args.prune_epochs)
    pruned_b, masks_b, _ = chipnet_prune(dense_b, task_b, budget, "flops", seed, args.prune_epochs)
    rand, minimal = _select(analysis.spec, random_scores(analysis, seed), budget, "flops")
    variants = {
        "direct": (pruned_b, masks_b, False),
        "direct_masks": (dense_b, masks_b, False),
        "transferred": (dense_b, masks_a, False),
        "random": (dense_b, rand, minimal),
    }
    records = []
    for name, (source, masks, minimal_) in variants.items():
        extra = {"mask_overlap_with_direct": _overlap(masks, masks_b)}
        records.append(
            structured_run(name, source, masks, minimal_, budget, "flops", analysis.spec, task_b, seed, args, extra)
        )
    return records


TASKS = {
    "dense": task_dense,
    "grid": task_grid,
    "tfmot": task_tfmot,
    "transfer_dense": task_transfer_dense,
    "transfer": task_transfer,
}


def _task_file(work, key):
    return os.path.join(work, "-".join(str(k) for k in key) + ".json")


def _worker_init(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    logging.getLogger("absl").setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)


def _run_task(args, work, key):
    """Runs one task (in a worker) and stores its result; returns (key, result, seconds)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = TASKS[key[0]](args, work, *key[1:])
    write_json(_task_file(work, key), result)
    return key, result, time.perf_counter() - t0


def _describe(key, result):
    if key[0] in ("dense", "transfer_dense"):
        accs = {k: round(v, 4) for k, v in result.items() if "accuracy" in k}
        acc = result.get("dense", {}).get("accuracy")
        return f"dense accuracy {acc:.4f}" if acc is not None else f"{accs}"
    return ", ".join(f"{r['method']} {r['accuracy']:.4f}" for r in result)


def run_tasks(phases, args, work, log):
    """Runs the tasks of each phase in turn (a phase may use the previous phases' results) in
    one pool of ``args.workers`` processes, skipping finished tasks; returns {key: result}."""
    import concurrent.futures
    import multiprocessing

    results, todo = {}, []
    keys = [key for phase in phases for key in phase]
    for key in keys:
        filename = _task_file(work, key)
        if os.path.exists(filename):
            with open(filename) as f:
                results[key] = json.load(f)
    if results:
        log(f"resuming: {len(results)} of {len(keys)} tasks already done")
    todo = [[key for key in phase if key not in results] for phase in phases]
    total = sum(len(phase) for phase in todo)
    if not total:
        return results
    context = multiprocessing.get_context("spawn")
    threads = 1 if args.workers > 1 else 0
    done = 0
    with concurrent.futures.ProcessPoolExecutor(
        args.workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        for phase in todo:
            futures = [pool.submit(_run_task, args, work, key) for key in phase]
            for future in concurrent.futures.as_completed(futures):
                try:
                    key, result, seconds = future.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # finished tasks stay saved for a resume
                    raise
                results[key] = result
                done += 1
                log(f"[{done}/{total}] {' '.join(str(k) for k in key)}: {_describe(key, result)} ({seconds:.0f}s)")
    return results


# -- summaries ------------------------------------------------------------------------
def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "n": int(values.size),
    }


def summarize(seeds_out, transfer_out):
    """Mean +- std over seeds per (budget type, budget, method), stability and exactness checks."""
    rows = {}
    for seed_out in seeds_out:
        for r in seed_out["runs"]:
            types = [r["budget_type"]] if r["method"] != "tfmot" else ["weights"]
            for t in types:
                rows.setdefault((t, r["budget"], r["method"]), []).append(r)
    table = []
    for (t, budget, method), runs in sorted(
        rows.items(), key=lambda kv: (kv[0][0], -kv[0][1], METHODS.index(kv[0][2]))
    ):
        row = {
            "budget_type": t,
            "budget": budget,
            "method": method,
            "accuracy": _mean_std([r["accuracy"] for r in runs]),
        }
        if method != "tfmot":
            row["accuracy_before_finetune"] = _mean_std([r["accuracy_before_finetune"] for r in runs])
            row["achieved"] = _mean_std([r["achieved"] for r in runs])
            row["max_achieved"] = max(r["achieved"] for r in runs)
            row["params_fraction"] = _mean_std([r["params_fraction"] for r in runs])
            row["flops_fraction"] = _mean_std([r["flops_fraction"] for r in runs])
        else:
            row["nonzero_params_fraction"] = _mean_std([r["nonzero_params_fraction"] for r in runs])
        row["all_finite"] = all(r["finite"] for r in runs)
        table.append(row)
    dense = _mean_std([s["dense"]["accuracy"] for s in seeds_out])
    structured = [r for s in seeds_out for r in s["runs"] if r["method"] != "tfmot"]
    exact = {
        "runs": len(structured),
        "within_budget": sum(r["within_budget"] for r in structured),
        "params_equal_prediction": sum(r["params"] == r["params_predicted"] for r in structured),
        "flops_equal_profiler": sum(r["flops"] == r["flops_profiler"] for r in structured),
        "max_overshoot": max((r["achieved"] - r["target"] for r in structured), default=0.0),
        "max_shortfall": max((r["target"] - r["achieved"] for r in structured), default=0.0),
    }
    smallest = min((r["budget"] for r in structured), default=None)
    extreme = [r for r in structured if r["budget"] == smallest]

    def _stability(runs):
        return {
            "accuracy": _mean_std([r["accuracy"] for r in runs]),
            "min_accuracy": min(r["accuracy"] for r in runs),
            "all_finite": all(r["finite"] for r in runs),
            "max_groups_with_one_channel": max(r["groups_with_one_channel"] for r in runs),
            "minimal_network_runs": sum(r["minimal_network"] for r in runs),
        }

    stability = {
        "budget": smallest,
        "chance": 0.1,
        "groups": len(extreme[0]["kept_per_group"]) if extreme else None,
        "by_type": {
            t: {
                m: _stability([r for r in extreme if r["method"] == m and r["budget_type"] == t])
                for m in STRUCTURED
                if any(r["method"] == m and r["budget_type"] == t for r in extreme)
            }
            for t in sorted({r["budget_type"] for r in extreme})
        },
    }
    transfer = {}
    for seed_out in transfer_out:
        for r in seed_out["runs"]:
            transfer.setdefault((r["budget"], r["method"]), []).append(r)
    transfer_table = [
        {
            "budget": b,
            "variant": m,
            "accuracy": _mean_std([r["accuracy"] for r in runs]),
            "mask_overlap_with_direct": _mean_std([r["mask_overlap_with_direct"] for r in runs]),
        }
        for (b, m), runs in sorted(transfer.items(), key=lambda kv: -kv[0][0])
    ]
    return {
        "dense_accuracy": dense,
        "table": table,
        "exactness": exact,
        "stability": stability,
        "transfer": transfer_table,
    }


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS))
    p.add_argument("--budget_types", nargs="+", choices=DEFAULT_TYPES, default=list(DEFAULT_TYPES))
    p.add_argument("--pretrain_epochs", type=int, default=30)
    p.add_argument("--prune_epochs", type=int, default=20)
    p.add_argument("--finetune_epochs", type=int, default=20)
    p.add_argument("--transfer_budgets", type=float, nargs="*", default=[0.25, 0.05])
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one TF thread each)")
    p.add_argument("--quick", action="store_true", help="1 seed, budget 0.05, 2/2/1 epochs (~1 min)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results path (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.transfer_budgets = [0], [0.05], [0.05]
        args.pretrain_epochs, args.prune_epochs, args.finetune_epochs = 2, 2, 1
    for b in args.budgets + args.transfer_budgets:
        if not 0 < b <= 1:
            p.error(f"budgets must be in (0, 1]. Received: {b}")
    for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    if args.workers < 1:
        p.error(f"--workers must be >= 1. Received: {args.workers}")
    return args


def _code_digest():
    """SHA-256 of the code a task's result depends on: this file, benchmarks/latency.py, chipnet_tf/."""
    digest = hashlib.sha256()
    package = Path(chipnet_tf.__file__).resolve().parent
    for path in [Path(__file__).resolve(), Path(__file__).resolve().parent / "latency.py"] + sorted(
        package.rglob("*.py")
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _config(args):
    return {
        "dataset": "digits (tfds builder recipes/datasets/digits.py): train[:90%] trains, "
        "train[90%:] is ChipNet's selection hold-out, test is reported",
        "model": f"chipnet_tf.architectures.{MODEL['name']}(**{MODEL['kwargs']}, input_shape={MODEL['input_shape']})",
        "seeds": args.seeds,
        "budgets": args.budgets,
        "budget_types": args.budget_types,
        "pretrain_epochs": args.pretrain_epochs,
        "prune_epochs": args.prune_epochs,
        "finetune_epochs": args.finetune_epochs,
        "batch_size": BATCH,
        "optimizer": f"SGD(lr {LR}, momentum 0.9, Nesterov, weight decay {WEIGHT_DECAY}), x0.1 at 50% and 75%",
        "chipnet": "prune_low_budget paper defaults; AdamW(1e-3, weight decay 1e-3, none on zeta); "
        "UpdatePruningStep + BestHardMasks(held-out 10%, BN re-estimated on training images)",
        "l1": "per-channel filter L1 / layer mean, averaged over a group's writers; select_masks",
        "slimming": "L1 on BN gammas for prune_epochs (lambda = total_shrink / (lr * steps)); |gamma|; select_masks",
        "slimming_total_shrink": SLIMMING_TOTAL_SHRINK,
        "random": "N(0, 1) scores; select_masks",
        "tfmot": "prune_low_magnitude(ConstantSparsity(1 - budget)) fine-tuned like the others, strip_pruning",
        "transfer": {
            "from": "digits 0-4",
            "to": "digits 5-9",
            "budgets": args.transfer_budgets,
            "budget_type": "flops",
        },
        "workers": args.workers,
        "quick": args.quick,
    }


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

    config = _config(args)
    digest = hashlib.sha256(json.dumps({k: v for k, v in config.items() if k != "workers"}, sort_keys=True).encode())
    digest.update(_code_digest().encode())  # a resumed run never mixes results of other code
    work = args.output.parent / ".work" / f"{args.output.stem}-{digest.hexdigest()[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    work = str(work)
    load_digits()  # prepares the tfds dataset here, once, before two workers could race to build it
    log(
        f"accuracy benchmark: {len(args.seeds)} seeds x {len(args.budget_types)} budget types x "
        f"{len(args.budgets)} budgets x {len(METHODS)} methods; work directory {work}"
    )
    first = [("dense", s) for s in args.seeds] + [("transfer_dense", s) for s in args.seeds if args.transfer_budgets]
    second = [("transfer", s, b) for s in args.seeds for b in args.transfer_budgets]
    second += [("grid", s, t, b) for s in args.seeds for t in args.budget_types for b in args.budgets]
    second += [("tfmot", s, b) for s in args.seeds for b in args.budgets]
    results = run_tasks([first, second], args, work, log)

    seeds_out = []
    for seed in args.seeds:
        runs = [r for t in args.budget_types for b in args.budgets for r in results[("grid", seed, t, b)]]
        runs += [r for b in args.budgets for r in results[("tfmot", seed, b)]]
        seeds_out.append({**results[("dense", seed)], "runs": runs})
    transfer_out = [
        {
            **results[("transfer_dense", s)],
            "runs": [r for b in args.transfer_budgets for r in results[("transfer", s, b)]],
        }
        for s in args.seeds
        if args.transfer_budgets
    ]
    payload = {
        "benchmark": "accuracy",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "seeds": seeds_out,
        "transfer": transfer_out,
        "summary": summarize(seeds_out, transfer_out),
        "environment": common.environment("tensorflow-model-optimization"),
        "total_runtime_s": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(work))  # .work/, when no other configuration is in progress
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
