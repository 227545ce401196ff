"""RESULTS.md sections about accuracy at a budget: one dataset's ``accuracy*.json`` (digits or
Fashion-MNIST) becomes its summary, verdicts, tables, plot, search, exactness, stability and
transfer sections, every heading naming the dataset."""

import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report.accuracy_checks import (  # noqa: E402
    dataset_label,
    exactness_section,
    search_section,
    stability_section,
    transfer_section,
)
from benchmarks.report.search import _pm  # noqa: E402
from chipnet_tf.io import atomic_write  # noqa: E402

BASELINES = ("l1", "slimming", "random", "uniform", "taylor", "scratch", "tfmot")
LABELS = {
    "chipnet": "ChipNet",
    "l1": "L1-norm (Li et al.)",
    "slimming": "Network slimming (Liu et al.)",
    "random": "Random channels",
    "uniform": "Uniform width",
    "taylor": "Taylor iterative (Molchanov et al.)",
    "scratch": "ChipNet's widths from scratch",
    "tfmot": "tfmot prune_low_magnitude (unstructured)",
}
SHORT = {"chipnet": "ChipNet", "l1": "L1-norm", "slimming": "slimming", "random": "random", "uniform": "uniform"}
SHORT.update(taylor="Taylor", scratch="scratch", tfmot="tfmot")


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


def present(accuracy, methods=("chipnet",) + BASELINES):
    """The ``methods`` that have rows in the results (older files lack the newer baselines)."""
    found = {row["method"] for row in accuracy["summary"]["table"]}
    return tuple(m for m in methods if m in found)


def protocol_line(cfg):
    """One line: the training protocol and every method's epochs after the dense pretraining."""
    if "epochs_per_method" not in cfg:  # results recorded before the protocol was a choice
        p, f = cfg["prune_epochs"], cfg["finetune_epochs"]
        plan = {"chipnet": [p, f], "slimming": [p, f], "l1": [0, f], "random": [0, f], "tfmot": [0, f]}
        name = "search_extra"
    else:
        plan, name = cfg["epochs_per_method"], cfg["protocol"]
    parts = [
        f"{SHORT.get(m, m)} {s} + {f}" if s else f"{SHORT.get(m, m)} {f}" for m, (s, f) in plan.items() if m in SHORT
    ]
    fraction = cfg.get("search_fraction")
    fraction = f"; ChipNet's search fraction {fraction:.3g}" if fraction is not None else ""
    return (
        f"**Protocol `{name}`**: epochs after {cfg['pretrain_epochs']} dense pretraining epochs (search + "
        f"fine-tuning; scratch from a random start): {', '.join(parts)}{fraction}."
    )


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
        for method in present(accuracy):
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


def _training_text(cfg):
    if "epochs_per_method" in cfg:
        return (
            "Every method's mask becomes a real smaller model through `strip_pruning(..., masks=...)`. "
            f"Training: {cfg['optimizer']}. ChipNet: {cfg['chipnet']}. Slimming: "
            f"{cfg['slimming']}. Taylor: {cfg['taylor']}. Uniform width: {cfg['uniform']}. Scratch: {cfg['scratch']}. "
            "tfmot keeps the budget's fraction of the Conv2D/Dense weights (unstructured: the model keeps its dense "
            "shape and FLOPs)."
        )
    return (
        "Every method's mask becomes a real smaller model through `strip_pruning(..., masks=...)` and gets the "
        f"same fine-tuning ({cfg['finetune_epochs']} epochs, "
        f"{cfg['optimizer']}). ChipNet searched for {cfg['prune_epochs']} epochs ({cfg['chipnet']}); slimming "
        f"trained {cfg['prune_epochs']} epochs with its BN-gamma L1 penalty (a fixed lambda; the code of this "
        "protocol cut slimming's masks from the dense model's BatchNorm scales, not the sparsity-trained model's); "
        "L1-norm and random are one-shot. tfmot keeps the budget's fraction of the Conv2D/Dense weights "
        "(unstructured: the model keeps its dense shape and FLOPs)."
    )


