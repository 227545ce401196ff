"""Writes ``RESULTS.md`` and its PNG plots from the suite's results JSON files.

The page itself is built by :func:`benchmarks.report.page.write_results`.

Run::

    python -m benchmarks.report --results_dir benchmarks/results --output benchmarks/RESULTS.md
"""

import argparse
from pathlib import Path

from benchmarks.report.page import RESULTS_DIR, RESULTS_MD, write_results


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--output", type=Path, default=RESULTS_MD)
    args = p.parse_args(argv)
    write_results(args.results_dir, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
