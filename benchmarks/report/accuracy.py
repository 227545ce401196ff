"""RESULTS.md sections about accuracy at a budget: one dataset's ``accuracy*.json`` (digits or
Fashion-MNIST) becomes its summary, verdicts, tables, plot, search, exactness, stability and
transfer sections, every heading naming the dataset."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report.accuracy_checks import (  # noqa: E402
    budgets_by_type,
    dataset_label,
    exactness_section,
    search_section,
    stability_section,
    transfer_section,
)
from benchmarks.report.claims import (  # noqa: E402
    LABELS,
    SHORT,
    cell_key,
    present,
    summary_section,
    table_cells,
    verdict_section,
)
from benchmarks.report.search import _pm  # noqa: E402
from chipnet_tf.io import atomic_write  # noqa: E402


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


def plot_accuracy(accuracy, path):
    """One panel per budget type with results (latency included): accuracy against budget, every method."""
    summary = accuracy["summary"]
    cells = table_cells(summary)
    types = {
        t: sorted(bs)
        for t, bs in budgets_by_type(accuracy["config"]).items()
        if any(k[0] == t and k[1] in bs for k in cells)
    }
    fig, axes = plt.subplots(1, len(types), figsize=(6 * len(types), 5.2), squeeze=False)
    dense = summary["dense_accuracy"]["mean"]
    for ax, (budget_type, budgets) in zip(axes[0], types.items()):
        for method in present(accuracy):
            keys = [(b, cell_key(budget_type, b, method)) for b in budgets]
            pts = [(b, cells[key]["accuracy"]) for b, key in keys if key in cells]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.errorbar(
                xs,
                [100 * p[1]["mean"] for p in pts],
                yerr=[100 * p[1]["std"] for p in pts],
                marker="o",
                capsize=3,
                linestyle={"tfmot": "--", "chipnet_search_weights": "-."}.get(method, "-"),
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


def _weights_text(accuracy):
    """What ChipNet's masks were fine-tuned from, as the records say (``weights_from``)."""
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet"]
    sources = {r.get("weights_from") for r in runs}
    if sources == {"search"}:
        return " ChipNet's masks are fine-tuned from the weights the search ended with (`weights_from: search`)."
    if sources != {"dense"}:
        return ""
    text = " ChipNet's masks are fine-tuned from the dense model's weights (`weights_from: dense`)"
    if "chipnet_search_weights" in present(accuracy):
        text += (
            f"; {SHORT['chipnet_search_weights']} fine-tunes the same masks from the weights the search ended "
            "with, a variant of ChipNet that is not counted as a baseline"
        )
    return text + "."


def _training_text(accuracy):
    cfg = accuracy["config"]
    if "epochs_per_method" in cfg:
        return (
            "Every method's mask becomes a real smaller model through `strip_pruning(..., masks=...)`. "
            f"Training: {cfg['optimizer']}. ChipNet: {cfg['chipnet']}.{_weights_text(accuracy)} Slimming: "
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
    cells = table_cells(summary)
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
        _training_text(accuracy),
        "",
        *_slimming_lines(accuracy),
        f"![accuracy vs budget]({png_name})",
        "",
    ]
    for budget_type, budgets in budgets_by_type(cfg).items():

        def after(budget, method, budget_type=budget_type):
            key = cell_key(budget_type, budget, method)
            return _pm(cells[key]["accuracy"]) if key in cells else "—"

        def before_ft(budget, method, budget_type=budget_type):
            cell = cells.get((budget_type, budget, method))
            return _pm(cell["accuracy_before_finetune"]) if cell else "—"

        lines += [f"### {budget_type} budget", ""]
        if budget_type == "latency":
            how = f", {cfg['latency']}" if "latency" in cfg else ""
            lines += [
                f"Budget: a fraction of the dense model's latency{how}. No tfmot column: its models keep the "
                "dense shape and latency.",
                "",
            ]
        columns = [m for m in methods if budget_type != "latency" or m != "tfmot"]
        lines += _budget_table(budgets, columns, after)
        lines += ["Before fine-tuning (stripped, BatchNorm statistics re-estimated on 10 training batches):", ""]
        lines += _budget_table(budgets, before, before_ft)
    lines += cost_lines(accuracy)
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