def _slimming_lines(accuracy):
    chosen = [s["slimming"] for s in accuracy["seeds"] if "tried" in s.get("slimming", {})]
    if not chosen:
        return []
    text = "; ".join(
        f"seed {s['seed']}: lambda {c['lambda']:g} (validation {100 * c['val_accuracy']:.1f} % against dense "
        f"{100 * c['dense_val_accuracy']:.1f} %)"
        for s, c in zip([s for s in accuracy["seeds"] if "tried" in s.get("slimming", {})], chosen)
    )
    grid = ", ".join(f"{v:g}" for v in chosen[0]["lambda_grid"])
    return [f"Slimming's lambda, chosen on the validation split from {{{grid}}} ({chosen[0]['rule']}): {text}.", ""]


def cost_lines(accuracy):
    """Per method: mean seconds of search and of fine-tuning (one run, the same machine and run)."""
    cost = accuracy["summary"].get("cost")
    if not cost:
        return []
    lines = [
        "Wall-clock per run (mean seconds, all cells and seeds of this run; search = ChipNet's search, slimming's "
        "sparsity training, Taylor's iterative pruning, or the scoring and cut; scratch reuses ChipNet's masks):",
        "",
        "| method | epochs (search + fine-tuning) | search (s) | fine-tuning (s) | total (s) |",
        "|---|---|---|---|---|",
    ]
    for method, c in cost.items():
        epochs = "/".join(f"{s} + {f}" for s in c["search_epochs"] for f in c["finetune_epochs"])
        total = c["search_seconds"] + c["finetune_seconds"]
        lines.append(
            f"| {LABELS.get(method, method)} | {epochs} | {c['search_seconds']:.1f} | {c['finetune_seconds']:.1f} | "
            f"{total:.1f} |"
        )
    if "lambda_selection_seconds_per_seed" in cost.get("slimming", {}):
        lines += ["", f"Slimming's lambda selection: {cost['slimming']['lambda_selection_seconds_per_seed']:.1f} s "
                  "per seed (every lambda tried), once per seed."]  # fmt: skip
    lines.append("")
    return lines


def _budget_table(budgets, methods, cell):
    """A markdown table: one row per budget, one column per method, ``cell(budget, method)``."""
    lines = ["| budget | " + " | ".join(LABELS[m] for m in methods) + " |", "|---|" + "---|" * len(methods)]
    lines += ["| " + " | ".join([f"{b:g}"] + [cell(b, m) for m in methods]) + " |" for b in budgets]
    return lines + [""]


def accuracy_section(accuracy, png_name):
    cfg, summary = accuracy["config"], accuracy["summary"]
    cells = _cells(summary)
    methods = present(accuracy)
    before = [m for m in methods if m not in ("tfmot", "scratch")]
    lines = [
        f"## Accuracy at a budget — {dataset_label(accuracy)}",
        "",
        protocol_line(cfg),
        "",
        f"Model: `{cfg['model']}`. Data: {cfg['dataset']}. Seeds: {cfg['seeds']} (mean ± std over seeds, "
        f"test accuracy in %). Dense: {_pm(summary['dense_accuracy'])}.",
        "",
        _training_text(cfg),
        "",
        *_slimming_lines(accuracy),
        f"![accuracy vs budget]({png_name})",
        "",
    ]
    for budget_type in cfg["budget_types"]:

        def after(budget, method, budget_type=budget_type):
            key = ("weights", budget, method) if method == "tfmot" else (budget_type, budget, method)
            return _pm(cells[key]["accuracy"]) if key in cells else "—"

        def before_ft(budget, method, budget_type=budget_type):
            cell = cells.get((budget_type, budget, method))
            return _pm(cell["accuracy_before_finetune"]) if cell else "—"

        lines += [f"### {budget_type} budget", ""]
        lines += _budget_table(cfg["budgets"], methods, after)
        lines += ["Before fine-tuning (stripped, BatchNorm statistics re-estimated on 10 training batches):", ""]
        lines += _budget_table(cfg["budgets"], before, before_ft)
    lines += cost_lines(accuracy)
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
        f"method), ChipNet **wins {total['win']}, ties {total['tie']}, loses {total['lose']}** (rule below; training "
        f"protocol `{cfg.get('protocol', 'search_extra')}`, epochs per method in the accuracy section).",
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
            for m in present(accuracy)
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
