"""Writes ``RESULTS.md`` and its PNG plots from the suite's results JSON files.

Everything in the page is computed from ``accuracy.json`` (digits), ``accuracy_fashion_mnist.json``,
``ablation_fashion_mnist.json``, ``latency.json``, ``latency_zoo.json``,
``overhead.json``, ``strip_speed.json``, ``keras3_parity.json``, ``overhead_keras3.json`` and
``strip_speed_keras3.json``; the win/tie/lose verdicts follow one stated rule
(see :func:`benchmarks.report.claims.verdict`), applied to every cell, so no number is picked by hand.

The command line is ``python -m benchmarks.report``.
"""

import json
import os
from pathlib import Path

from benchmarks.report.accuracy import accuracy_sections
from benchmarks.report.keras3 import parity_section, speed_section
from benchmarks.report.search import ablation_section
from benchmarks.report.speed import (
    latency_accuracy_section,
    latency_budget_section,
    latency_section,
    overhead_section,
    plot_latency,
    strip_section,
    zoo_latency_section,
)
from chipnet_tf.io import atomic_write

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RESULTS_MD = Path(__file__).resolve().parent.parent / "RESULTS.md"
BENCHMARKS_README = Path(__file__).resolve().parent.parent / "README.md"


def _load(results_dir, name):
    path = Path(results_dir) / f"{name}.json"
    if not path.exists():
        return None
    with open(path) as f:
        return json.load(f)


def write_results(results_dir=RESULTS_DIR, output=RESULTS_MD, command="make bench"):
    """Writes the page (and its PNGs next to the JSON files); returns the page text."""
    results_dir, output = Path(results_dir), Path(output)
    accuracy = _load(results_dir, "accuracy")
    fashion = _load(results_dir, "accuracy_fashion_mnist")
    latency = _load(results_dir, "latency")
    overhead = _load(results_dir, "overhead")
    strip = _load(results_dir, "strip_speed")
    ablation = _load(results_dir, "ablation_fashion_mnist")
    zoo_latency = _load(results_dir, "latency_zoo")
    latency_budget = _load(results_dir, "latency_budget")
    latency_accuracy = _load(results_dir, "latency_accuracy_fashion_mnist")
    parity = _load(results_dir, "keras3_parity")
    overhead_keras3 = _load(results_dir, "overhead_keras3")
    strip_keras3 = _load(results_dir, "strip_speed_keras3")
    rel = os.path.relpath(results_dir, output.parent)
    readme = os.path.relpath(BENCHMARKS_README, output.parent)
    lines = [
        "# chipnet_tf benchmark results",
        "",
        f"Written by `{command}` (`python -m benchmarks.suite`) from `{rel}/*.json`; every number and verdict on "
        "this page is computed from those files by `benchmarks/report/`. How each benchmark builds, times "
        f"and reports what it measures: [benchmarks/README.md]({readme}).",
        "",
    ]
    env = (accuracy or fashion or latency or overhead or strip or {}).get("environment", {})
    if env:
        lines += [
            f"Machine: {env.get('platform')}, {env.get('os_cpu_count')} CPUs, TensorFlow {env.get('tensorflow')}, "
            f"tf_keras {env.get('tf_keras')}, chipnet_tf {env.get('chipnet_tf')}.",
            "",
        ]
    for results in (accuracy, fashion):
        if results:
            lines += accuracy_sections(results, results_dir, rel)
    if ablation:
        lines += ablation_section(ablation)
    if latency_budget:
        lines += latency_budget_section(latency_budget)
    if latency_accuracy:
        lines += latency_accuracy_section(latency_accuracy)
    if latency:
        plot_latency(latency, results_dir / "latency_vs_flops.png")
        lines += latency_section(latency, f"{rel}/latency_vs_flops.png")
    if zoo_latency:
        lines += zoo_latency_section(zoo_latency)
    if overhead:
        lines += overhead_section(overhead)
    if strip:
        lines += strip_section(strip)
    if parity:
        lines += parity_section(parity)
    if overhead_keras3 or strip_keras3:
        lines += speed_section(overhead_keras3, strip_keras3)
    text = "\n".join(lines)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda f: f.write(text), mode="w")
    return text
