"""Training-step overhead benchmark, the numbers: per-clock summaries of the step intervals,
paired differences and comparisons between variants, and the printed table.

Part of ``benchmarks.overhead`` (method: benchmarks/README.md, section "Training-step overhead").
"""

import statistics

import numpy as np


def summarize(per_round, variants):
    """Medians and ratios to plain of one clock's step intervals.

    ``ratio_vs_plain`` (the headline) is paired: the median over rounds of
    ``round median(variant) / round median(plain)``, each pair measured seconds apart, so
    that slow drift of the machine's load cancels. ``ratio_of_medians_vs_plain`` divides
    the medians of all pooled intervals instead (not drift-corrected).
    """
    round_medians = {v: [statistics.median(x) for x in per_round[v]] for v in variants}
    medians = {v: statistics.median([t for x in per_round[v] for t in x]) for v in variants}
    round_ratios = {v: [a / b for a, b in zip(round_medians[v], round_medians["plain"])] for v in variants}
    return {
        "median_per_step_s": medians,
        "round_median_per_step_s": round_medians,
        "round_mean_per_step_s": {v: [statistics.fmean(x) for x in per_round[v]] for v in variants},
        "round_ratio_vs_plain": round_ratios,
        "ratio_vs_plain": {v: statistics.median(round_ratios[v]) for v in variants},
        "ratio_of_medians_vs_plain": {v: medians[v] / medians["plain"] for v in variants},
    }


def paired_difference(summary, hi, lo):
    """Median over rounds of ``round median(hi) - round median(lo)``."""
    rm = summary["round_median_per_step_s"]
    return statistics.median([a - b for a, b in zip(rm[hi], rm[lo])])


def paired_comparison(summary, a, b, resamples=2000, seed=0):
    """How ``a``'s paired ratio to plain compares with ``b``'s, round by round.

    Per round, ``ratio(a) - ratio(b)`` (both against that round's plain): the median over
    rounds, a 95% percentile-bootstrap interval of that median (``resamples`` resamples of
    the rounds, fixed seed), and in how many rounds ``a`` was the faster. When the interval
    contains 0, the two overheads are not distinguishable at this number of rounds. The
    interval covers the scatter between rounds of one run only: separate runs (new
    processes) have differed by more than it.
    """
    rr = summary["round_ratio_vs_plain"]
    diff = np.asarray(rr[a]) - np.asarray(rr[b])
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(diff, size=(resamples, diff.size), replace=True), axis=1)
    low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    return {
        "median_difference": float(np.median(diff)),
        "ci95": [low, high],
        "rounds": int(diff.size),
        "rounds_first_faster": int(np.sum(diff < 0)),
        "distinguishable": bool(low > 0 or high < 0),
    }


def print_table(variants, wall, cpu, fit_wall):
    print("wall = step time (primary); ratio = paired, median over rounds of per-round ratios [min..max over")
    print("rounds]; med/med = ratio of pooled medians; CPU = process CPU time per step (all threads)")
    header = (
        f"{'variant':<21} {'wall ms/step':>12} {'ratio':>7} {'[per-round range]':>17} {'med/med':>8}"
        f" {'CPU ms/step':>11} {'CPU ratio':>9} {'fit() ms/step':>13}"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        rr = wall["round_ratio_vs_plain"][v]
        print(
            f"{v:<21} {wall['median_per_step_s'][v] * 1e3:>12.1f} {wall['ratio_vs_plain'][v]:>6.3f}x"
            f" {f'[{min(rr):.3f}..{max(rr):.3f}]':>17} {wall['ratio_of_medians_vs_plain'][v]:>7.3f}x"
            f" {cpu['median_per_step_s'][v] * 1e3:>11.1f} {cpu['ratio_vs_plain'][v]:>8.3f}x"
            f" {fit_wall[v] * 1e3:>13.1f}"
        )
