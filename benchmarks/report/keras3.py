"""RESULTS.md sections on Keras 3: ChipNet on tf_keras and on Keras 3's backends (``keras3_parity.json``),
and the speed of Keras 3 against plain Keras 3 and tf_keras (``overhead_keras3.json``, ``strip_speed_keras3.json``)."""

from benchmarks.parity.summary import table


def parity_section(parity):
    p = parity["protocol"]
    summary = parity["summary"]
    verdicts = [s["parity"] for s in summary.values() if "parity" in s]
    return [
        "## Keras 3 parity",
        "",
        f"`python -m benchmarks.parity`: digits, PreResNet-20, the same initial weights and seeds in every flavour; "
        f"dense trained {p['pretrain']} epochs (SGD recipe), ChipNet searches {p['search']} epochs at "
        f"{p['budget_type']} {p['budget']} (prune_low_budget defaults, search_optimizer, BestHardMasks), the dense "
        f"weights stripped to its masks and fine-tuned {p['finetune']} epochs; test accuracy. Parity: a Keras 3 "
        "flavour's mean within 1 point of tf_keras' or within the pooled standard deviation.",
        "",
        table(summary),
        "",
        f"Parity holds for {sum(verdicts)} of {len(verdicts)} Keras 3 backends.",
        "",
    ]


def _verdict(met):
    return "**met**" if met else "**not met**"


def overhead_keras3_lines(overhead):
    """Training-step overhead per Keras 3 backend (``overhead_keras3.json``)."""
    c, t = overhead["config"], overhead["target"]
    lines = [
        f"Training step (`python -m benchmarks.overhead --keras 3`): {c['model']}, batch {c['batch_size']}, "
        f"{c['rounds']} interleaved rounds x {c['steps']} steps per backend, {c['optimizer']}. Ratio: chipnet / plain, "
        "paired (median over rounds of the rounds' median ratio); the scatter is the per-round range, the quartiles "
        "and a 95% bootstrap interval of the median; the CPU-time ratio and the ratio of the 10th-percentile step "
        "times are less sensitive to other processes on the machine.",
        "",
        "| backend | plain ms/step | chipnet ms/step | ratio | per-round range | quartiles | 95% interval "
        "| CPU time ratio | 10th-percentile ratio | fit() wall ratio | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b, p in overhead["backends"].items():
        s, med = p["scatter"], p["median_per_step_s"]
        verdict = t["per_backend"].get(b)
        lines.append(
            f"| {b} | {med['plain'] * 1e3:.1f} | {med['chipnet'] * 1e3:.1f} | {p['ratio_vs_plain']:.3f} "
            f"| {s['min']:.2f} .. {s['max']:.2f} | {s['q25']:.3f} .. {s['q75']:.3f} "
            f"| {s['median_ci95'][0]:.3f} .. {s['median_ci95'][1]:.3f} | {p['cpu_ratio_vs_plain']:.3f} "
            f"| {p['low_quantile']['ratio']:.3f} | {p['fit_wall']['ratio_vs_plain']['chipnet']:.3f} "
            f"| {'not a target' if verdict is None else _verdict(verdict['met'])} |"
        )
    wide = [b for b, p in overhead["backends"].items() if p["scatter"]["median_ci95"][1] > t["ratio"]]
    note = (
        f" On {', '.join(wide)} the 95% interval of the median reaches above {t['ratio']}: at this scatter the run "
        f"does not tell a {100 * (t['ratio'] - 1):.0f}% overhead from none."
        if wide
        else ""
    )
    return [
        *lines,
        "",
        f"Target ({t['rule']}): {_verdict(t['met'])}.{note} The fit() wall ratio divides whole fit() calls of "
        f"{c['steps']} steps, so it includes each call's fixed cost (setup, first step, epoch end).",
        "",
    ]


def strip_keras3_lines(strip):
    """Strip time, Keras 3 against tf_keras (``strip_speed_keras3.json``)."""
    c, t, m = strip["config"], strip["target"], strip["masks"]
    lines = [
        f"Strip (`python -m benchmarks.strip.keras3_speed`): {c['model']}; the same masks in every flavour "
        f"({m['groups']} groups, {m['channels_kept']} of {m['channels_total']} channels kept, FLOPs fraction "
        f"{m['flops_fraction']:.3f}; {m['draw']}). {c['rounds']} rounds of one child process per flavour, each 1 cold "
        f"+ {c['repeats']} warm strips per path; ratio = paired median over rounds of the warm medians' ratio. "
        "In each child the dense path is stripped first, so the wrapped path's cold strip follows a strip to the "
        "same shapes in the same process.",
        "",
        "| flavour | path | warm median s | cold median s | warm ratio to tf_keras | per-round range "
        "| cold ratio | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f, paths in strip["summary"].items():
        for path, s in paths.items():
            if "ratio_vs_tf_keras" in s:
                lo, hi = s["ratio_range"]
                ratio = f"{s['ratio_vs_tf_keras']:.2f} | {lo:.2f} .. {hi:.2f} | {s['cold_ratio_vs_tf_keras']:.2f}"
                verdict = _verdict(t["per_flavour"][f][path]["met"])
            else:
                ratio, verdict = "1 | | 1", ""
            times = f"{s['warm_median_s']:.2f} | {s['cold_median_s']:.2f}"
            lines.append(f"| {f} | {path} | {times} | {ratio} | {verdict} |")
    equal = "equal" if strip["stripped_params_equal"] else "NOT equal"
    return [
        *lines,
        "",
        f"The stripped models' parameter counts are {equal} across flavours. "
        f"Target ({t['rule']}): {_verdict(t['met'])}.",
        "",
    ]


def speed_section(overhead, strip):
    """The "Keras 3 speed" section from whichever of its two results files exist."""
    lines = ["## Keras 3 speed", ""]
    if overhead:
        lines += overhead_keras3_lines(overhead)
    if strip:
        lines += strip_keras3_lines(strip)
    return lines
