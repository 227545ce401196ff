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

from benchmarks.parity.summary import summarise, table
from chipnet_tf.io import write_json

HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "results" / "keras3_parity.json"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=["tensorflow", "jax"], help="Keras 3 backends to compare")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work_dir", type=Path, default=None, help="finished seeds (default: next to --output)")
    p.add_argument("--output", type=Path, default=RESULTS)
    args, run_args = p.parse_known_args(argv)
    args.work_dir = args.work_dir or args.output.parent / ".work" / "parity"
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
