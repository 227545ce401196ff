"""budget_report: per-group and total resources, dense vs kept, for all budget types."""

import dataclasses

import numpy as np

from chipnet_tf import latency
from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.budgets import ALL_BUDGET_TYPES, LATENCY
from chipnet_tf.registry import layer_flops
from chipnet_tf.search.layers.controller import controllers
from chipnet_tf.search.masks import check_masks, get_masks
from chipnet_tf.surgery.strip import removed_layers


@dataclasses.dataclass
class BudgetReport:
    """Resources of a network under hard masks, with the dense network's for reference.

    Attributes:
        groups: one dict per group: ``name``, ``size``, ``kept`` (hard), ``soft_kept``
            (the soft count ``R_g``, None without gates) and ``writers``.
        totals: ``{budget_type: {"dense", "kept", "fraction", "soft_fraction"}}``; with a
            latency table also ``"latency"``, in predicted milliseconds.
        budget, budget_type: the model's target (None for a dense model + masks).
        layers: with a latency table, one dict per timed layer call: ``name``,
            ``dense_ms``, ``kept_ms`` (predicted); the rest of the total is ``fixed_ms``.
        fixed_ms: the table's fixed cost (ops it does not vary), None without a table.
    """

    groups: list
    totals: dict
    budget: float = None
    budget_type: str = None
    layers: list = None
    fixed_ms: float = None

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        lines = []
        if self.budget_type:
            lines.append(f"ChipNet budget: {self.budget:g} of {self.budget_type}")
        width = max([len("group")] + [len(g["name"]) for g in self.groups])
        lines.append(f"{'group':<{width}}  {'channels':>8}  {'kept':>6}  {'soft':>8}  {'kept %':>7}")
        for g in self.groups:
            soft = "" if g["soft_kept"] is None else f"{g['soft_kept']:.2f}"
            lines.append(
                f"{g['name']:<{width}}  {g['size']:>8d}  {g['kept']:>6d}  {soft:>8}  "
                f"{100 * g['kept'] / g['size']:>6.1f}%"
            )
        lines.append("")
        lines.append(f"{'budget type':<11}  {'dense':>15}  {'kept':>15}  {'fraction':>8}  {'soft':>8}")
        for t in ALL_BUDGET_TYPES:
            if t not in self.totals:
                continue
            row = self.totals[t]
            soft = "" if row["soft_fraction"] is None else f"{row['soft_fraction']:.4f}"
            if t == LATENCY:
                dense, kept = f"{row['dense']:>12,.3f} ms", f"{row['kept']:>12,.3f} ms"
            else:
                dense, kept = f"{row['dense']:>15,.0f}", f"{row['kept']:>15,.0f}"
            lines.append(f"{t:<11}  {dense}  {kept}  {row['fraction']:>8.4f}  {soft:>8}")
        if self.layers:
            lines += ["", f"{'latency (predicted)':<{width}}  {'dense ms':>9}  {'kept ms':>9}"]
            for row in self.layers:
                lines.append(f"{row['name']:<{width}}  {row['dense_ms']:>9.4f}  {row['kept_ms']:>9.4f}")
            lines.append(f"{'(fixed: other ops)':<{width}}  {self.fixed_ms:>9.4f}  {self.fixed_ms:>9.4f}")
        return "\n".join(lines)


def _report(specs_and_counts, budget=None, budget_type=None):
    groups, layers, fixed = [], [], None
    types = [t for t in ALL_BUDGET_TYPES if all(t in spec.budget_types for spec, *_ in specs_and_counts)]
    totals = {t: {"dense": 0.0, "kept": 0.0, "soft": 0.0, "has_soft": False} for t in types}
    for spec, kept, soft, writers, removed in specs_and_counts:
        if LATENCY in types:
            layers += _latency_layers(spec, kept, removed)
            fixed = (fixed or 0.0) + spec.latency.fixed_ms
        for i, name in enumerate(spec.group_names):
            groups.append(
                {
                    "name": name,
                    "size": int(spec.group_sizes[i]),
                    "kept": int(kept[i]),
                    "soft_kept": None if soft is None else float(soft[i]),
                    "writers": list(writers.get(name, [])),
                }
            )
        for t in types:
            totals[t]["dense"] += spec.dense(t)
            totals[t]["kept"] += spec.value(kept, t)
            if removed:  # layers a fully pruned group leaves without input are stripped away
                values = spec.layer_values(kept, t)
                totals[t]["kept"] -= sum(values.get(name, 0.0) for name in removed)
            if soft is not None:
                totals[t]["soft"] += spec.value(soft, t)
                totals[t]["has_soft"] = True
    out = {}
    for t, row in totals.items():
        dense = row["dense"]
        out[t] = {
            "dense": dense,
            "kept": row["kept"],
            "fraction": row["kept"] / dense if dense else 1.0,
            "soft_fraction": (row["soft"] / dense if dense else 1.0) if row["has_soft"] else None,
        }
    return BudgetReport(
        groups=groups, totals=out, budget=budget, budget_type=budget_type, layers=layers or None, fixed_ms=fixed
    )


