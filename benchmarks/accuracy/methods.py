"""Accuracy benchmark, methods: training, ChipNet and the baselines, and measuring a stripped model."""

import math
import time
import warnings

import numpy as np

import chipnet_tf
from benchmarks import common
from chipnet_tf import recalibrate_batch_norm, restore_batch_norm
from chipnet_tf.compat import keras, tf
from chipnet_tf.search.schedules import SQRT2
from tests.flops_oracle import profiler_flops

STRUCTURED = ("chipnet", "chipnet_search_weights", "l1", "slimming", "random", "uniform", "taylor", "scratch")
METHODS = STRUCTURED + ("tfmot",)
BATCH = 64
LR = 0.05
WEIGHT_DECAY = 1e-3
SLIMMING_TOTAL_SHRINK = 1e-4 * 0.1 * 62_400  # Liu et al. CIFAR: lambda x lr x steps (results before the grid)


# ChipNet's search configurations, each one change from the previous (the ablation,
# benchmarks/accuracy/ablation.py, runs them in this order): the paper's; the progress schedule with
# scaled logits; hard straight-through gates; relative logits; the budget target's ramp over
# the first half of the search (crispness after it); gamma held at its
# start and no crispness (the gates stay movable to the end); and the library's default,
# which adds the leak of closed channels. Every setting is named, so a change
# of prune_low_budget's defaults cannot silently change an earlier row.
def _search(ramp=0.0, forward="hard", logits="absolute", gamma_factor=SQRT2, crispness=10.0, leak=0.0):
    return lambda: {
        "schedule": chipnet_tf.HeavisideSchedule.progress(budget_ramp=ramp, gamma_factor=gamma_factor),
        "gate_forward": forward,
        "gate_logits": logits,
        "crispness_weight": crispness,
        "gate_leak": leak,
    }


SEARCHES = {
    "paper": {
        "kwargs": chipnet_tf.paper_search,
        "text": "the paper's configuration: per-epoch schedule, soft gates, absolute logits",
    },
    "progress": {
        "kwargs": _search(forward="soft"),
        "text": "progress schedule with scaled logits, soft gates, absolute logits",
    },
    "progress_hard": {
        "kwargs": _search(),
        "text": "progress schedule with scaled logits, hard straight-through gates, absolute logits",
    },
    "progress_hard_relative": {
        "kwargs": _search(logits="relative"),
        "text": "progress schedule with scaled logits, hard straight-through gates, relative logits",
    },
    "ramp": {
        "kwargs": _search(ramp=0.5, logits="relative"),
        "text": "the budget's target ramped over the first half of the search, crispness after it",
    },
    "constant_gamma": {
        "kwargs": _search(ramp=0.5, logits="relative", gamma_factor=1.0, crispness=0.0),
        "text": "gamma held at its start (2) and no crispness loss, so no gate freezes before the budget is met",
    },
    "default": {
        "kwargs": dict,
        "text": "prune_low_budget's defaults: the above plus closed channels leaking 1% forward (gate_leak=0.01), "
        "so the task loss reaches them",
    },
}


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


def pretrain(build, data, seed, epochs):
    """Seeds, builds a model with ``build()`` and trains it on the training arrays."""
    keras.utils.set_random_seed(seed)
    model = build()
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
def select_quietly(spec, scores, budget, budget_type):
    """``select_masks`` that reports (instead of printing) the minimal-network warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masks = chipnet_tf.select_masks(spec, scores, budget, budget_type)
    minimal = any("below what keeping" in str(w.message) for w in caught)
    return masks, minimal


def chipnet_prune(dense, data, budget, budget_type, seed, epochs, search="default", latency_table=None, lr="cosine"):
    """ChipNet with BestHardMasks under a named search configuration (``latency_table``: for
    latency budgets). ``lr``: ``"cosine"``, ``chipnet_tf.search_optimizer`` (AdamW 1e-3 decayed
    to 0 over the search), or ``"constant"``, the paper's AdamW 1e-3 (the ablation's recorded
    rows). Returns (pruned model, masks, info)."""
    keras.utils.set_random_seed(seed)
    kwargs = SEARCHES[search]["kwargs"]()
    if latency_table is not None:
        kwargs["latency_table"] = latency_table
    pruned = chipnet_tf.prune_low_budget(clone(dense), budget=budget, budget_type=budget_type, **kwargs)
    if lr == "cosine":
        opt = chipnet_tf.search_optimizer(max(1, epochs) * math.ceil(len(data["train"][1]) / BATCH))
    else:
        opt = keras.optimizers.AdamW(1e-3, weight_decay=1e-3)
        opt.exclude_from_weight_decay(var_names=["zeta"])
    pruned.compile(opt, _loss(), metrics=["accuracy"])
    best = chipnet_tf.BestHardMasks(data["val"], calibration_data=data["train"][0])
    history = _fit(pruned, data, epochs, seed, [chipnet_tf.UpdatePruningStep(), best])
    masks = chipnet_tf.get_masks(pruned)
    info = {
        "best_epoch": int(best.best_epoch) + 1 if epochs else None,
        # the soft budget V of the selected logits (the history's "budget" is an epoch mean,
        # which on a short search still includes the target's ramp from 1)
        "final_soft_budget": float(chipnet_tf.prune.controllers(pruned)[0].penalties()[0]),
        "soft_budget_per_epoch": history.get("budget", []),
        "crispness_per_epoch": history.get("crispness", []),
        "hard_val_accuracy_per_epoch": history.get("hard_accuracy", []),
    }
    return pruned, masks, info


def slimming_train(dense, data, seed, epochs, lam):
    """Liu et al.'s sparsity training: ``lam`` x L1 on every BatchNorm gamma. Returns the model."""
    model = clone(dense)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    model.add_loss(lambda: lam * tf.add_n([tf.reduce_sum(tf.abs(bn.gamma)) for bn in bns]))
    model.compile(_sgd(), _loss(), metrics=["accuracy"])
    _fit(model, data, epochs, seed, [_step_decay(epochs)])
    plain = clone(dense)  # without the added loss: what gets stripped and fine-tuned
    plain.set_weights(model.get_weights())
    return plain


