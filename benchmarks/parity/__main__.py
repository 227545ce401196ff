"""Keras 3 parity: ChipNet on tf_keras and on Keras 3 (TensorFlow and JAX backends), same
seeds, data, architecture, initial weights and protocol (see :mod:`benchmarks.parity.run`).

Each flavour runs in its own process (Keras 3's backend is chosen per process); finished
seeds are kept in the work directory, so an interrupted run resumes. The verdict per Keras 3
flavour: its mean test accuracy is within 1 point of tf_keras', or within the pooled
standard deviation of the two.

Usage::

    python -m benchmarks.parity                     # 3 seeds x 3 flavours (~1 h on 2 idle cores)
    python -m benchmarks.parity --backends jax torch
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from chipnet_tf.io import write_json

HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "results" / "keras3_parity.json"


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=["tensorflow", "jax"], help="Keras 3 backends to compare")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work_dir", type=Path, default=HERE / "results" / ".work" / "parity")
    p.add_argument("--output", type=Path, default=RESULTS)
    args, run_args = p.parse_known_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    seeds = [str(s) for s in args.seeds]
    jobs = [("tf_keras", "tensorflow")] + [("keras3", b) for b in args.backends]
    for flavour, backend in jobs:
        env = {**os.environ, "KERAS_BACKEND": backend}
        cmd = [sys.executable, "-m", "benchmarks.parity.run", "--flavour", flavour, "--work_dir", str(args.work_dir)]
        print(f"-- {flavour} ({backend})", flush=True)
        subprocess.run([*cmd, "--seeds", *seeds, *run_args], env=env, check=True)
    rows = []
    for flavour, backend in jobs:
        for seed in args.seeds:
            with open(args.work_dir / f"{flavour}-{backend}-{seed}.json") as f:
                rows.append(json.load(f))
    summary = summarise(rows)
    write_json(
        args.output, {"protocol": run_args or "defaults of benchmarks.parity.run", "rows": rows, "summary": summary}
    )
    print(table(summary))


if __name__ == "__main__":
    main()
