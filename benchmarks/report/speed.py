"""RESULTS.md sections about speed: LiteRT latency (latency.json, latency_zoo.json), the
training-step overhead (overhead.json) and stripping (strip_speed.json)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chipnet_tf.io import atomic_write  # noqa: E402


def plot_latency(latency, path):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs_all = []
    for model, result in latency["results"].items():
        by_round = {}
        for variant in result["variants"].values():
            if variant["kind"] != "chipnet":
                continue
            by_round.setdefault(variant["round_to"], []).append((variant["flops_fraction"], variant["ratio_vs_dense"]))
        for round_to, pts in sorted(by_round.items()):
            pts.sort()
            xs_all += [p[0] for p in pts]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=f"{model} chipnet" + (f" round_to={round_to}" if round_to > 1 else ""),
            )
        tf_pts = sorted(
            (v["nonzero_params_fraction"], v["ratio_vs_dense"])
            for name, v in result["variants"].items()
            if v["kind"] == "tfmot" and "sparse" not in name
        )
        if tf_pts:
            ax.plot(
                [p[0] for p in tf_pts],
                [p[1] for p in tf_pts],
                marker="x",
                linestyle="--",
                label=f"{model} tfmot (x = weights kept)",
            )
    grid = [0.05, 1.0]
    ax.plot(grid, grid, color="black", linewidth=1, label="ideal (latency = FLOPs fraction)")
    ax.plot(
        grid, [1.25 * g for g in grid], color="grey", linewidth=1, linestyle=":", label="target 1.25 x FLOPs fraction"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs fraction of dense (stripped model)")
    ax.set_ylabel("LiteRT latency / dense latency")
    ax.set_title("LiteRT XNNPACK, 1 thread, batch 1")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def latency_section(latency, png_name):
    cfg = latency["config"]
    lines = [
        "## Speed: LiteRT latency of stripped models (benchmarks/latency/)",
        "",
        f"{cfg['runtime']}. {cfg['timing']}. Weights: {cfg['weights']}. Masks: {cfg['scores']}.",
        "",
        f"![latency ratio vs FLOPs fraction]({png_name})",
        "",
        "| model | variant | FLOPs fraction | latency ratio vs dense | ratio / FLOPs fraction | median ms |",
        "|---|---|---|---|---|---|",
    ]
    for model, result in latency["results"].items():
        for name, v in result["variants"].items():
            over = v.get("ratio_over_flops_fraction")
            lines.append(
                f"| {model} | {name} | {v['flops_fraction']:.3f} | {v['ratio_vs_dense']:.3f} | "
                f"{'' if over is None else f'{over:.2f}'} | {v['median_ms']:.3f} |"
            )
    target = latency["target"]
    lines += ["", f"Target ({target['rule']}): **{'met' if target['met'] else 'not met'}**.", ""]
    lines += tile_lines(latency)
    return lines


def zoo_latency_section(latency):
    """keras.applications models measured on request (``python -m benchmarks.latency --models ...``), e.g.
    MobileNetV3Small, whose hard-swish TF-op layers the analysis prunes through."""
    cfg = latency["config"]
    lines = [
        "### keras.applications models (`python -m benchmarks.latency --models ...`, `latency_zoo.json`)",
        "",
        f"{cfg['runtime']}. {cfg['timing']}. Weights: {cfg['weights']}. Masks: {cfg['scores']}. "
        f"Measured {latency.get('date_utc', '')} on a machine under load (interleaved with dense, so the ratios "
        "hold better than the milliseconds).",
        "",
        "| model | variant | FLOPs fraction | latency ratio vs dense | median ms |",
        "|---|---|---|---|---|",
    ]
    for model, result in latency["results"].items():
        for name, v in result["variants"].items():
            lines.append(
                f"| {model} | {name} | {v['flops_fraction']:.3f} | {v['ratio_vs_dense']:.3f} | {v['median_ms']:.3f} |"
            )
    return lines + [""]


def tile_lines(latency):
    """What the channel-tile probe and the tile-padded controls show (empty without a probe)."""
    probe = latency.get("tile_probe")
    if not probe:
        return []
    tile, conv = probe["tile"], probe["curves"]["conv1x1"]["median_us"]
    if not tile or tile <= 1:
        return [
            f"**Channel tile.** The probe found no channel tile on this machine: a 1x1 convolution's latency "
            f"rises smoothly from {conv[0]:.1f} us at 1 output channel to {conv[-1]:.1f} us at {len(conv)}.",
            "",
        ]
    lines = [
        f"**Channel tile.** On this machine a LiteRT/XNNPACK 1x1 convolution costs the same for 1 to {tile} "
        f"output channels ({conv[0]:.1f} vs {conv[tile - 1]:.1f} us) and "
        f"{conv[tile] / conv[tile - 1]:.2f}x that at {tile + 1}: output channels are computed in tiles of "
        f"{tile} (depthwise step: {probe['curves']['depthwise3x3']['step']})."
    ]
    if tile > 8 and tile % 8 == 0:
        lines[-1] += (
            " XNNPACK's ARM NEON float32 kernels use tiles of 8, which is why round_to=8 is the usual choice for "
            f"phones; here an 8-wide group pays for {tile}."
        )
    rows = []
    for model, result in latency["results"].items():
        recs = result["variants"]
        for v in recs.values():
            if v["kind"] != "control":
                continue
            r1 = recs[v["padded_from"]]
            rows.append(
                f"| {model} | {v['budget']:g} | {r1['ratio_vs_dense']:.3f} | {r1['flops_fraction']:.3f} | "
                f"{v['flops_fraction']:.3f} | {v['ratio_vs_dense'] / r1['ratio_vs_dense']:.2f} | "
                f"{r1['ratio_vs_dense'] / v['flops_fraction']:.2f} |"
            )
    if not rows:
        return lines + [""]
    lines[-1] += (
        f" The `pad{tile}` rows are controls: the round_to=1 masks with every group widened to a multiple of "
        f"{tile}. They have the same output tiles and more FLOPs; their FLOPs are an upper bound on the work the "
        "runtime does for round_to=1 (padding a group also widens the reductions of the layers that read it)."
    )
    return lines + [
        "",
        "| model | budget | round_to=1 ratio | its FLOPs fraction | tile-padded FLOPs fraction | "
        f"latency pad{tile} / round_to=1 | ratio / tile-padded FLOPs |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def overhead_section(overhead):
    t = overhead["target"]
    ratios = overhead["ratio_vs_plain"]
    return [
        "## Speed: training-step overhead of the wrapped model (benchmarks/overhead/)",
        "",
        f"Model: {overhead['config']['model']}. Step time relative to the plain model (paired, median over rounds): "
        + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
        + f". Target ({t['rule']}): **{'met' if t['met'] else 'not met'}**."
        + _vs_tfmot_sentence(t.get("chipnet_vs_tfmot")),
        "",
    ]


def _vs_tfmot_sentence(cmp):
    if not cmp:
        return ""
    low, high = cmp["ci95"]
    return (
        f" Per round, chipnet's ratio minus tfmot's has median {cmp['median_difference']:+.3f} (95% bootstrap "
        f"interval {low:+.3f} .. {high:+.3f}; chipnet faster in {cmp['rounds_first_faster']} of {cmp['rounds']} "
        "rounds): "
        + (
            "within this run the two overheads are distinguishable."
            if cmp["distinguishable"]
            else "within this run the two overheads are not distinguishable, so which is below the other is noise."
        )
        + " The interval covers the noise between rounds, not between runs, which can be larger."
    )


def strip_section(strip):
    t = strip["target"]
    lines = [
        "## Speed: wrap, mask and strip time and memory (benchmarks/strip/)",
        "",
        f"Model: {strip['config']['model']}, {strip['config']['budget_type']} budget {strip['config']['budget']}.",
        "",
        "| step | cold s | median s | peak extra RSS / dense weight bytes (cold) |",
        "|---|---|---|---|",
    ]
    for step, timing in strip["timing"].items():
        mem = strip["memory_ratio_to_dense_weights"].get(step, {}).get("cold")
        lines.append(
            f"| {strip['steps'].get(step, step)} | {timing['cold_s']:.2f} | {timing['median_s']:.2f} | "
            f"{'' if mem is None else f'{mem:.2f}'} |"
        )
    lines += ["", f"Target ({t['rule']}): **{'met' if t['met'] else 'not met'}**.", ""]
    return lines


def latency_budget_section(data):
    """Latency as a budget (latency_budget.json): the table's predictor error over random
    mask sets, and latency-budget rows side by side with FLOPs-budget rows."""
    cfg = data["config"]
    factor = cfg.get("target_factor", 1.1)
    lines = [
        "## Speed: prune for latency (benchmarks/latency/budget.py)",
        "",
        "`chipnet_tf.latency.profile` measures each model's latency table in LiteRT (XNNPACK, 1 thread, batch 1); "
        f'`budget_type="latency"` selects masks on it. Predictor: {cfg["sets"]} random mask sets per model (FLOPs '
        "budgets 0.05-0.9, random channel scores), stripped, converted and timed interleaved with the dense model "
        f"({cfg['rounds']} rounds x {cfg['invocations']} invocations); error = measured ratio vs dense / predicted "
        "ratio - 1. Budget rows use L1-norm channel scores (as `benchmarks/latency/`); `flops@lat` is the "
        "FLOPs-budget network whose predicted latency equals the latency-budget network's. "
        f"Measured {data.get('date_utc', '')}; 1-min load average during timing in the table (2 CPUs).",
        "",
        "| model | profile s | cache hit s | configurations (calls) | grid points | calibrated on | median abs error "
        "| max abs error | within 10% | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, r in data["results"].items():
        p, load, st = r["predictor"], r.get("load_average_1min") or [0], r["table_stats"]
        points = st.get("lookup_points", st["one_op_models"])  # before lookup_points, one_op_models held them
        cal = st.get("calibration", {})
        cal = f"{cal.get('small_width', 1)} ch/group" if cal else "-"
        lines.append(
            f"| {model} | {r['profile_s']:.0f} | {r['profile_again_s']:.2f} | "
            f"{st['unique_configurations']} ({st['timed_calls']}) | {points} | {cal} | "
            f"{p['median_abs_error']:.1%} | {p['max_abs_error']:.1%} | {'yes' if p['within_10pct'] else 'no'} | "
            f"{min(load):.1f}-{max(load):.1f} |"
        )
    lines += [
        "",
        f"| model | variant | FLOPs | params | predicted ratio | measured ratio | target (<= {factor:g} x budget) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in data["results"].items():
        recs, dense = r["records"], r["records"]["dense"]
        for name, v in recs.items():
            if v["kind"] in ("dense", "random"):
                continue
            target = ""
            if v["kind"] == "latency":
                target = "met" if v["measured_ratio"] <= factor * v["budget"] else "**not met**"
            lines.append(
                f"| {model} | {name} | {v['flops'] / dense['flops']:.3f} | {v['params'] / dense['params']:.3f} | "
                f"{v['predicted_ratio']:.3f} | {v['measured_ratio']:.3f} | {target} |"
            )
    lines += [""] + latency_budget_verdicts(data["results"], factor) + [""]
    return lines


def latency_budget_verdicts(results, factor):
    """The three measured targets of latency budgets, as computed from the results."""
    pred_ok = [
        m for m, r in results.items() if r["predictor"]["within_10pct"] and r["predictor"]["median_abs_error"] <= 0.05
    ]
    pred_no = [m for m in results if m not in pred_ok]
    rows = [(m, v) for m, r in results.items() for v in r["records"].values() if v["kind"] == "latency"]
    missed = [
        f"{m} b={v['budget']:g} ({v['measured_ratio']:.3f})"
        for m, v in rows
        if v["measured_ratio"] > factor * v["budget"]
    ]
    caps = []
    for r in results.values():
        recs = r["records"]
        for v in recs.values():
            eq = recs.get(f"flops@lat b={v['budget']:g}") if v["kind"] == "latency" else None
            if eq:
                caps.append((v["flops"] / eq["flops"], v["params"] / eq["params"]))
    lines = [
        f"- Predictor (every set within ±10 %, median |error| <= 5 %): met for {', '.join(pred_ok) or 'none'}"
        + (f"; **not met** for {', '.join(pred_no)}." if pred_no else "."),
        f"- Latency budgets (measured ratio <= {factor:g} x budget): "
        f"{len(rows) - len(missed)} of {len(rows)} points met"
        + (f"; **not met**: {', '.join(missed)}." if missed else "."),
    ]
    if caps:
        lines.append(
            "- Capacity at equal predicted latency (latency-budget network / FLOPs-budget network): FLOPs x"
            f"{min(c[0] for c in caps):.3f}-{max(c[0] for c in caps):.3f}, params x{min(c[1] for c in caps):.3f}-"
            f"{max(c[1] for c in caps):.3f} over {len(caps)} points (>= 1 means the latency budget keeps at least as "
            "much)."
        )
    return lines


LATENCY_ACCURACY_LABELS = {
    "latency": "latency budget",
    "flops": "FLOPs budget, equal predicted latency",
    "grid_flops": "FLOPs budget (accuracy grid)",
}


def latency_accuracy_section(data):
    """Accuracy at equal measured latency (latency_accuracy_*.json): ChipNet searched under a
    latency budget next to ChipNet searched under the FLOPs budget of the same latency."""
    cfg, timing = data["config"], data["timing"]
    ratio = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    pct = lambda s: f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"  # noqa: E731
    lines = [
        "### Accuracy at equal latency (benchmarks/latency/accuracy.py)",
        "",
        f"{cfg['model']} on {cfg['dataset']}; seeds {cfg['seeds']}; search {cfg['prune_epochs']} epochs, fine-tuning "
        f"{cfg['finetune_epochs']} (the accuracy benchmark's protocol). Latency: {cfg['table']}; every network timed "
        f"interleaved with the dense model ({timing['dense_ms']:.3f} ms; 1-min load average "
        f"{min(timing['load_average_1min']):.1f}-{max(timing['load_average_1min']):.1f} on 2 CPUs). The FLOPs row of "
        "equal latency is searched at the FLOPs budget where the L1-norm cut is predicted at the latency network's "
        "predicted latency, and its learned gates are cut where their own cut is; dense accuracy "
        f"{pct(data['dense_accuracy'])} %.",
        "",
        "| budget | network | test accuracy % | before fine-tuning % | measured latency ratio | predicted | FLOPs kept "
        "| params kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["table"]:
        lines.append(
            f"| {r['budget']:g} | {LATENCY_ACCURACY_LABELS[r['kind']]} ({r['runs']}) | {pct(r['accuracy'])} | "
            f"{pct(r['accuracy_before_finetune'])} | {ratio(r['measured_ratio'])} | {ratio(r['predicted_ratio'])} | "
            f"{ratio(r['flops_fraction'])} | {ratio(r['params_fraction'])} |"
        )
    return lines + [""]
