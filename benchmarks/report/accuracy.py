"""RESULTS.md sections about accuracy at a budget: one dataset's ``accuracy*.json`` (digits or
Fashion-MNIST) becomes its summary, verdicts, tables, plot, search, exactness, stability and
transfer sections, every heading naming the dataset."""

import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report.search import _pm  # noqa: E402
from chipnet_tf.io import atomic_write  # noqa: E402

BASELINES = ("l1", "slimming", "random", "tfmot")
LABELS = {
    "chipnet": "ChipNet",
    "l1": "L1-norm (Li et al.)",
    "slimming": "Network slimming (Liu et al.)",
    "random": "Random channels",
    "tfmot": "tfmot prune_low_magnitude (unstructured)",
}
DATASET_LABELS = {"digits": "digits", "fashion_mnist": "Fashion-MNIST"}


def dataset_label(accuracy):
    """The dataset's display name from a results file's config (digits when absent)."""
    name = "fashion_mnist" if "fashion" in accuracy["config"]["dataset"].lower() else "digits"
    return DATASET_LABELS[name]


def verdict(a, b):
    """``win``/``tie``/``lose`` of mean ``a`` against ``b`` (dicts with mean, std, n).

    A difference counts only when it exceeds the pooled spread of the two methods over
    seeds: |mean_a - mean_b| > sqrt(std_a^2 + std_b^2), and at least one accuracy point.
    """
    diff = a["mean"] - b["mean"]
    spread = math.sqrt(a["std"] ** 2 + b["std"] ** 2)
    if abs(diff) <= max(spread, 0.01):
        return "tie"
    return "win" if diff > 0 else "lose"


def _cells(summary):
    """{(budget_type, budget, method): row}; tfmot rows are filed under both budget types."""
    cells = {}
    for row in summary["table"]:
        cells[(row["budget_type"], row["budget"], row["method"])] = row
    return cells


def verdicts(accuracy):
    """[(budget_type, budget, baseline, verdict, chipnet stat, baseline stat)] for every cell."""
    summary = accuracy["summary"]
    cells = _cells(summary)
    out = []
    for budget_type in accuracy["config"]["budget_types"]:
        for budget in accuracy["config"]["budgets"]:
            ours = cells.get((budget_type, budget, "chipnet"))
            if ours is None:
                continue
            for base in BASELINES:
                key = ("weights", budget, base) if base == "tfmot" else (budget_type, budget, base)
                if key in cells:
                    theirs = cells[key]["accuracy"]
                    out.append((budget_type, budget, base, verdict(ours["accuracy"], theirs), ours["accuracy"], theirs))
    return out


def plot_accuracy(accuracy, path):
    summary = accuracy["summary"]
    cells = _cells(summary)
    types = accuracy["config"]["budget_types"]
    budgets = sorted(accuracy["config"]["budgets"])
    fig, axes = plt.subplots(1, len(types), figsize=(6 * len(types), 5.2), squeeze=False)
    dense = summary["dense_accuracy"]["mean"]
    for ax, budget_type in zip(axes[0], types):
        for method in ("chipnet",) + BASELINES:
            key_type = "weights" if method == "tfmot" else budget_type
            pts = [(b, cells[(key_type, b, method)]["accuracy"]) for b in budgets if (key_type, b, method) in cells]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.errorbar(
                xs,
                [100 * p[1]["mean"] for p in pts],
                yerr=[100 * p[1]["std"] for p in pts],
                marker="o",
                capsize=3,
                linestyle="--" if method == "tfmot" else "-",
                label=LABELS[method] + (" (x = weights kept)" if method == "tfmot" else ""),
            )
        ax.axhline(100 * dense, color="black", linewidth=0.8, linestyle=":", label="dense")
        ax.axhline(10.0, color="grey", linewidth=0.8, linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b:g}" for b in budgets])
        ax.set_xlabel(f"budget (fraction of dense {budget_type})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{dataset_label(accuracy)}, {budget_type} budget")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def accuracy_section(accuracy, png_name):
    cfg, summary = accuracy["config"], accuracy["summary"]
    cells = _cells(summary)
    lines = [
        f"## Accuracy at a budget — {dataset_label(accuracy)}",
        "",
        f"Model: `{cfg['model']}`. Data: {cfg['dataset']}. Seeds: {cfg['seeds']} (mean ± std over seeds, "
        f"test accuracy in %). Dense: {_pm(summary['dense_accuracy'])}.",
        "",
        f"Every method's mask becomes a real smaller model through `strip_pruning(..., masks=...)` and gets the "
        f"same fine-tuning ({cfg['finetune_epochs']} epochs, {cfg['optimizer']}). ChipNet searched for "
        f"{cfg['prune_epochs']} epochs ({cfg['chipnet']}); slimming trained {cfg['prune_epochs']} epochs with its "
        f"BN-gamma L1 penalty; L1-norm and random are one-shot. tfmot keeps the budget's fraction of the "
        "Conv2D/Dense weights (unstructured: the model keeps its dense shape and FLOPs).",
        "",
        f"![accuracy vs budget]({png_name})",
        "",
    ]
    for budget_type in cfg["budget_types"]:
        lines += [
            f"### {budget_type} budget",
            "",
            "| budget | " + " | ".join(LABELS[m] for m in ("chipnet",) + BASELINES) + " |",
            "|---|" + "---|" * (1 + len(BASELINES)),
        ]
        for budget in cfg["budgets"]:
            row = [f"{budget:g}"]
            for method in ("chipnet",) + BASELINES:
                key = ("weights", budget, method) if method == "tfmot" else (budget_type, budget, method)
                row.append(_pm(cells[key]["accuracy"]) if key in cells else "—")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += [
            "Before fine-tuning (stripped, BatchNorm statistics re-estimated on 10 training batches):",
            "",
            "| budget | " + " | ".join(LABELS[m] for m in ("chipnet", "l1", "slimming", "random")) + " |",
            "|---|---|---|---|---|",
        ]
        for budget in cfg["budgets"]:
            row = [f"{budget:g}"]
            for method in ("chipnet", "l1", "slimming", "random"):
                cell = cells.get((budget_type, budget, method))
                row.append(_pm(cell["accuracy_before_finetune"]) if cell else "—")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines


