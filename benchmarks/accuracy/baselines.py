"""Accuracy benchmark, baselines beyond the one-shot scores: uniform width, and network
slimming's penalty chosen on held-out data."""

import time

import numpy as np

from benchmarks.accuracy.methods import accuracy, slimming_train

# Network slimming's L1 strengths, tried from the largest down. The chosen one is the largest
# whose sparsity-trained model stays within SLIMMING_TOLERANCE of the dense model's accuracy on
# the validation split (never the test split), once per seed. Liu et al.'s CIFAR value is 1e-4.
SLIMMING_LAMBDAS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
SLIMMING_TOLERANCE = 0.01
SLIMMING_RULE = (
    "the largest lambda of the grid whose sparsity-trained model is within 1 point of the dense model's "
    "validation accuracy (train[90%:]); the smallest when none is"
)


def uniform_scores(analysis, within):
    """Scores under which ``select_masks`` keeps the same fraction of every group.

    A channel ranked ``r`` (0 = best by ``within``, e.g. its L1 norm) in a group of ``n`` scores
    ``-(r + 0.5) / n``: the global cut at a score ``-t`` keeps ``round(t * n)`` channels of
    every group (at least one), so the widths are uniform within one channel and the budget
    is met by the same selection as every other method's.
    """
    out = {}
    for group in analysis.groups:
        ranks = np.empty(group.size)
        ranks[np.lexsort((np.arange(group.size), -np.asarray(within[group.name], dtype=np.float64)))] = np.arange(
            group.size
        )
        out[group.name] = -(ranks + 0.5) / group.size
    return out


def select_slimming(dense, data, seed, epochs):
    """Sparsity-trains copies of ``dense`` for ``epochs`` from the largest lambda down and
    keeps the first within tolerance on the validation split. Returns (model, record)."""
    dense_val = accuracy(dense, data, "val")
    tried, chosen = [], None
    for lam in SLIMMING_LAMBDAS:
        t0 = time.perf_counter()
        model = slimming_train(dense, data, seed, epochs, lam)
        val = accuracy(model, data, "val")
        tried.append({"lambda": lam, "val_accuracy": val, "seconds": time.perf_counter() - t0})
        chosen = model
        if val >= dense_val - SLIMMING_TOLERANCE:
            break
    best = tried[-1]
    record = {
        "lambda": best["lambda"],
        "val_accuracy": best["val_accuracy"],
        "dense_val_accuracy": dense_val,
        "lambda_grid": list(SLIMMING_LAMBDAS),
        "tried": tried,
        "rule": SLIMMING_RULE,
        "split": "val",
        "seconds": best["seconds"],  # the chosen model's sparsity training: slimming's search seconds
        "selection_seconds": sum(t["seconds"] for t in tried),
        "accuracy": accuracy(chosen, data),
    }
    return chosen, record
