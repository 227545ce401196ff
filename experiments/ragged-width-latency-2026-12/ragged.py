"""ResNet-50-CIFAR float32: is the whole-network excess (random sets run 5-11 % slower than
predicted, relative to dense) a cost of ragged widths? Random set k of the committed run, as
is, with every group's width rounded up / down to the 16-channel tile; measured interleaved
with dense (the benchmark's way), each against the table's prediction.

Run on 2026-12-01 against the latency_budget.json committed before it (timed with two paused
training processes resident; now in that file's `earlier_runs`) and its table cache in /tmp;
ragged.log is its output."""

import argparse
import glob
import json
import sys

import numpy as np

import chipnet_tf
from benchmarks.latency.budget import _convert, build, variants_for
from chipnet_tf.latency.table import LatencyTable, attach
from chipnet_tf.latency.timing import ready_interpreter, time_interleaved

name, q = "resnet50", "float32"
sets = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [3, 8]
args = argparse.Namespace(seed=0, resnet_width=1.0, mobilenet_alpha=1.0, sets=20)
res = json.load(open("/work/main/benchmarks/results/latency_budget.json"))["results"][f"{name} {q}"]
dense = build(name, args)
table = None
for f in glob.glob("/tmp/chipnet_tf_latency_bench_cache/resnet50-float32-*/*.json"):
    d = json.load(open(f))
    if (
        isinstance(d, dict)
        and "entries" in d
        and abs(d["dense_ms"] - res["table_stats"]["calibration"]["dense_ms"]) < 1e-9
    ):
        table = LatencyTable.from_dict(d)
assert table is not None
spec = attach(chipnet_tf.analyze(dense, warn=False), table)
variants = variants_for(dense, spec, args)
names = [k for k in variants if k.startswith("random")]
sizes = np.asarray(spec.group_sizes)


def masks_of(counts):
    return {g: np.arange(n) < c for g, n, c in zip(spec.group_names, sizes, counts)}


nets, labels, preds = [dense], ["dense"], [spec.value(sizes.astype(float), "latency")]
for k in sets:
    m = variants[names[k]][0]
    counts = np.asarray([m[g].sum() for g in spec.group_names])
    up = np.minimum(sizes, -(-counts // 16) * 16)
    down = np.where(sizes < 16, counts, np.maximum(16, counts // 16 * 16))
    for lab, c in (("ragged", counts), ("up16", up), ("down16", down)):
        # the ragged one with its own masks (which channels does not matter for latency)
        nets.append(chipnet_tf.strip_pruning(dense, masks=masks_of(c)))
        labels.append(f"{names[k]} {lab}")
        preds.append(spec.value(c.astype(float), "latency"))
interps = [ready_interpreter(_convert(n, None), 1) for n in nets]
for rep in range(2):
    t = np.asarray(time_interleaved(interps, rounds=7, target_s=2e-2)) * 1e3
    print(f"repeat {rep}: dense {t[0]:.2f} ms (predicted {preds[0]:.2f})")
    for lab, ms, p in zip(labels[1:], t[1:], preds[1:]):
        err = (ms / t[0]) / (p / preds[0]) - 1
        print(
            f"  {lab:<22} measured {ms:7.3f} ms ratio {ms / t[0]:.3f}  "
            f"predicted ratio {p / preds[0]:.3f}  error {err:+.3f}",
            flush=True,
        )
