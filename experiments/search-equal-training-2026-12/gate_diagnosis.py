"""Where the soft budget of a short search stands against the network it trains: the soft
budget V (smooth rounding of the gates), the budget of the hard gates (z > 0.5, what the
forward pass trains) and of get_masks' cut, the gates' histogram; optionally the schedule
overridden (JSON keyword arguments of HeavisideSchedule.progress) and the masks fine-tuned
from the dense weights for T - S epochs (validation accuracy). Prints one JSON line.

    env PYTHONPATH=. TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 python \
        experiments/search-equal-training-2026-12/gate_diagnosis.py channels:0.1 1 '{}'
    ... gate_diagnosis.py channels:0.1 1 '{"gamma_factor": 1.0, "steepness_increment": 10.0,
        "steepness_max": 200.0}' ft
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import equal_training as et  # noqa: E402
import final_soft_budget as fsb  # noqa: E402

et.setup_tf()
import chipnet_tf  # noqa: E402
from chipnet_tf.search import heaviside  # noqa: E402

cell = sys.argv[1]
epochs = int(sys.argv[2])
sched = json.loads(sys.argv[3])
finetune = len(sys.argv) > 4
kind, budget = cell.split(":")
budget = float(budget)
data = et.load_data()
dense, _ = et.dense_model(data, 0, 6, "/tmp/search-equal-training-2026-12")
pruned, masks, final, means = fsb.search(
    dense, data, budget, kind, 0, epochs, {"schedule": chipnet_tf.HeavisideSchedule.progress(**sched)} if sched else {}
)
c = chipnet_tf.prune.controllers(pruned)[0]
z, zi = c.soft_gates()
z = np.asarray(z)
r = np.asarray(heaviside.smooth_round(z, c.steepness))
spec = c.spec
soft_counts = np.asarray(c.soft_counts())
hard_counts = [float(np.sum(z[s:e] > 0.5)) for s, e in zip(np.cumsum([0] + list(c.sizes[:-1])), np.cumsum(c.sizes))]
val = (
    et.finish(dense, masks, data, 0, 6 - epochs, {"weight": 0.0}, spec, kind, "/tmp/probe_model.keras")["val"]
    if finetune
    else None
)
print(
    json.dumps(
        {
            "cell": cell,
            "sched": sched,
            "val": val,
            "soft_V": final,
            "V_of_hard_z": float(spec.fraction(hard_counts, kind)),
            "V_of_get_masks": float(spec.fraction([masks[n].sum() for n in spec.group_names], kind)),
            "steepness": float(c.steepness.numpy()),
            "beta": float(c.beta.numpy()),
            "gamma": float(c.gamma.numpy()),
            "z_hist": np.histogram(z, bins=[0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001])[0].tolist(),
            "r_hist": np.histogram(r, bins=[0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001])[0].tolist(),
            "soft_counts": [round(float(x), 2) for x in soft_counts],
            "hard_counts": hard_counts,
            "target": float(c.target.numpy()) if c.target is not None else None,
            "use_hard": float(c.use_hard.numpy()),
        }
    )
)
