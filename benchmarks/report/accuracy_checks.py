"""RESULTS.md sections about one accuracy grid's checks: ChipNet's search convergence, budget
exactness, stability at the most extreme budget and mask transfer."""

from benchmarks.report.search import _pm

DATASET_LABELS = {"digits": "digits", "fashion_mnist": "Fashion-MNIST"}
CONVERGENCE_CELLS = (("channels", 0.1), ("channels", 0.05))  # where the search's convergence is judged
CONVERGENCE_TOLERANCE = 0.02


def dataset_label(accuracy):
    """The dataset's display name from a results file's config (digits when absent)."""
    name = "fashion_mnist" if "fashion" in accuracy["config"]["dataset"].lower() else "digits"
    return DATASET_LABELS[name]


def grid_cells(cfg):
    """[(budget_type, budget)] of a results file: every budget type at every budget, then the latency cells."""
    cells = [(budget_type, budget) for budget_type in cfg["budget_types"] for budget in cfg["budgets"]]
    return cells + [("latency", budget) for budget in cfg.get("latency_budgets", [])]


def budgets_by_type(cfg):
    """{budget_type: [budget]} of the grid, in the grid's order."""
    out = {}
    for budget_type, budget in grid_cells(cfg):
        out.setdefault(budget_type, []).append(budget)
    return out


def final_soft_budget(run):
    """A ChipNet run's soft budget V at the end of its search: ``final_soft_budget`` when recorded, else the
    last epoch's mean (older files); None when neither is."""
    if run.get("final_soft_budget") is not None:
        return run["final_soft_budget"]
    return run["soft_budget_per_epoch"][-1] if run.get("soft_budget_per_epoch") else None


def soft_budget_source(runs):
    """Which value :func:`final_soft_budget` read for ``runs``, as a phrase."""
    final = sum(r.get("final_soft_budget") is not None for r in runs)
    if final == len(runs):
        return "V is the soft budget of the selected logits at the end of the search (`final_soft_budget`)"
    ramp = "epoch means include the target's ramp from 1, so on a short search they overstate the final V"
    if final == 0:
        return f"V is the last search epoch's mean ({ramp}); this file records no final soft budget"
    return (
        f"V is the end-of-search value for {final} runs and the last search epoch's mean for the other "
        f"{len(runs) - final} ({ramp})"
    )


def convergence_line(runs):
    """Runs whose final V is within ``CONVERGENCE_TOLERANCE`` of the target at ``CONVERGENCE_CELLS``."""
    parts, hit, total = [], 0, 0
    for budget_type, budget in CONVERGENCE_CELLS:
        values = [
            final_soft_budget(r)
            for r in runs
            if (r["budget_type"], r["budget"]) == (budget_type, budget) and final_soft_budget(r) is not None
        ]
        if values:
            n = sum(abs(v - budget) <= CONVERGENCE_TOLERANCE for v in values)
            parts.append(f"{budget_type} {budget:g}: {n}/{len(values)}")
            hit, total = hit + n, total + len(values)
    cells = " and ".join(f"{t} {b:g}" for t, b in CONVERGENCE_CELLS)
    head = f"Convergence target (final V within {CONVERGENCE_TOLERANCE:g} of the target at {cells})"
    if not total:
        return f"{head}: no ChipNet run at these cells in this file."
    return f"{head}: {hit} of {total} runs ({', '.join(parts)})."


def search_section(accuracy):
    """Did ChipNet's soft search converge? Final soft budget vs target, selected epoch."""
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet"]
    if not runs:
        return []
    groups = {cell: [] for cell in grid_cells(accuracy["config"])}
    for r in runs:
        groups.setdefault((r["budget_type"], r["budget"]), []).append(r)
    lines = [
        f"## ChipNet's search: did the soft budget converge? — {dataset_label(accuracy)}",
        "",
        "Soft budget V (from the gates, what the budget loss sees) at the end of the search against the "
        "target, the epoch `BestHardMasks` selected, and the hard network's held-out accuracy there "
        f"(BatchNorm re-estimated, before fine-tuning). A search that converged ends with V near the target. "
        f"{soft_budget_source(runs)}.",
        "",
        "| budget type | budget | final soft V (mean) | converged runs (V within 0.05 of target) | selected epochs | "
        "hard held-out accuracy at the selected epoch (%) |",
        "|---|---|---|---|---|---|",
    ]
    converged_total = 0
    for (budget_type, budget), rs in groups.items():
        if not rs:
            continue
        finals = [v for v in map(final_soft_budget, rs) if v is not None]
        converged = sum(abs(v - budget) <= 0.05 for v in finals)
        converged_total += converged
        epochs = [r["best_epoch"] for r in rs]
        hard = [r["hard_val_accuracy_per_epoch"][r["best_epoch"] - 1] for r in rs if r["hard_val_accuracy_per_epoch"]]
        lines.append(
            f"| {budget_type} | {budget:g} | {sum(finals) / max(len(finals), 1):.3f} | {converged}/{len(rs)} | "
            f"{sorted(epochs)} | {100 * sum(hard) / max(len(hard), 1):.1f} |"
        )
    lines += [
        "",
        f"Converged: {converged_total} of {len(runs)} ChipNet runs.",
        "",
        convergence_line(runs),
        "",
    ]
    return lines


