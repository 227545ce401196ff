"""``report.png``: what pruning kept, per group, and how the budget converged, in one figure."""

import io

from chipnet_tf.io import atomic_write


def write_report_png(filename, report, history=None, budget=None, budget_type=None):
    """Writes a PNG (atomically) with per-group kept channels and the pruning curves.

    Left: one horizontal bar per channel group, dense width in grey and kept channels in
    colour. Right (when ``history`` has pruning epochs): the soft budget fraction with the
    target, the crispness loss, and training accuracy per epoch.

    Args:
        filename: where to write the PNG.
        report: a :class:`chipnet_tf.BudgetReport` of the hard masks.
        history: per-epoch logs of the prune stage (``{"budget": [...], ...}``), or None.
        budget, budget_type: the run's target, drawn as a line on the budget curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = [k for k in ("budget", "crispness", "accuracy") if history and history.get(k)]
    groups = report.groups
    fig = plt.figure(figsize=(12, max(4.0, 0.22 * len(groups) + 1.5)), constrained_layout=True)
    grid = fig.add_gridspec(max(1, len(curves)), 2, width_ratios=(1.2, 1))
    ax = fig.add_subplot(grid[:, 0])
    names = [g["name"] for g in groups]
    ax.barh(names, [g["size"] for g in groups], color="0.85", label="dense")
    ax.barh(names, [g["kept"] for g in groups], color="tab:blue", label="kept")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=max(4, min(9, 400 // max(1, len(groups)))))
    ax.set_xlabel("channels")
    totals = ", ".join(f"{t} {report.totals[t]['fraction']:.3f}" for t in ("flops", "params", "channels"))
    ax.set_title(f"kept channels per group (kept fraction: {totals})", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    for row, key in enumerate(curves):
        cax = fig.add_subplot(grid[row, 1])
        epochs = range(1, len(history[key]) + 1)
        cax.plot(epochs, history[key], marker=".", label={"accuracy": "train accuracy (soft gates)"}.get(key, key))
        if key == "accuracy" and history.get("hard_accuracy"):
            hard = history["hard_accuracy"]
            cax.plot(epochs, hard, marker=".", label="validation accuracy (hard masks)")
            best = max(range(len(hard)), key=hard.__getitem__)
            cax.axvline(best + 1, color="0.5", linestyle=":", label=f"kept: epoch {best + 1}")
        if key == "budget" and budget is not None:
            cax.axhline(budget, color="tab:red", linestyle="--", label=f"target {budget:g} ({budget_type})")
        cax.set_ylabel({"budget": "soft budget V"}.get(key, key))
        cax.legend(fontsize=8)
        cax.grid(alpha=0.3)
        cax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if row == len(curves) - 1:
            cax.set_xlabel("pruning epoch")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(filename, lambda f: f.write(buf.getvalue()))
    return filename
