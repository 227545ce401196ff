"""Hard masks: budget-aware thresholding, applying, saving and loading."""

import json
import os
import warnings
import zipfile
import zlib

import numpy as np

from chipnet_tf.budgets import LATENCY
from chipnet_tf.io import atomic_write
from chipnet_tf.search.batch_norm import DEFAULT_STEPS, as_dataset, check_steps, recalibrate_batch_norm
from chipnet_tf.search.layers.controller import require_controllers
from chipnet_tf.validators import check_budget, check_round_to, first_line


def _units(spec, scores, round_to):
    """Runs of channels of one group, best first (blocks of ``round_to``, or single
    channels): ``(channels, group, score, is the group's first, group offsets)`` per unit."""
    sizes = spec.group_sizes
    unit_channels, unit_group, unit_score, unit_first = [], [], [], []
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    for g, (name, size) in enumerate(zip(spec.group_names, sizes)):
        if name not in scores:
            raise ValueError(f"Scores are missing group {name!r}.")
        s = np.asarray(scores[name], dtype=np.float64).reshape(-1)
        if s.shape[0] != size:
            raise ValueError(f"Scores for group {name!r} have {s.shape[0]} entries, expected {size}.")
        ranked = np.lexsort((np.arange(size), -s))  # by score, ties by position
        step = round_to if size >= round_to else 1
        for k, start in enumerate(range(0, size, step)):
            chans = ranked[start : start + step]
            unit_channels.append(offsets[g] + chans)
            unit_group.append(g)
            unit_score.append(s[chans].min())
            unit_first.append(k == 0)
    return unit_channels, unit_group, unit_score, unit_first, offsets


def select_masks(spec, scores, budget, budget_type, round_to=1):
    """Largest network, keeping the highest-scoring channels, whose cost is within budget.

    Channels are ranked by ``scores`` (the gates' logits: the gate value is monotone in
    them, and logits keep their order where saturated gates tie). Each group keeps at least
    its best channel; then channels are added in rank order while the hard network's
    resource stays ``<= budget`` of the dense one. For the linear budgets (channels,
    volume) this is the paper's sorted-gate cut, exact to one channel; for params/flops it
    is the largest threshold network not above the target. If even one channel per group
    exceeds the budget, that minimal network is returned with a warning.

    With ``round_to=N`` (hardware-friendly widths: use the runtime's channel tile, e.g.
    XNNPACK float32 on an AVX-512 x86 CPU measured best at 16 in the latency benchmark;
    8 is the usual choice on ARM NEON), a group with at least N channels keeps a multiple
    of N (or all of them): its channels are taken in blocks of N, best first, a block ranked by its
    weakest channel; smaller groups still go channel by channel.

    For ``"latency"`` the cost is the table's prediction, a staircase in each layer's
    widths (a width costs like the next multiple of the runtime's channel tile). After the
    cut, the remaining channels are offered again in rank order and kept when the predicted
    latency stays within budget: channels that fill a tile already paid for cost (almost)
    nothing, so tiles are not left half-empty unless the budget forces it.

    Args:
        spec: the :class:`chipnet_tf.budgets.CostSpec` of the network.
        scores: ``{group name: float array}`` (one score per channel).
        budget: target fraction in (0, 1].
        budget_type: one of the four budget types, or ``"latency"`` when ``spec`` has a
            latency table.
        round_to: keep multiples of this many channels per group (1 = no rounding).

    Returns:
        ``{group name: bool array}``.
    """
    budget = check_budget(budget)
    spec.require(budget_type)
    round_to = check_round_to(round_to)
    sizes = spec.group_sizes
    unit_channels, unit_group, unit_score, unit_first, offsets = _units(spec, scores, round_to)
    unit_group = np.asarray(unit_group)
    unit_size = np.asarray([len(c) for c in unit_channels], dtype=np.float64)
    unit_score = np.asarray(unit_score)
    mandatory = np.asarray(unit_first)
    order = np.lexsort((np.arange(unit_score.size), -unit_score))
    rest = order[~mandatory[order]]
    base_counts = np.bincount(unit_group[mandatory], weights=unit_size[mandatory], minlength=len(sizes))
    target = budget * spec.dense(budget_type) * (1 + 1e-12)

    def counts(k):
        return base_counts + np.bincount(unit_group[rest[:k]], weights=unit_size[rest[:k]], minlength=len(sizes))

    if spec.value(base_counts, budget_type) > target:
        warnings.warn(
            f"chipnet_tf: budget {budget} of {budget_type} is below what keeping "
            f"{'one channel' if round_to == 1 else f'one block of {round_to} channels'} per group "
            f"costs ({spec.fraction(base_counts, budget_type):.4f}); returning that minimal network.",
            stacklevel=2,
        )
        k = 0
    else:
        lo, hi = 0, rest.size  # invariant: counts(lo) within budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if spec.value(counts(mid), budget_type) <= target:
                lo = mid
            else:
                hi = mid - 1
        k = lo
    chosen = list(rest[:k])
    if budget_type == LATENCY and k < rest.size:
        chosen += _free_units(spec, rest[k:], counts(k), unit_group, unit_size, target)
    keep = np.zeros(int(offsets[-1]), bool)
    for u in np.concatenate([np.flatnonzero(mandatory), chosen]).astype(int):
        keep[unit_channels[u]] = True
    return {name: keep[offsets[g] : offsets[g + 1]].copy() for g, name in enumerate(spec.group_names)}