def exactness_section(accuracy):
    summary = accuracy["summary"]
    ex = summary["exactness"]
    lines = [
        f"## Budget exactness — {dataset_label(accuracy)}",
        "",
        f"Structured runs: {ex['runs']}. Within the target budget: {ex['within_budget']}. "
        f"Stripped `count_params()` equal to the count predicted from the masks: {ex['params_equal_prediction']}. "
        f"`chipnet_tf.count_flops` of the stripped model equal to the TensorFlow profiler's independent count: "
        f"{ex['flops_equal_profiler']}. Largest overshoot of the target: {ex['max_overshoot']:.2e}; largest "
        f"shortfall (budget left unused because channels are discrete or one channel per group is the floor): "
        f"{ex['max_shortfall']:.4f}.",
        "",
        "| budget type | budget | method | achieved (mean) | achieved (max) | params fraction | FLOPs fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["table"]:
        if row["method"] == "tfmot":
            continue
        lines.append(
            f"| {row['budget_type']} | {row['budget']:g} | {row['method']} | {row['achieved']['mean']:.4f} | "
            f"{row['max_achieved']:.4f} | {row['params_fraction']['mean']:.4f} | {row['flops_fraction']['mean']:.4f} |"
        )
    lines.append("")
    return lines


def stability_section(accuracy):
    st = accuracy["summary"]["stability"]
    lines = [
        f"## Stability at the most extreme budget ({st['budget']:g}) — {dataset_label(accuracy)}",
        "",
        f"Every run at this budget, all seeds, per budget type. A group always keeps at least one channel (by "
        f"construction), so no layer is ever removed; the table counts the groups (of {st['groups']}) cut to that "
        "floor - at a 0.02 channel budget most groups must be - and the runs that could not meet the budget even "
        "at the floor (`minimal network`).",
        "",
        "| budget type | method | accuracy (%) | worst run (%) | chance (%) | all finite | "
        "max groups at 1 channel | minimal-network runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget_type, by_method in st["by_type"].items():
        for method, s in by_method.items():
            lines.append(
                f"| {budget_type} | {method} | {_pm(s['accuracy'])} | {100 * s['min_accuracy']:.1f} | "
                f"{100 * st['chance']:.0f} | {s['all_finite']} | {s['max_groups_with_one_channel']} | "
                f"{s['minimal_network_runs']} |"
            )
    lines.append("")
    return lines


def transfer_section(accuracy):
    rows = accuracy["summary"]["transfer"]
    if not rows:
        return []
    t = accuracy["config"]["transfer"]
    dense = [s["dense_b_accuracy"] for s in accuracy["transfer"]]
    lines = [
        f"## Mask transfer ({t['from']} → {t['to']}, {t['budget_type']} budget)",
        "",
        f"5-class models; dense accuracy on {t['to']}: "
        + ", ".join(f"{100 * d:.1f}%" for d in dense)
        + ". `direct`: ChipNet pruned on the target task (its own weights); `direct_masks`: those masks on the "
        "target's dense weights; `transferred`: masks found on the source task, on the target's dense weights; "
        "`random`: random masks at the same budget. Same fine-tuning for all.",
        "",
        "| budget | variant | accuracy (%) | mask overlap with direct (IoU) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']:g} | {r['variant']} | {_pm(r['accuracy'])} | {r['mask_overlap_with_direct']['mean']:.3f} |"
        )
    lines.append("")
    return lines
