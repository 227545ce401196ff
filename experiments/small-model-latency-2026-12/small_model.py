"""Latency predictor on a very small model: Fashion-MNIST's PreResNet-20 (0.5 ms dense).
Random-score masks at latency budgets 0.5 / 0.25 / 0.1 and FLOPs budgets 0.1 / 0.03, timed
interleaved with dense; measured vs predicted ratio, and the networks' groups at 1 channel."""

import tempfile

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from chipnet_tf.latency.table import attach
from chipnet_tf.latency.timing import ready_interpreter, time_interleaved
from chipnet_tf.litert import convert_traced

dense = acc_data.model("fashion_mnist")
table = chipnet_tf.latency.profile(dense, threads=1, cache_dir=tempfile.mkdtemp(), progress=False)
print("calibration", {k: round(v, 4) if isinstance(v, float) else v for k, v in table.stats["calibration"].items()})
analysis = chipnet_tf.analyze(dense, warn=False)
spec = attach(analysis, table)
rng = np.random.default_rng(5)
nets, labels, preds = [dense], ["dense"], [spec.value(np.asarray(spec.group_sizes, float), "latency")]
for bt, b in (("latency", 0.5), ("latency", 0.25), ("latency", 0.1), ("flops", 0.1), ("flops", 0.03)):
    for rep in range(2):
        scores = {g: rng.random(n) for g, n in zip(spec.group_names, spec.group_sizes)}
        masks = chipnet_tf.select_masks(spec, scores, b, bt)
        counts = np.asarray([masks[g].sum() for g in spec.group_names], float)
        nets.append(chipnet_tf.strip_pruning(dense, masks=masks))
        labels.append(f"{bt} {b} #{rep} (1-ch groups {int((counts == 1).sum())})")
        preds.append(spec.value(counts, "latency"))
shapes = [tuple(t.shape[1:]) for t in dense.inputs]
interps = [ready_interpreter(convert_traced(n, shapes, None, None, int8_io=False), 1) for n in nets]
t = np.asarray(time_interleaved(interps, rounds=9, target_s=2e-2)) * 1e3
print(f"dense {t[0]:.4f} ms, predicted {preds[0]:.4f}")
for lab, ms, p in zip(labels[1:], t[1:], preds[1:]):
    print(
        f"  {lab:<34} measured {ms:.4f} ms ratio {ms / t[0]:.3f} predicted {p / preds[0]:.3f} "
        f"error {(ms / t[0]) / (p / preds[0]) - 1:+.3f}"
    )