def summary_section(accuracy):
    """Plain statements computed from the numbers (no hand-picked cells)."""
    summary, cfg = accuracy["summary"], accuracy["config"]
    cells = _cells(summary)
    rows = verdicts(accuracy)
    structured = [r for r in rows if r[2] != "tfmot"]
    unstructured = [r for r in rows if r[2] == "tfmot"]

    def tally(rs):
        return {v: sum(1 for r in rs if r[3] == v) for v in ("win", "tie", "lose")}

    total, vs_tfmot = tally(structured), tally(unstructured)
    lines = [
        f"## Summary — {dataset_label(accuracy)}",
        "",
        f"- Against the structured baselines ({len(structured)} comparisons: every budget type, budget and "
        f"method), ChipNet **wins {total['win']}, ties {total['tie']}, loses {total['lose']}** (rule below).",
    ]
    if unstructured:
        lines.append(
            f"- Against tfmot's unstructured pruning at the same fraction of weights ({len(unstructured)} "
            f"comparisons; tfmot's models keep their dense shape and FLOPs): wins {vs_tfmot['win']}, ties "
            f"{vs_tfmot['tie']}, loses {vs_tfmot['lose']}."
        )
    smallest = min(cfg["budgets"])
    for budget_type in cfg["budget_types"]:
        at = {
            m: cells[(budget_type, smallest, m)]["accuracy"]
            for m in ("chipnet",) + BASELINES
            if m != "tfmot" and (budget_type, smallest, m) in cells
        }
        if not at:
            continue
        best = max(at, key=lambda m: at[m]["mean"])
        lines.append(
            f"- At {smallest:g} of {budget_type}: "
            + ", ".join(f"{m} {_pm(a)}" for m, a in at.items())
            + f" (dense {_pm(summary['dense_accuracy'])}); best structured method: {best}."
        )
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet" and r["soft_budget_per_epoch"]]
    if runs:
        converged = sum(abs(r["soft_budget_per_epoch"][-1] - r["budget"]) <= 0.05 for r in runs)
        final = sum(r["soft_budget_per_epoch"][-1] for r in runs) / len(runs)
        lines.append(
            f"- ChipNet's soft search converged (final soft budget within 0.05 of the target) in {converged} of "
            f"{len(runs)} runs; the mean final soft budget was {final:.3f}. Where it did not converge, ChipNet's "
            "masks are the budget-aware cut of barely trained gate logits (see the search section)."
        )
    ex = summary["exactness"]
    lines += [
        f"- Budgets are exact: {ex['within_budget']}/{ex['runs']} structured runs within the target, "
        f"{ex['params_equal_prediction']}/{ex['runs']} with `count_params()` equal to the prediction, "
        f"{ex['flops_equal_profiler']}/{ex['runs']} with FLOPs equal to the TensorFlow profiler's count.",
        "",
    ]
    return lines


def verdict_section(accuracy):
    rows = verdicts(accuracy)
    counts = {}
    for _, _, base, v, _, _ in rows:
        counts.setdefault(base, {"win": 0, "tie": 0, "lose": 0})[v] += 1
    lines = [
        f"## Where ChipNet wins, ties or loses — {dataset_label(accuracy)}",
        "",
        "Rule, applied to every cell: ChipNet's mean test accuracy minus the other method's; a *win* or "
        "*loss* only when the difference exceeds both one accuracy point and the pooled spread over seeds "
        "(sqrt(std_a² + std_b²)); otherwise a *tie*.",
        "",
        "| vs | wins | ties | losses |",
        "|---|---|---|---|",
    ]
    for base in BASELINES:
        if base in counts:
            c = counts[base]
            lines.append(f"| {LABELS[base]} | {c['win']} | {c['tie']} | {c['lose']} |")
    lines += [
        "",
        "| budget type | budget | vs | verdict | ChipNet | other | difference (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget_type, budget, base, v, ours, theirs in rows:
        diff = 100 * (ours["mean"] - theirs["mean"])
        lines.append(
            f"| {budget_type} | {budget:g} | {LABELS[base]} | **{v}** | {_pm(ours)} | {_pm(theirs)} | {diff:+.1f} |"
        )
    lines.append("")
    return lines


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


def accuracy_sections(accuracy, results_dir, rel):
    """Every accuracy section of one dataset's results, its plot written next to the JSON."""
    lines = []
    if accuracy["config"].get("quick"):
        lines += [
            "**Quick run**: too few epochs and seeds for the numbers to mean anything; it checks the suite runs.",
            "",
        ]
    png = "accuracy_vs_budget.png" if dataset_label(accuracy) == "digits" else "accuracy_vs_budget_fashion_mnist.png"
    plot_accuracy(accuracy, results_dir / png)
    lines += summary_section(accuracy)
    lines += verdict_section(accuracy)
    lines += accuracy_section(accuracy, f"{rel}/{png}")
    lines += search_section(accuracy)
    lines += exactness_section(accuracy)
    lines += stability_section(accuracy)
    lines += transfer_section(accuracy)
    return lines
