"""Transformer benchmark, runs: the dense ViT, ChipNet's search and the one-shot masks, each
stripped, measured and fine-tuned the same way."""

import json
import math
import os
import time

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy.protocol import SEARCH_FRACTION
from benchmarks.latency.models import channel_scores
from chipnet_tf import architectures
from chipnet_tf.compat import keras
from chipnet_tf.io import write_json

BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 0.05
MODEL = {"name": "vit", "kwargs": {"patch": 4, "depth": 6, "width": 64, "heads": 4, "mlp": 128}}
METHODS = ("chipnet", "l1", "random")


def build(dataset):
    spec = acc_data.DATASETS[dataset]
    return architectures.get(
        MODEL["name"], input_shape=spec["input_shape"], num_classes=spec["classes"], **MODEL["kwargs"]
    )


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _adamw(epochs, data):
    """AdamW with a cosine decay over ``epochs``: the one optimiser of the dense pretraining and
    of every method's fine-tuning (ViTs train poorly with the CNN grid's SGD)."""
    steps = max(1, epochs) * math.ceil(len(data["train"][1]) / BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(LR, steps)
    return keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY)


def train(model, data, epochs, seed):
    """Trains ``model`` ``epochs`` epochs (AdamW, cosine); returns the loss per epoch."""
    if epochs <= 0:
        return []
    keras.utils.set_random_seed(seed)
    model.compile(_adamw(epochs, data), _loss(), metrics=["accuracy"])
    x, y = data["train"]
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0)
    return [float(v) for v in history.history["loss"]]


def accuracy(model, data, split="test"):
    model.compile(loss=_loss(), metrics=["accuracy"])
    x, y = data[split]
    return float(model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def head_scores(dense, analysis):
    """L1-norm scores: every head by the L1 norm of its query, key and value columns and
    its output rows; every other group as in the CNN grid (writers' output-channel norms,
    mean-normalised)."""
    scores, _ = channel_scores(dense, analysis, seed=0)
    for group in analysis.groups:
        layer_name, _, label = group.name.partition("/")
        if label != "heads":
            continue
        q, _, k, _, v, _, o, _ = [np.abs(w) for w in dense.get_layer(layer_name).get_weights()]
        norms = q.sum(axis=(0, 2)) + k.sum(axis=(0, 2)) + v.sum(axis=(0, 2)) + o.sum(axis=(1, 2))
        scores[group.name] = norms / norms.mean()
    return scores


def plan(total_epochs):
    """``{method: (search epochs, fine-tuning epochs)}``: every method trains ``total_epochs``
    after the dense pretraining; ChipNet searches the grid's share of them (SEARCH_FRACTION,
    chosen on Fashion-MNIST's validation split for the CNN grid and kept fixed here)."""
    search = min(max(1, round(SEARCH_FRACTION * total_epochs)), total_epochs - 1)
    return {"chipnet": (search, total_epochs - search), "l1": (0, total_epochs), "random": (0, total_epochs)}


def dense_task(args, work, seed):
    data = acc_data.load(args.dataset)
    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)
    dense = build(args.dataset)
    losses = train(dense, data, args.dense_epochs, seed)
    dense.save_weights(os.path.join(work, f"dense_{seed}.weights.h5"))
    return {
        "seed": seed,
        "accuracy": accuracy(dense, data),
        "params": dense.count_params(),
        "flops": chipnet_tf.count_flops(dense),
        "final_train_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - t0,
    }


def _dense(args, work, seed):
    dense = build(args.dataset)
    dense.load_weights(os.path.join(work, f"dense_{seed}.weights.h5"))
    return dense


def _masks(method, dense, analysis, data, budget, seed, search_epochs, budget_type="flops", table=None):
    """``(masks, search record)`` of one method at a ``budget`` (``table``: a latency table)."""
    if method == "random":
        rng = np.random.default_rng(seed)
        scores = {g.name: rng.standard_normal(g.size) for g in analysis.groups}
        return chipnet_tf.select_masks(analysis.spec, scores, budget, budget_type), {}
    if method == "l1":
        return chipnet_tf.select_masks(analysis.spec, head_scores(dense, analysis), budget, budget_type), {}
    keras.utils.set_random_seed(seed)
    copy = keras.models.clone_model(dense)
    copy.set_weights(dense.get_weights())
    pruned = chipnet_tf.prune_low_budget(copy, budget=budget, budget_type=budget_type, latency_table=table)
    steps = search_epochs * math.ceil(len(data["train"][1]) / BATCH)
    pruned.compile(chipnet_tf.search_optimizer(steps), _loss(), metrics=["accuracy"])
    best = chipnet_tf.BestHardMasks(data["val"])
    x, y = data["train"]
    pruned.fit(
        x, y, batch_size=BATCH, epochs=search_epochs, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep(), best]
    )
    soft = float(chipnet_tf.prune.controllers(pruned)[0].penalties()[0])
    return chipnet_tf.get_masks(pruned), {"final_soft_budget": soft, "best_epoch": int(best.best_epoch) + 1}


