"""Accuracy benchmark, tasks: the units of work, run in a pool of worker processes."""

import concurrent.futures
import json
import logging
import multiprocessing
import os
import time
import warnings

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import protocol
from benchmarks.accuracy.baselines import select_slimming
from benchmarks.accuracy.grid import analysis_and_table, latency_table_path, task_grid
from benchmarks.accuracy.methods import (
    STRUCTURED,
    accuracy,
    chipnet_prune,
    pretrain,
    random_scores,
    select_quietly,
    structured_run,
    tfmot_finetune,
)
from benchmarks.accuracy.run import load_weights, save_weights
from benchmarks.accuracy.run import task_file as _task_file
from benchmarks.latency.budget import flops_budget_at_latency
from benchmarks.latency.models import channel_scores, prunable_kernel_params
from chipnet_tf.compat import keras, tf
from chipnet_tf.io import write_json
from tests.flops_oracle import profiler_flops


# -- tasks ----------------------------------------------------------------------------
# The grid is split into tasks that run in a pool of worker processes (one TensorFlow
# thread each: these models are too small for intra-op parallelism to pay) and write their
# results atomically into a work directory; a rerun of the same configuration skips the
# finished tasks, so an interrupted run resumes and loses nothing.
def task_dense(args, work, seed):
    """Pretrains the seed's dense model and its slimming (sparsity-trained) copy, slimming's
    penalty chosen on the validation split."""
    data = acc_data.load(args.dataset)
    t0 = time.perf_counter()
    dense, history = pretrain(lambda: acc_data.model(args.dataset), data, seed, args.pretrain_epochs)
    record = {
        "accuracy": accuracy(dense, data),
        "params": dense.count_params(),
        "flops": int(chipnet_tf.count_flops(dense)),
        "flops_profiler": int(profiler_flops(dense)),
        "final_train_loss": history.get("loss", [None])[-1],
        "seconds": time.perf_counter() - t0,
    }
    save_weights(dense, work, f"dense_{seed}")
    if "slimming" not in getattr(args, "methods", STRUCTURED):  # the ablation: ChipNet only
        return {"seed": seed, "dense": record}
    slim, slimming = select_slimming(dense, data, seed, protocol.plan(args)["slimming"][0])
    save_weights(slim, work, f"slimming_{seed}")
    return {"seed": seed, "dense": record, "slimming": slimming}


def task_tfmot(args, work, seed, budget):
    data = acc_data.load(args.dataset)
    dense = load_weights(args, work, f"dense_{seed}")
    t0 = time.perf_counter()
    stripped, history, finite = tfmot_finetune(dense, data, budget, seed, protocol.plan(args)["tfmot"][1])
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
            "search_seconds": 0.0,
            "finetune_seconds": time.perf_counter() - t0,
            "seconds": time.perf_counter() - t0,
            **protocol.epochs_record(args, "tfmot"),
        }
    ]


TASK_A, TASK_B = tuple(range(5)), tuple(range(5, 10))


def task_transfer_dense(args, work, seed):
    """The two 5-class dense models of the transfer study (digits 0-4 and 5-9)."""
    data = acc_data.load(args.dataset)
    out = {"seed": seed}
    for name, classes in (("a", TASK_A), ("b", TASK_B)):
        task = acc_data.task_subset(data, list(classes))
        dense, _ = pretrain(lambda: acc_data.model(args.dataset, 5), task, seed, args.pretrain_epochs)
        out[f"dense_{name}_accuracy"] = accuracy(dense, task)
        save_weights(dense, work, f"transfer_{name}_{seed}")
    return out


def _overlap(a, b):
    inter = sum(int(np.logical_and(a[k], b[k]).sum()) for k in a)
    union = sum(int(np.logical_or(a[k], b[k]).sum()) for k in a)
    return inter / union if union else 1.0


def task_transfer(args, work, seed, budget):
    """Masks from digits 0-4 applied to 5-9, against pruning 5-9 directly, at one FLOPs budget."""
    data = acc_data.load(args.dataset)
    task_a, task_b = acc_data.task_subset(data, list(TASK_A)), acc_data.task_subset(data, list(TASK_B))
    dense_a = load_weights(args, work, f"transfer_a_{seed}", num_classes=5)
    dense_b = load_weights(args, work, f"transfer_b_{seed}", num_classes=5)
    analysis = chipnet_tf.analyze(dense_b, warn=False)
    _, masks_a, _ = chipnet_prune(dense_a, task_a, budget, "flops", seed, args.prune_epochs, args.search)
    pruned_b, masks_b, _ = chipnet_prune(dense_b, task_b, budget, "flops", seed, args.prune_epochs, args.search)
    rand, minimal = select_quietly(analysis.spec, random_scores(analysis, seed), budget, "flops")
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