def _free_units(spec, candidates, base, unit_group, unit_size, target):
    """The ``candidates`` (units in rank order) that can be added one after another while
    the predicted latency stays ``<= target``: the channels a tile has room for."""
    counts = base.copy()
    added = []
    for u in candidates:
        counts[unit_group[u]] += unit_size[u]
        if spec.value(counts, LATENCY) <= target:
            added.append(u)
        else:
            counts[unit_group[u]] -= unit_size[u]
    return added


def get_masks(model, budget=None, budget_type=None, round_to=1):
    """Hard 0/1 masks of a pruned model that meet its budget.

    Args:
        model: a model returned by :func:`chipnet_tf.prune_low_budget` (or containing
            :class:`PruneLowBudget` layers).
        budget, budget_type: override the model's own target.
        round_to: keep a multiple of this many channels in every group that has at least
            that many (see :func:`select_masks`), e.g. 8 or 16 for XNNPACK.

    Returns:
        ``{group name: bool np.ndarray}``. The hard network keeps, per group, the channels
        with the largest gates; see :func:`select_masks` for the exact rule.

    Example:
        >>> masks = chipnet_tf.get_masks(pruned)  # doctest: +SKIP
        >>> {name: int(m.sum()) for name, m in masks.items()}  # doctest: +SKIP
    """
    masks = {}
    for ctl in require_controllers(model, "reading its masks"):
        masks.update(
            select_masks(
                ctl.spec,
                ctl.scores(),
                ctl.budget if budget is None else budget,
                ctl.budget_type if budget_type is None else budget_type,
                round_to=round_to,
            )
        )
    return masks


def check_masks(masks, names, sizes, where="model", allow_empty=False):
    """Validates ``masks`` against groups; returns them as bool arrays in group order.

    ``allow_empty`` accepts a mask that removes a whole group (explicit masks given to
    ``apply_masks``/``strip_pruning``/``budget_report``; ``get_masks`` never makes one).
    """
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{group name: bool array}}. Received: {type(masks).__name__}")
    missing = [n for n in names if n not in masks]
    extra = [n for n in masks if n not in names]
    if missing or extra:
        hint = " (masks of another model?)" if extra and len(missing) == len(names) else ""
        raise ValueError(
            f"masks do not match the groups of the {where}{hint}: missing {missing}, unknown {extra}. "
            f"Expected groups: {list(names)}"
        )
    out = []
    for name, size in zip(names, sizes):
        m = np.asarray(masks[name])
        if m.ndim != 1 or m.shape[0] != size:
            raise ValueError(f"Mask of group {name!r} has shape {m.shape}; the {where} has {size} channels there.")
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError(f"Mask of group {name!r} must be boolean (0/1). Received values {np.unique(m)[:5]}")
        m = m.astype(bool)
        if not m.any() and not allow_empty:
            raise ValueError(f"Mask of group {name!r} removes every channel; a group keeps at least one.")
        out.append(m)
    return out