def _latency_layers(spec, kept, removed):
    dense = spec.layer_values(spec.group_sizes, LATENCY)
    now = spec.layer_values(kept, LATENCY)
    timed = [spec.layer_names[i] for i in dict.fromkeys(spec.latency.layers.tolist())]
    return [{"name": n, "dense_ms": dense[n] * 1.0, "kept_ms": 0.0 if n in removed else now[n] * 1.0} for n in timed]


def budget_report(model, masks=None, exclude=None, latency_table=None):
    """Per-group and total channels/volume/params/FLOPs, dense vs kept.

    For a pruned model the hard masks are the applied ones (after
    :func:`chipnet_tf.apply_masks`) or else the budget-aware :func:`chipnet_tf.get_masks`;
    ``masks`` overrides them. For a dense model, pass ``masks`` (e.g. from another run).
    ``print(report)`` shows a table.

    Example:
        >>> print(chipnet_tf.budget_report(pruned))  # doctest: +SKIP

    Args:
        model: a pruned model, or a dense model with ``masks``.
        masks: optional ``{group name: bool array}``.
        exclude: for a dense model, the layers excluded from pruning.
        latency_table: for a dense model, a :class:`chipnet_tf.latency.LatencyTable` of it:
            the report then also predicts latency (a pruned model carries its own table).

    Returns:
        A :class:`BudgetReport`.
    """
    ctls = controllers(model)
    if not ctls:
        analysis = graph_lib.analyze(model, exclude=exclude, warn=False)
        spec = analysis.spec if latency_table is None else latency.attach(analysis, latency_table)
        removed = set()
        if masks is None:
            kept = spec.group_sizes.astype(np.float64)
        else:
            checked = check_masks(masks, spec.group_names, spec.group_sizes.tolist(), allow_empty=True)
            kept = np.array([m.sum() for m in checked], dtype=np.float64)
            removed = removed_layers(model, masks)
        writers = {g.name: g.writers for g in analysis.groups}
        return _report([(spec, kept, None, writers, removed)])
    given = None
    if masks is not None:  # validated against every group of the model, as apply_masks/strip_pruning do
        names = [n for ctl in ctls for n in ctl.group_names]
        checked = check_masks(masks, names, [s for ctl in ctls for s in ctl.sizes], allow_empty=True)
        given = dict(zip(names, checked))
    rows = []
    for ctl in ctls:
        if given is not None:
            hard = [given[n] for n in ctl.group_names]
        elif float(ctl.to_numpy(ctl.use_hard)) == 1.0:
            hard = np.split(ctl.to_numpy(ctl.hard_mask) > 0.5, np.cumsum(ctl.sizes)[:-1])
        else:
            masks = get_masks(model) if masks is None else masks
            hard = [masks[n] for n in ctl.group_names]
        kept = np.array([m.sum() for m in hard], dtype=np.float64)
        soft = ctl.to_numpy(ctl.soft_counts()).astype(np.float64)
        removed = removed_layers(model, dict(zip(ctl.group_names, hard)))
        rows.append((ctl.spec, kept, soft, {}, removed))
    ctl = ctls[0]
    return _report(rows, budget=ctl.budget, budget_type=ctl.budget_type)


def count_flops(model):
    """FLOPs of one forward pass of ``model`` (batch 1), counted by walking its layers.

    The convention of the budgets (the paper's): multiply-accumulates of convolutions, dense
    layers, ``EinsumDense`` and attention (``MultiHeadAttention``'s projections, ``QK^T`` and
    ``AV``) and einsum/matmul calls, plus their bias adds; see
    :func:`chipnet_tf.registry.layer_flops`. Works on
    any tf_keras functional/Sequential model, e.g. to check a stripped model against the
    ``budget_report`` predicted from the masks, and on a Keras 3 one (TensorFlow backend),
    where it equals the count of the same architecture built with tf_keras.

    Example:
        >>> chipnet_tf.count_flops(chipnet_tf.strip_pruning(pruned))  # doctest: +SKIP
    """
    total = 0
    for fnode in graph_lib.flatten_any(model).nodes:
        if fnode.in_shapes and fnode.out_shapes:
            call = graph_lib.call_arguments(fnode.node)
            shapes = (fnode.in_shapes[0], fnode.out_shapes[0], fnode.in_shapes)
            total += layer_flops(fnode.layer, *shapes, call=call, rows=fnode.batch)  # rows: see FlatNode.batch
    return int(total)
