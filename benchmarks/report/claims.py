"""What RESULTS.md claims about one accuracy grid, each claim computed from the numbers: the methods'
names, the win/tie/lose verdicts of ChipNet against every baseline in every cell, the summary
bullets and the search target."""

import math

from benchmarks.report.accuracy_checks import (
    budgets_by_type,
    convergence_line,
    dataset_label,
    final_soft_budget,
    grid_cells,
    soft_budget_source,
)
from benchmarks.report.search import _pm

BASELINES = ("l1", "slimming", "random", "uniform", "taylor", "scratch", "tfmot")
VARIANTS = ("chipnet_search_weights",)  # ChipNet's masks trained another way: in the tables, never a baseline
LABELS = {
    "chipnet": "ChipNet",
    "chipnet_search_weights": "ChipNet, fine-tuned from the search's weights",
    "l1": "L1-norm (Li et al.)",
    "slimming": "Network slimming (Liu et al.)",
    "random": "Random channels",
    "uniform": "Uniform width",
    "taylor": "Taylor iterative (Molchanov et al.)",
    "scratch": "ChipNet's widths from scratch",
    "tfmot": "tfmot prune_low_magnitude (unstructured)",
}
SHORT = {"chipnet": "ChipNet", "l1": "L1-norm", "slimming": "slimming", "random": "random", "uniform": "uniform"}
SHORT.update(chipnet_search_weights="ChipNet (search weights)", taylor="Taylor", scratch="scratch", tfmot="tfmot")
TARGET_BASELINES = ("l1", "random", "uniform")  # ChipNet must beat these at every budget <= TARGET_MAX_BUDGET
TARGET_MAX_BUDGET = 0.1


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


def cell_key(budget_type, budget, method):
    """The key of a method's row in :func:`table_cells`: tfmot's rows (a fraction of weights) stand in every
    budget type of the grid but latency."""
    if method == "tfmot" and budget_type != "latency":
        return ("weights", budget, method)
    return (budget_type, budget, method)


def table_cells(summary):
    """{(budget_type, budget, method): row} of the summary table."""
    return {(row["budget_type"], row["budget"], row["method"]): row for row in summary["table"]}


def present(accuracy, methods=("chipnet",) + VARIANTS + BASELINES):
    """The ``methods`` that have rows in the results (older files lack the newer methods)."""
    found = {row["method"] for row in accuracy["summary"]["table"]}
    return tuple(m for m in methods if m in found)


def verdicts(accuracy):
    """[(budget_type, budget, baseline, verdict, chipnet stat, baseline stat)] for every cell of the grid."""
    cells = table_cells(accuracy["summary"])
    out = []
    for budget_type, budget in grid_cells(accuracy["config"]):
        ours = cells.get((budget_type, budget, "chipnet"))
        if ours is None:
            continue
        for base in BASELINES:
            theirs = cells.get(cell_key(budget_type, budget, base))
            if theirs is not None:
                theirs = theirs["accuracy"]
                out.append((budget_type, budget, base, verdict(ours["accuracy"], theirs), ours["accuracy"], theirs))
    return out


def target_failures(accuracy):
    """[(budget_type, budget, baseline, verdict)] of the cells that miss the search target: ChipNet wins or
    ties every comparison with a structured baseline (tfmot keeps the dense shape), and wins against
    ``TARGET_BASELINES`` at every budget <= ``TARGET_MAX_BUDGET`` of every budget type (latency
    included). A missing comparison at such a budget fails as ``no run``."""
    found = {(t, b, base): v for t, b, base, v, _, _ in verdicts(accuracy)}
    failures = []
    for budget_type, budget in grid_cells(accuracy["config"]):
        low = budget <= TARGET_MAX_BUDGET + 1e-9
        for base in (b for b in BASELINES if b != "tfmot"):
            v = found.get((budget_type, budget, base))
            if v == "lose" or (low and base in TARGET_BASELINES and v != "win"):
                failures.append((budget_type, budget, base, v or "no run"))
    return failures


def target_line(accuracy):
    failures = target_failures(accuracy)
    names = ", ".join(SHORT[b] for b in TARGET_BASELINES[:-1]) + f" and {SHORT[TARGET_BASELINES[-1]]}"
    head = (
        f"- Search target (ChipNet wins or ties every structured baseline in every cell, and wins against {names} "
        f"at every budget <= {TARGET_MAX_BUDGET:g} of every type, latency included): "
    )
    if not failures:
        return head + "**met**."
    cells = "; ".join(f"{t} {b:g} vs {SHORT[base]}: {v}" for t, b, base, v in failures)
    return head + f"**not met** ({len(failures)} failing: {cells})."


def lowest_run_line(accuracy):
    """ChipNet's worst single run over every cell and seed against chance + 10 points, and its finiteness."""
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet"]
    if not runs:
        return None
    low = min(runs, key=lambda r: r["accuracy"])
    floor = accuracy["summary"].get("stability", {}).get("chance", 0.1) + 0.1
    side = "above" if low["accuracy"] > floor else "**not above**"
    broken = [f"{r['budget_type']} {r['budget']:g} seed {r['seed']}" for r in runs if r.get("finite") is False]
    unknown = sum("finite" not in r for r in runs)
    finite = f"{len(broken)} of the {len(runs)} ChipNet runs ended fine-tuning with a non-finite weight or loss"
    finite += f" ({', '.join(broken)})" if broken else ""
    finite += f"; {unknown} record no `finite` flag" if unknown else ""
    return (
        f"- ChipNet's lowest single run (every cell and seed): {100 * low['accuracy']:.1f} % at {low['budget_type']} "
        f"{low['budget']:g}, seed {low['seed']}; {side} chance + 10 points ({100 * floor:.0f} %). {finite}."
    )


def _soft_budget_line(accuracy):
    runs = [r for s in accuracy["seeds"] for r in s["runs"] if r["method"] == "chipnet"]
    runs = [r for r in runs if final_soft_budget(r) is not None]
    if not runs:
        return []
    converged = sum(abs(final_soft_budget(r) - r["budget"]) <= 0.05 for r in runs)
    mean = sum(map(final_soft_budget, runs)) / len(runs)
    return [
        f"- ChipNet's soft search converged (final soft budget V within 0.05 of the target) in {converged} of "
        f"{len(runs)} runs; the mean final V was {mean:.3f}. {soft_budget_source(runs)}. {convergence_line(runs)} "
        "Where it did not converge, ChipNet's masks are the budget-aware cut of barely trained gate logits (see "
        "the search section)."
    ]


def summary_section(accuracy):
    """Plain statements computed from the numbers (no hand-picked cells)."""
    summary, cfg = accuracy["summary"], accuracy["config"]
    cells = table_cells(summary)
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
    lines.append(target_line(accuracy))
    for budget_type, budgets in budgets_by_type(cfg).items():
        smallest = min(budgets)
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
    lines += [line for line in (lowest_run_line(accuracy),) if line]
    lines += _soft_budget_line(accuracy)
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
    variants = [LABELS[m] for m in present(accuracy, VARIANTS)]
    lines = [
        f"## Where ChipNet wins, ties or loses — {dataset_label(accuracy)}",
        "",
        "Rule, applied to every cell: ChipNet's mean test accuracy minus the other method's; a *win* or "
        "*loss* only when the difference exceeds both one accuracy point and the pooled spread over seeds "
        "(sqrt(std_a² + std_b²)); otherwise a *tie*."
        + (
            f" {' and '.join(variants)}: a variant of ChipNet (the same masks), not a baseline; in the accuracy "
            "tables, not in these counts."
            if variants
            else ""
        ),
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
