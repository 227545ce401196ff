"""RESULTS.md sections about one accuracy grid's checks: ChipNet's search convergence, budget
exactness, stability at the most extreme budget and mask transfer."""

from benchmarks.report.search import _pm

DATASET_LABELS = {"digits": "digits", "fashion_mnist": "Fashion-MNIST"}


def dataset_label(accuracy):
    """The dataset's display name from a results file's config (digits when absent)."""
    name = "fashion_mnist" if "fashion" in accuracy["config"]["dataset"].lower() else "digits"
    return DATASET_LABELS[name]


def search_section(accuracy):
    """Did ChipNet's soft search converge? Final soft budget vs target, selected epoch."""
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet"]
    if not runs:
        return []
    groups = {}
    for r in runs:
        groups.setdefault((r["budget_type"], r["budget"]), []).append(r)
    lines = [
        f"## ChipNet's search: did the soft budget converge? — {dataset_label(accuracy)}",
        "",
        "Soft budget V (from the gates, what the budget loss sees) at the last pruning epoch against the "
        "target, the epoch `BestHardMasks` selected, and the hard network's held-out accuracy there "
        "(BatchNorm re-estimated, before fine-tuning). A search that converged ends with V near the target.",
        "",
        "| budget type | budget | final soft V (mean) | converged runs (V within 0.05 of target) | selected epochs | "
        "hard held-out accuracy at the selected epoch (%) |",
        "|---|---|---|---|---|---|",
    ]
    converged_total = 0
    for (budget_type, budget), rs in groups.items():
        finals = [r["soft_budget_per_epoch"][-1] for r in rs if r["soft_budget_per_epoch"]]
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
