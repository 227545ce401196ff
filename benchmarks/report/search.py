"""RESULTS.md sections about ChipNet's search: the ablation (benchmarks/accuracy/ablation.py)."""


def _pm(stat, scale=100.0, digits=1):
    """``mean ± std`` of a ``{"mean", "std", "n"}`` summary, in percent by default."""
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def ablation_section(ablation):
    """The ablation table: one row per (search configuration, budget), in the run's order."""
    cfg = ablation["config"]
    lines = [
        "## Ablation: from the paper's search to the default, one change at a time",
        "",
        f"Written from `ablation_*.json` (`python -m benchmarks.accuracy.ablation`). Model: `{cfg['model']}`. Data: "
        f"{cfg['dataset']}. Seeds: {cfg['seeds']}; dense {_pm(ablation['dense_accuracy'])} % test accuracy. "
        f"ChipNet alone: {cfg['prune_epochs']} search epochs, then the accuracy benchmark's fine-tuning "
        f"({cfg['finetune_epochs']} epochs). Before fine-tuning: the stripped network with BatchNorm statistics "
        "re-estimated, i.e. what the search itself found. Converged: the final soft budget V within 0.05 of "
        "the target.",
        "",
        "Configurations, in order (each adds one change to the previous):",
        "",
    ]
    lines += [f"- `{name}`: {text}" for name, text in cfg["searches"].items()]
    lines += [
        "",
        "| configuration | budget | final soft V | converged | before fine-tuning (%) | after (%) | "
        "groups at 1 channel |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ablation["table"]:
        lines.append(
            f"| `{row['search']}` | {row['budget_type']} {row['budget']:g} | "
            f"{row['final_soft_budget']['mean']:.3f} | {row['converged']}/{row['runs']} | "
            f"{_pm(row['accuracy_before_finetune'])} | {_pm(row['accuracy'])} | "
            f"{row['groups_with_one_channel']['mean']:.1f} |"
        )
    lines.append("")
    for commit, names in ablation.get("reused", {}).items():
        searches = sorted(
            {n.rsplit("-", 1)[1] for n in names if n.startswith("ablation-")}, key=list(cfg["searches"]).index
        )
        dense = sum(n.startswith("dense-") for n in names)
        lines += [
            f"Reused from an earlier run of this benchmark at commit {commit} (`--reuse`; the code paths of these "
            f"configurations did not change since): {dense} dense models and the "
            f"{', '.join(f'`{s}`' for s in searches)} "
            f"runs ({sum(n.startswith('ablation-') for n in names)} tasks). The other rows ran at this page's commit "
            "on the same dense models.",
            "",
        ]
    return lines
