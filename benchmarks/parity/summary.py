"""The parity benchmark's summary: per flavour, mean test accuracy and the verdict against tf_keras."""

import numpy as np


def summarise(rows):
    """Per flavour: mean/std of test accuracy and of the hard fraction; the verdicts."""
    groups = {}
    for row in rows:
        groups.setdefault(f"{row['flavour']}/{row['backend']}", []).append(row)
    summary = {}
    for name, rs in sorted(groups.items()):
        acc = np.array([r["accuracy"] for r in rs])
        summary[name] = {
            "seeds": [r["seed"] for r in rs],
            "mean_accuracy": float(acc.mean()),
            "std_accuracy": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "mean_fraction": float(np.mean([r["fraction"] for r in rs])),
            "mean_seconds": float(np.mean([r["seconds"] for r in rs])),
        }
    ref = summary.get("tf_keras/tensorflow")
    for name, s in summary.items():
        if ref is None or name == "tf_keras/tensorflow":
            continue
        gap = s["mean_accuracy"] - ref["mean_accuracy"]
        pooled = float(np.sqrt((s["std_accuracy"] ** 2 + ref["std_accuracy"] ** 2) / 2))
        s["gap_points"] = 100 * gap
        s["pooled_std_points"] = 100 * pooled
        s["parity"] = bool(abs(gap) <= 0.01 or abs(gap) <= pooled)
    return summary


def table(summary):
    lines = [
        "| flavour | seeds | test accuracy (mean ± std) | hard fraction | gap to tf_keras | parity |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        gap = "" if "gap_points" not in s else f"{s['gap_points']:+.2f} pt (pooled std {s['pooled_std_points']:.2f})"
        parity = "" if "parity" not in s else ("yes" if s["parity"] else "no")
        lines.append(
            f"| {name} | {len(s['seeds'])} | {100 * s['mean_accuracy']:.2f} ± {100 * s['std_accuracy']:.2f} "
            f"| {s['mean_fraction']:.4f} | {gap} | {parity} |"
        )
    return "\n".join(lines)