def apply_masks(model, masks, calibration_data=None, calibration_steps=DEFAULT_STEPS):
    """Fixes the gates of a pruned model to hard 0/1 masks (or releases them).

    With hard masks the penalties vanish and the gates no longer depend on the logits:
    evaluate the hard network, fine-tune with frozen masks, or transfer masks found on
    another model of the same architecture. ``masks=None`` returns to soft gates.

    The BatchNormalization statistics a search leaves belong to no fixed network (gates at
    the budget's equilibrium open and close from step to step), so the hard network judged
    with them is not the network you get: on digits 0.85-0.92 where its statistics
    re-estimated gave 0.97-0.98. Pass ``calibration_data`` (a few training batches) to
    re-estimate them for the hard network (:func:`chipnet_tf.recalibrate_batch_norm`);
    ``evaluate`` then reports its accuracy, and :func:`chipnet_tf.strip_pruning` inherits
    the statistics. They are replaced, not put back: use ``recalibrate_batch_norm`` and
    :func:`chipnet_tf.restore_batch_norm` to try masks and return.

    Example:
        >>> masks = chipnet_tf.get_masks(pruned)  # doctest: +SKIP
        >>> chipnet_tf.apply_masks(pruned, masks, calibration_data=x_train[:640])  # doctest: +SKIP
        >>> pruned.evaluate(x_test, y_test)  # the hard network's accuracy  # doctest: +SKIP

    Args:
        model: a pruned model.
        masks: ``{group name: bool array}`` covering every group, or None.
        calibration_data: training inputs to re-estimate BatchNormalization statistics on
            under the new gates (a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` batches, an array
            of inputs or an ``(x, y)`` tuple), or None to keep the statistics as they are.
        calibration_steps: batches of ``calibration_data`` to use (an array goes in batches
            of 64).

    Raises:
        ValueError: masks for unknown/missing groups, wrong lengths, or an empty group; a
            ``calibration_steps`` that is not a positive integer.
        TypeError: ``calibration_data`` is neither a dataset nor an array of inputs.
    """
    ctls = require_controllers(model, "applying masks to it")
    if calibration_data is not None:
        check_steps(calibration_steps, "calibration_steps")
        calibration_data = as_dataset(calibration_data, "calibration_data")
    for ctl in ctls:
        if masks is None:
            ctl.use_hard.assign(0.0)
            continue
        sub = {n: masks[n] for n in ctl.group_names if n in masks}
        if len(ctls) == 1:
            sub = masks
        checked = check_masks(sub, ctl.group_names, ctl.sizes, allow_empty=True)
        ctl.hard_mask.assign(np.concatenate(checked).astype(np.float32))
        ctl.use_hard.assign(1.0)
    if calibration_data is not None:
        recalibrate_batch_norm(model, calibration_data, calibration_steps)


def save_masks(path, masks):
    """Saves masks atomically as ``.npz`` (default) or ``.json``; never pickles.

    Example:
        >>> chipnet_tf.save_masks("masks.npz", {"conv1": np.array([True, False])})  # doctest: +SKIP
    """
    check_masks(
        masks,
        list(masks),
        [np.asarray(m).shape[0] if np.asarray(m).ndim == 1 else -1 for m in masks.values()],
        allow_empty=True,
    )
    path = os.fspath(path)
    if path.endswith(".json"):
        data = json.dumps(
            {
                "format": "chipnet_tf.search.masks",
                "version": 1,
                "masks": {k: np.asarray(v).astype(bool).tolist() for k, v in masks.items()},
            },
            indent=1,
        )
        atomic_write(path, lambda f: f.write(data.encode()))
    elif path.endswith(".npz"):
        names = list(masks)
        arrays = {f"mask_{i}": np.asarray(masks[n]).astype(bool) for i, n in enumerate(names)}
        arrays["names"] = np.array(names, dtype=np.str_)
        atomic_write(path, lambda f: np.savez(f, **arrays))
    else:
        raise ValueError(f"save_masks writes .npz or .json files. Received: path={path!r}")


def load_masks(path):
    """Loads masks written by :func:`save_masks` (``.npz`` or ``.json``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an empty, truncated or foreign file (one line, naming the file).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No masks file at {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path!r} is empty (0 bytes), not a chipnet_tf masks file (.npz or .json)")
    try:
        if path.endswith(".json"):
            with open(path) as f:
                data = json.load(f)
            if not isinstance(data, dict) or data.get("format") != "chipnet_tf.search.masks":
                raise ValueError("not a chipnet_tf masks file")
            return {k: np.asarray(v, dtype=bool) for k, v in data["masks"].items()}
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["names"]]
            return {n: data[f"mask_{i}"].astype(bool) for i, n in enumerate(names)}
    except (ValueError, KeyError, OSError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path!r} is not a readable chipnet_tf masks file (.npz or .json): {first_line(e)}") from None