def bn_readers(analysis):
    """``[(BatchNormalization layer, group index)]``: the BatchNorm layers that normalise exactly
    one group's channels, in order.

    The BN after a conv (post-activation) and the BN at the start of a pre-activation block,
    which Liu et al. use for pre-ResNets (with their channel-selection layer).
    """
    out = []
    for fnode in analysis.graph.nodes:
        if not isinstance(fnode.layer, keras.layers.BatchNormalization) or len(fnode.in_keys) != 1:
            continue
        layout = analysis.layouts.get(fnode.in_keys[0])
        if layout is None or len(layout[0]) != 1 or layout[1] != 1:
            continue
        g, size = layout[0][0]
        if g is not None and size == analysis.groups[g].size:
            out.append((fnode.layer, g))
    missing = sorted({g.name for g in analysis.groups} - {analysis.groups[g].name for _, g in out})
    if missing:
        raise ValueError(f"groups without a BatchNormalization to score: {missing}")
    return out


def bn_gamma_scores(model, analysis):
    """``{group: mean |gamma| over the BatchNorm layers that normalise exactly that group}``
    (``bn_readers``; ``model`` has the analysed model's layer names)."""
    sums = [np.zeros(g.size) for g in analysis.groups]
    counts = [0] * len(analysis.groups)
    for layer, g in bn_readers(analysis):
        sums[g] += np.abs(model.get_layer(layer.name).gamma.numpy())
        counts[g] += 1
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
    achieved = {t: float(spec.fraction(counts, t)) for t in spec.budget_types}  # with a table: latency too
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


def reinitialise(model, seed):
    """The same architecture with fresh weights from its layers' initialisers (``clone_model``)."""
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def _kernels_equal(a, b):
    """How many Conv/Dense kernels of ``a`` equal ``b``'s (same layer order)."""
    ka = [w.numpy() for w in a.weights if "kernel" in w.name]
    kb = [w.numpy() for w in b.weights if "kernel" in w.name]
    return int(sum(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ka, kb)))


def structured_run(method, source, masks, minimal, budget, budget_type, spec, data, seed, args, extra=None, **options):
    """Strips ``source`` with ``masks``, measures it and fine-tunes it ``finetune_epochs``
    (default ``args.finetune_epochs``); ``reinit=True`` re-initialises the stripped network
    first (training from scratch). Records fine-tuning seconds apart from the total."""
    t0 = time.perf_counter()
    small = chipnet_tf.strip_pruning(source, masks=masks)
    record = {"method": method, "budget_type": budget_type, "budget": budget, "seed": seed}
    record.update(measure(small, masks, budget, budget_type, spec))
    record["minimal_network"] = minimal
    if options.get("reinit"):
        fresh = reinitialise(small, seed)
        record["kernels_equal_to_pruned_dense"] = _kernels_equal(fresh, small)
        small = fresh
    record["accuracy_before_finetune"] = _one_shot_accuracy(small, data)
    t1 = time.perf_counter()
    epochs = options.get("finetune_epochs") or args.finetune_epochs
    history, finite = finetune(small, data, seed, epochs)
    record["finetune_seconds"] = time.perf_counter() - t1
    record["accuracy"] = accuracy(small, data)
    record["finite"] = finite
    record["final_train_loss"] = history.get("loss", [None])[-1]
    record.update(extra or {})
    record["seconds"] = time.perf_counter() - t0
    return record
