"""The soft budget at the *end* of a short search, by search setting (the history's "budget" is
an epoch mean, which includes the target's ramp from 1), and optionally the validation accuracy
of its masks fine-tuned from the dense weights for the rest of T. Same data, dense model and
search as equal_training.py; appends to final_soft_budget.jsonl.

    taskset -c 1 env PYTHONPATH=. TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python experiments/search-equal-training-2026-12/final_soft_budget.py --epochs 1 --ramp 0.25
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import equal_training as et  # noqa: E402

NO_KD = {"weight": 0.0}


def search(dense, data, budget, budget_type, seed, epochs, kwargs, cosine=False):
    """equal_training.chipnet_search with search keyword arguments (``cosine``: AdamW's
    learning rate decays to 0 over the search, cosine)."""
    import chipnet_tf
    from chipnet_tf.compat import keras

    keras.utils.set_random_seed(seed)
    pruned = chipnet_tf.prune_low_budget(et.clone(dense), budget=budget, budget_type=budget_type, **kwargs)
    steps = epochs * -(-len(data["train"][1]) // et.BATCH)
    lr = keras.optimizers.schedules.CosineDecay(1e-3, steps) if cosine else 1e-3
    opt = keras.optimizers.AdamW(lr, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    loss, metrics = et.compile_args(NO_KD)
    pruned.compile(opt, loss, metrics=metrics)
    best = chipnet_tf.BestHardMasks(et.targets(data, "select", NO_KD), calibration_data=data["train"][0])
    history = et.fit(pruned, data, epochs, seed, NO_KD, [chipnet_tf.UpdatePruningStep(), best])
    final = float(chipnet_tf.prune.controllers(pruned)[0].penalties()[0])
    return pruned, chipnet_tf.get_masks(pruned), final, history.get("budget", [])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1, help="search epochs S")
    p.add_argument("--total-epochs", type=int, default=6, help="T; the masks fine-tune T - S from the dense weights")
    p.add_argument("--cells", default="channels:0.1,channels:0.05")
    p.add_argument("--ramp", type=float, default=0.5, help="budget_ramp of the progress schedule")
    p.add_argument("--budget-weight", type=float, default=30.0)
    p.add_argument("--finetune", action="store_true", help="also fine-tune the masks on the dense weights")
    p.add_argument("--cosine", action="store_true", help="AdamW's learning rate cosine-decayed to 0 over the search")
    p.add_argument("--out", default=os.path.join(HERE, "final_soft_budget.jsonl"))
    args = p.parse_args()
    et.setup_tf()
    import chipnet_tf

    data = et.load_data()
    dense, _ = et.dense_model(data, 0, 6, "/tmp/search-equal-training-2026-12")
    spec = chipnet_tf.analyze(dense, warn=False).spec
    kwargs = {
        "schedule": chipnet_tf.HeavisideSchedule.progress(budget_ramp=args.ramp, gamma_factor=1.0),
        "budget_weight": args.budget_weight,
    }
    for cell in args.cells.split(","):
        kind, budget = cell.split(":")
        t0 = time.perf_counter()
        pruned, masks, final, means = search(dense, data, float(budget), kind, 0, args.epochs, kwargs, args.cosine)
        z = np.asarray(chipnet_tf.prune.controllers(pruned)[0].soft_gates()[0])
        hard = [float((part > 0.5).sum()) for part in np.split(z, np.cumsum(spec.group_sizes)[:-1])]
        rec = {
            "cell": cell,
            "search_epochs": args.epochs,
            "ramp": args.ramp,
            "budget_weight": args.budget_weight,
            "cosine": args.cosine,
            "final_soft_budget": final,
            "hard_gates_budget": float(spec.fraction(hard, kind)),
            "epoch_mean": means,
        }
        if args.finetune:
            path = os.path.join("/tmp/search-equal-training-2026-12/models", "soft-probe.keras")
            rec.update(et.finish(dense, masks, data, 0, args.total_epochs - args.epochs, NO_KD, spec, kind, path))
        rec["seconds"] = time.perf_counter() - t0
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
