"""The whole benchmark suite: accuracy at a budget, budget exactness, mask transfer and speed.

Runs, one after another (never two timing benchmarks at once), each as its own process:

* ``benchmarks.accuracy``  - ChipNet vs L1-norm, slimming, random and tfmot on digits;
* ``benchmarks.overhead``  - training-step time of the wrapped model vs plain and tfmot;
* ``benchmarks.strip``    - wrap/mask/strip time and memory;
* ``benchmarks.latency``   - LiteRT latency of stripped models vs their FLOPs fraction;

then ``benchmarks.report`` writes ``RESULTS.md`` and the PNG plots from their JSON files.
With ``--resume`` a benchmark whose JSON file already exists in the output directory is not
run again (only the page is rewritten); the accuracy benchmark also resumes inside itself,
task by task, whenever it is restarted with the same configuration and code.

Run::

    make bench          # python -m benchmarks.suite: the full suite, under an hour on 2 cores
    make bench-quick    # python -m benchmarks.suite --quick: a few minutes, results/quick/
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report.page import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Per benchmark (the name of its JSON file and of ``--only``): the module that runs it.
MODULES = {
    "accuracy": "benchmarks.accuracy",
    "overhead": "benchmarks.overhead",
    "strip_speed": "benchmarks.strip",
    "latency": "benchmarks.latency",
}
BENCHMARKS = tuple(MODULES)
# Per benchmark: extra arguments of the quick variant (small models, few rounds: it checks
# that everything runs and writes its schema, not the numbers).
QUICK_ARGS = {
    "accuracy": ["--quick", "--workers", "1"],
    "overhead": ["--quick", "--rounds", "2", "--steps", "4", "--warmup_steps", "2"],
    "strip_speed": ["--quick", "--model", "mobilenetv2"],
    "latency": [
        "--quick",
        "--resnet_width",
        "0.25",
        "--mobilenet_alpha",
        "0.35",
        "--budgets",
        "0.1",
        "--rounds",
        "2",
        "--invocations",
        "3",
        "--warmup",
        "2",
    ],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small models, few seeds/epochs/rounds (a few minutes)")
    p.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where the JSON files and PNGs go (default benchmarks/results, or benchmarks/results/quick with --quick)",
    )
    p.add_argument(
        "--results_md",
        type=Path,
        default=None,
        help="the results page (default benchmarks/RESULTS.md, or <output_dir>/RESULTS.md with --quick)",
    )
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="run only these")
    p.add_argument("--resume", action="store_true", help="skip benchmarks whose JSON file already exists")
    args = p.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = HERE / "results" / "quick" if args.quick else HERE / "results"
    if args.results_md is None:
        args.results_md = args.output_dir / "RESULTS.md" if args.quick else HERE / "RESULTS.md"
    return args


def run_benchmark(name, output, quick):
    """Runs ``python -m <MODULES[name]> --output <output>``; raises on failure."""
    module = MODULES[name]
    cmd = [sys.executable, "-m", module, "--output", str(output)]
    if quick:
        cmd += QUICK_ARGS[name]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    print(f"\n=== {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.suite: error: {module} failed with exit code {proc.returncode}")
    print(f"=== {module} finished in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv=None):
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name in args.only:
        output = args.output_dir / f"{name}.json"
        if args.resume and output.exists():
            print(f"=== {MODULES[name]}: {output} exists, skipped (--resume)")
            continue
        run_benchmark(name, output, args.quick)
    command = "make bench-quick" if args.quick else "make bench"
    write_results(args.output_dir, args.results_md, command=command)
    print(f"\nwrote {args.results_md} (suite took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