def task_ablation(args, work, seed, budget_type, budget, search):
    """ChipNet alone under one named search configuration (benchmarks/accuracy/ablation.py)."""
    data = acc_data.load(args.dataset)
    dense = load_weights(args, work, f"dense_{seed}")
    spec = chipnet_tf.analyze(dense, warn=False).spec
    t0 = time.perf_counter()
    pruned, masks, info = chipnet_prune(
        dense, data, budget, budget_type, seed, args.prune_epochs, search, lr="constant"
    )  # the paper's constant learning rate, as in the ablation's recorded rows
    info["prune_seconds"] = time.perf_counter() - t0
    info["search"] = search
    return structured_run("chipnet", pruned, masks, False, budget, budget_type, spec, data, seed, args, info)


def task_latency_table(args, work):
    """Profiles the dataset's model for LiteRT float32 at 1 thread (benchmarks/latency/accuracy.py).
    Latency does not depend on the weights, so one table serves every seed."""
    model = acc_data.model(args.dataset)
    cache = os.path.join(work, "latency_cache")
    table = chipnet_tf.latency.profile(model, threads=1, cache_dir=cache, progress=False)
    table.save(latency_table_path(work))
    return {"stats": table.stats, "meta": table.meta, "dense_ms": table.dense_ms, "load_average": os.getloadavg()[0]}


def task_latency_search(args, work, seed, kind, budget):
    """ChipNet at latency ``budget`` (``kind`` "latency"), or ChipNet under the FLOPs budget of
    the same predicted latency (``kind`` "flops", after the "latency" task of its seed and
    budget): searched at the FLOPs budget where the L1-norm cut is predicted at the latency
    network's predicted latency, then its learned gates cut at the FLOPs budget where their
    own cut is predicted there (at most, and as close below as the cut allows)."""
    data = acc_data.load(args.dataset)
    dense = load_weights(args, work, f"dense_{seed}")
    analysis, table = analysis_and_table(dense, work, "latency")
    spec = analysis.spec
    t0 = time.perf_counter()
    if kind == "latency":
        pruned, masks, info = chipnet_prune(
            dense, data, budget, "latency", seed, args.prune_epochs, latency_table=table
        )
        cut_type, cut_budget = "latency", budget
    else:
        with open(_task_file(work, ("latency_search", seed, "latency", budget))) as f:
            target_ms = json.load(f)["predicted_latency_fraction"] * spec.dense("latency")
        l1 = channel_scores(dense, analysis, seed)[0]
        search_budget = flops_budget_at_latency(spec, lambda f: select_quietly(spec, l1, f, "flops")[0], target_ms)
        pruned, _, info = chipnet_prune(
            dense, data, search_budget, "flops", seed, args.prune_epochs, latency_table=table
        )
        scores = chipnet_tf.prune.controllers(pruned)[0].scores()
        cut_type = "flops"
        cut_budget = flops_budget_at_latency(spec, lambda f: select_quietly(spec, scores, f, "flops")[0], target_ms)
        masks = select_quietly(spec, scores, cut_budget, "flops")[0]
        info["search_flops_budget"] = search_budget
        info["target_latency_fraction"] = target_ms / spec.dense("latency")
    info.update(prune_seconds=time.perf_counter() - t0, kind=kind, latency_budget=budget)
    counts = [masks[g].sum() for g in spec.group_names]
    info["predicted_latency_fraction"] = spec.fraction(counts, "latency")
    return structured_run("chipnet", pruned, masks, False, cut_budget, cut_type, spec, data, seed, args, info)


TASKS = {
    "ablation": task_ablation,
    "dense": task_dense,
    "grid": task_grid,
    "latency_table": task_latency_table,
    "latency_search": task_latency_search,
    "tfmot": task_tfmot,
    "transfer_dense": task_transfer_dense,
    "transfer": task_transfer,
}


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
    if key[0] == "latency_table":
        return f"latency table profiled in {result['stats']['profile_s']:.0f}s, dense {result['dense_ms']:.3f} ms"
    if key[0] == "latency_search":
        return (
            f"predicted latency {result['predicted_latency_fraction']:.3f}, FLOPs {result['flops_fraction']:.3f}, "
            f"before fine-tuning {result['accuracy_before_finetune']:.4f}, after {result['accuracy']:.4f}"
        )
    if key[0] == "ablation":
        return (
            f"V {result['soft_budget_per_epoch'][-1]:.3f}, "
            f"before fine-tuning {result['accuracy_before_finetune']:.4f}, after {result['accuracy']:.4f}"
        )
    return ", ".join(f"{r['method']} {r['accuracy']:.4f}" for r in result)


def run_tasks(phases, args, work, log):
    """Runs the tasks of each phase in turn (a phase may use the previous phases' results) in
    one pool of ``args.workers`` processes, skipping finished tasks; returns {key: result}."""
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
