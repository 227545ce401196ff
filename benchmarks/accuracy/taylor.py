"""Accuracy benchmark, Taylor iterative pruning (Molchanov et al., CVPR 2019, "Importance
Estimation for Neural Network Pruning"), on chipnet_tf's wrapped model.

A channel's importance is the first-order Taylor estimate of the loss change when its
BatchNorm output is removed, ``(gamma * dL/dgamma + beta * dL/dbeta)^2`` per minibatch, summed
over the minibatches of training since the last pruning step. A group's channel is read by
one or more BatchNorm layers (``methods.bn_readers``, the layers slimming scores): their
terms are added inside the square (the change when all of them lose the channel together).

The dense model is wrapped with ``prune_low_budget`` and its gates fixed with
``apply_masks`` (all ones at first). Gates after a BatchNorm are folded into it
(``BN(x; gamma*m, beta*m)``), the others multiply the channel, and the wrapped model's output
under hard masks equals the stripped model's, so a pruned channel is exactly zero
everywhere it is read, and its own gamma/beta get zero gradient. Training is the benchmark's
SGD recipe at its constant starting rate, in a plain loop (the gradients are needed per
step). The pruning phase is split into ``TAYLOR_STEPS`` equal runs of steps; after run k the
target is ``budget ** (k / TAYLOR_STEPS)`` (geometric from 1 to the budget) and
``select_masks`` keeps the most important channels under it, pruned channels scoring -inf
(so none comes back). The final masks meet the budget and are relative to the dense model.
"""

import math

import numpy as np

import chipnet_tf
from benchmarks.accuracy.methods import BATCH, _loss, _sgd, bn_readers, clone, select_quietly
from chipnet_tf.compat import keras, tf

TAYLOR_STEPS = 5


def _train_step(wrapped, readers, groups):
    """A tf.function: one SGD step on a batch; returns each group's Taylor term, squared."""
    loss_fn = _loss()
    params = [v for v in wrapped.trainable_variables if "zeta" not in v.name]  # gate logits: unused
    opt = _sgd()
    opt.build(params)
    bn_vars = [(layer.gamma, layer.beta) for layer, _ in readers]
    watched = [v for pair in bn_vars for v in pair]

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, wrapped(x, training=True))
        grads = tape.gradient(loss, params + watched)
        opt.apply_gradients(zip(grads[: len(params)], params))
        bn_grads = grads[len(params) :]
        terms = [None] * groups
        for i, ((gamma, beta), (_, g)) in enumerate(zip(bn_vars, readers)):
            term = gamma * bn_grads[2 * i] + beta * bn_grads[2 * i + 1]
            terms[g] = term if terms[g] is None else terms[g] + term
        return [tf.square(t) for t in terms]

    return step


def _batches(n, epochs, seed):
    """Index arrays of every training step: one shuffled pass per epoch, batches of BATCH."""
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(n / BATCH)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out += [order[i * BATCH : (i + 1) * BATCH] for i in range(per_epoch)]
    return out


def taylor_prune(dense, data, analysis, budget, budget_type, seed, epochs, steps=TAYLOR_STEPS, latency_table=None):
    """Iterative Taylor pruning for ``epochs`` epochs (``latency_table``: for latency budgets,
    whose ``analysis.spec`` must have it attached). Returns (wrapped model, masks, info)."""
    keras.utils.set_random_seed(seed)
    spec = analysis.spec
    extra = {} if latency_table is None else {"latency_table": latency_table}
    wrapped = chipnet_tf.prune_low_budget(clone(dense), budget=budget, budget_type=budget_type, **extra)
    masks = {g.name: np.ones(g.size, bool) for g in analysis.groups}
    chipnet_tf.apply_masks(wrapped, masks)
    for ctl in chipnet_tf.prune.controllers(wrapped):
        ctl.pruning_step.assign(0)  # fixed masks: the search schedule plays no part
    readers = [(wrapped.get_layer(layer.name), g) for layer, g in bn_readers(analysis)]
    step = _train_step(wrapped, readers, len(analysis.groups))
    x, y = data["train"]
    batches = _batches(len(y), epochs, seed)
    bounds = np.linspace(0, len(batches), steps + 1).round().astype(int)
    history, minimal = [], False
    for k in range(steps):
        importance = [np.zeros(g.size) for g in analysis.groups]
        for idx in batches[bounds[k] : bounds[k + 1]]:
            for g, term in enumerate(step(x[idx], y[idx])):
                importance[g] += term.numpy()
        target = budget ** ((k + 1) / steps)
        scores = {g.name: np.where(masks[g.name], importance[i], -np.inf) for i, g in enumerate(analysis.groups)}
        chosen, minimal = select_quietly(spec, scores, target, budget_type)
        masks = {name: chosen[name] & masks[name] for name in masks}
        chipnet_tf.apply_masks(wrapped, masks)
        counts = [int(masks[name].sum()) for name in spec.group_names]
        history.append({"target": target, "achieved": float(spec.fraction(counts, budget_type))})
    info = {"taylor_steps": history, "taylor_train_steps": len(batches)}
    return wrapped, masks, minimal, info