def method_task(args, work, seed, method, budget):
    """One method at one FLOPs budget: masks, strip (exactness checked), accuracy before and
    after the fine-tuning every method gets."""
    data = acc_data.load(args.dataset)
    dense = _dense(args, work, seed)
    analysis = chipnet_tf.analyze(dense, warn=False)
    search_epochs, finetune_epochs = plan(args.total_epochs)[method]
    t0 = time.perf_counter()
    masks, record = _masks(method, dense, analysis, data, budget, seed, search_epochs)
    search_seconds = time.perf_counter() - t0
    small = chipnet_tf.strip_pruning(dense, masks=masks)
    report = chipnet_tf.budget_report(dense, masks=masks).totals
    record.update(
        method=method,
        seed=seed,
        budget=budget,
        search_epochs=search_epochs,
        finetune_epochs=finetune_epochs,
        search_seconds=search_seconds,
        flops=chipnet_tf.count_flops(small),
        flops_fraction=report["flops"]["fraction"],
        flops_exact=chipnet_tf.count_flops(small) == report["flops"]["kept"],
        params_exact=small.count_params() == report["params"]["kept"],
        heads={g: int(m.sum()) for g, m in masks.items() if g.endswith("/heads")},
        kept_per_group={g: int(m.sum()) for g, m in masks.items()},
        accuracy_before_finetune=accuracy(small, data),
    )
    t1 = time.perf_counter()
    losses = train(small, data, finetune_epochs, seed)
    record.update(
        finetune_seconds=time.perf_counter() - t1,
        accuracy=accuracy(small, data),
        final_train_loss=losses[-1] if losses else None,
        finite=bool(all(np.isfinite(w).all() for w in small.get_weights())),
    )
    small.save_weights(os.path.join(work, f"{method}_{budget}_{seed}.weights.h5"))
    write_json(os.path.join(work, f"{method}_{budget}_{seed}.masks.json"), {g: m.tolist() for g, m in masks.items()})
    return record


def latency_task(args, work, seed):
    """LiteRT float32 latency (1 thread, XNNPACK) of the dense ViT and of every method's
    stripped ViT of ``seed``, timed interleaved with the dense one; ms and ratio to dense."""
    import types

    from benchmarks.latency import timing as lat_timing
    from benchmarks.latency.models import make_interpreter

    dense = _dense(args, work, seed)
    x = np.random.default_rng(0).standard_normal((1, *dense.inputs[0].shape[1:])).astype("float32")
    interps = {"dense": make_interpreter(chipnet_tf.export.to_tflite(dense), x)}
    for budget in args.budgets:
        for method in METHODS:
            with open(os.path.join(work, f"{method}_{budget}_{seed}.masks.json")) as f:
                masks = {g: np.asarray(m, bool) for g, m in json.load(f).items()}
            small = chipnet_tf.strip_pruning(dense, masks=masks)
            interps[f"{method}_{budget}"] = make_interpreter(chipnet_tf.export.to_tflite(small), x)
    timing = types.SimpleNamespace(warmup=5, rounds=15, invocations=20)
    per_round, _, load = lat_timing.interleaved_timing(interps, timing, "ViTs")
    summary = lat_timing.summarize(per_round)
    return {
        "seed": seed,
        "ms": {name: summary["median_s"][name] * 1e3 for name in interps},
        "ratio_vs_dense": {name: summary["ratio_vs_dense"][name] for name in interps},
        "load_average_1min": load,
    }


def latency_budget_task(args, work, seed, budget):
    """ChipNet at a latency ``budget`` (a LiteRT float32 table of the dense ViT, 1 thread): its
    stripped ViT timed against the dense one, the table's prediction beside the measurement,
    and its accuracy after the same epochs as the FLOPs runs."""
    import types

    from benchmarks.latency import timing as lat_timing
    from benchmarks.latency.models import make_interpreter

    data = acc_data.load(args.dataset)
    dense = _dense(args, work, seed)
    table = chipnet_tf.latency.profile(dense, threads=1, cache_dir=os.path.join(work, "latency_cache"))
    spec = chipnet_tf.latency.attach(chipnet_tf.analyze(dense, warn=False), table)
    search_epochs, finetune_epochs = plan(args.total_epochs)["chipnet"]
    analysis = chipnet_tf.analyze(dense, warn=False)
    masks, record = _masks("chipnet", dense, analysis, data, budget, seed, search_epochs, "latency", table)
    small = chipnet_tf.strip_pruning(dense, masks=masks)
    x = np.random.default_rng(0).standard_normal((1, *dense.inputs[0].shape[1:])).astype("float32")
    interps = {
        "dense": make_interpreter(chipnet_tf.export.to_tflite(dense), x),
        "pruned": make_interpreter(chipnet_tf.export.to_tflite(small), x),
    }
    per_round, _, load = lat_timing.interleaved_timing(
        interps, types.SimpleNamespace(warmup=5, rounds=15, invocations=20), "latency budget"
    )
    measured = lat_timing.summarize(per_round)["ratio_vs_dense"]["pruned"]
    counts = [int(masks[g].sum()) for g in spec.group_names]
    predicted = float(spec.fraction(counts, "latency"))
    record.update(
        method="chipnet",
        budget_type="latency",
        budget=budget,
        seed=seed,
        predicted_fraction=predicted,
        measured_ratio=measured,
        predictor_error=predicted / measured - 1.0,
        flops_fraction=float(spec.fraction(counts, "flops")),
        heads={g: int(m.sum()) for g, m in masks.items() if g.endswith("/heads")},
        kept_per_group={g: int(m.sum()) for g, m in masks.items()},
        accuracy_before_finetune=accuracy(small, data),
        load_average_1min=load,
    )
    losses = train(small, data, finetune_epochs, seed)
    record.update(accuracy=accuracy(small, data), final_train_loss=losses[-1] if losses else None)
    return record
