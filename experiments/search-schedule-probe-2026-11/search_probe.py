"""Small, fast probe of ChipNet's search: does the soft budget converge, and are the hard
masks good, per search variant? Held-out data only (never the test split).

    PYTHONPATH=. python experiments/search-schedule-probe-2026-11/search_probe.py \
        --data digits --variant paper --budget_type channels --budget 0.1
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.compat import keras
from chipnet_tf.search.callbacks import recalibrate_batch_norm, restore_batch_norm

CACHE = "/tmp/search_probe"


def load(name, n_train):
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0).astype("float32")[..., None]
        y = d.target.astype("int64")
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(y))
        x, y = x[idx], y[idx]
        return (x[:1437], y[:1437]), (x[1437:], y[1437:])  # train / held-out
    root = "/usr/share/datasets/fashion-mnist"

    def read(prefix):
        with gzip.open(f"{root}/{prefix}-images-idx3-ubyte.gz") as f:
            xs = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
        with gzip.open(f"{root}/{prefix}-labels-idx1-ubyte.gz") as f:
            ys = np.frombuffer(f.read(), np.uint8, offset=8)
        return xs.astype("float32") / 255.0, ys.astype("int64")

    x, y = read("train")
    # held-out: the last 6,000 training images (test split untouched)
    return (x[:n_train], y[:n_train]), (x[54000:], y[54000:])


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dense_model(args, train):
    path = f"{CACHE}/dense_{args.data}_{args.n_train}_{args.seed}.weights.h5"
    keras.utils.set_random_seed(args.seed)
    model = architectures.preresnet(20, input_shape=train[0].shape[1:], num_classes=10)
    if os.path.exists(path):
        model.load_weights(path)
        return model
    epochs = 20 if args.data == "digits" else 4
    steps = epochs * int(np.ceil(len(train[1]) / 64))
    lr = keras.optimizers.schedules.PiecewiseConstantDecay([steps // 2, 3 * steps // 4], [0.05, 0.005, 0.0005])
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=1e-3), loss(), ["accuracy"])
    model.fit(*train, batch_size=64, epochs=epochs, verbose=0)
    os.makedirs(CACHE, exist_ok=True)
    model.save_weights(path)
    return model


def hard_accuracy(model, masks, train, val):
    chipnet_tf.apply_masks(model, masks)
    saved = recalibrate_batch_norm(model, train[0][:640], steps=10)
    acc = model.evaluate(*val, batch_size=256, verbose=0, return_dict=True)["accuracy"]
    restore_batch_norm(saved)
    chipnet_tf.apply_masks(model, None)
    return float(acc)


def strip_acc(dense, masks, train, val, ft_steps):
    small = chipnet_tf.strip_pruning(dense, masks=masks)
    saved = recalibrate_batch_norm(small, train[0][:640], steps=10)
    small.compile(loss=loss(), metrics=["accuracy"])
    before = small.evaluate(*val, batch_size=256, verbose=0, return_dict=True)["accuracy"]
    restore_batch_norm(saved)
    if ft_steps:
        sched = keras.optimizers.schedules.CosineDecay(0.05, ft_steps)
        small.compile(keras.optimizers.SGD(sched, momentum=0.9, weight_decay=1e-3), loss(), ["accuracy"])
        n = len(train[1])
        epochs = max(1, int(np.ceil(ft_steps * 64 / n)))
        small.fit(*train, batch_size=64, epochs=epochs, steps_per_epoch=min(ft_steps, n // 64), verbose=0)
    after = small.evaluate(*val, batch_size=256, verbose=0, return_dict=True)["accuracy"]
    return float(before), float(after)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="digits")
    p.add_argument("--n_train", type=int, default=12000)
    p.add_argument("--variant", default="paper")  # paper | progress | hard
    p.add_argument("--budget_type", default="channels")
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1, help="repeat the training set per epoch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reference_steps", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ft_steps", type=int, default=0)
    p.add_argument("--baselines", action="store_true")
    p.add_argument("--uniform", action="store_true")
    p.add_argument("--offset_speed", type=float, default=3.0)
    p.add_argument("--anchor", type=float, default=2.0)
    p.add_argument("--dual_rate", type=float, default=3000.0)
    p.add_argument("--ramp", type=float, default=0.5, help="budget_ramp of the lib/ramp variants")
    p.add_argument("--crisp", type=float, default=10.0, help="crispness_weight")
    p.add_argument("--gamma_factor", type=float, default=2**0.5, help="gamma's growth per paper epoch")
    p.add_argument("--gamma_max", type=float, default=256.0)
    p.add_argument("--leak", type=float, default=0.01, help="leak variant: closed channels' forward factor")
    p.add_argument("--out", default="/tmp/search_probe/results.jsonl")
    args = p.parse_args(argv)
    train, val = load(args.data, args.n_train)
    t0 = time.time()
    dense = dense_model(args, train)
    dense.compile(loss=loss(), metrics=["accuracy"])
    dense_acc = dense.evaluate(*val, verbose=0, return_dict=True)["accuracy"]
    variant = args.variant
    if variant == "paper":
        sched = chipnet_tf.HeavisideSchedule.paper()
    else:
        ramp = args.ramp if ("lib" in variant or "ramp" in variant) else 0.0
        sched = chipnet_tf.HeavisideSchedule.progress(
            reference_steps=args.reference_steps,
            budget_ramp=ramp,
            gamma_factor=args.gamma_factor,
            gamma_max=args.gamma_max,
        )
    keras.utils.set_random_seed(args.seed)
    clone = keras.models.clone_model(dense)
    clone.set_weights(dense.get_weights())
    # The library's defaults changed while these probes ran; every variant names its settings. "lib" is the
    # library's own relative logits + ramp (+ "hard"); "rel"/"anneal" are the probe's patches.
    pruned = chipnet_tf.prune_low_budget(
        clone,
        budget=args.budget,
        budget_type=args.budget_type,
        schedule=sched,
        gate_forward="hard" if "hard" in variant else "soft",
        gate_logits="relative" if "lib" in variant else "absolute",
        crispness_weight=args.crisp,
        gate_leak=args.leak if "leak" in variant else 0.0,
    )
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    if "hard" in variant:
        ctl.gate_forward = "hard"
    if "sgmax" in variant:
        # The group's best logit as a constant in the relative logits, so no group
        # shifts as a whole through its best channel's parameter (Adam moves that one at full
        # speed whatever the net pressure); each gate moves on its own gradient.
        import tensorflow as tf

        def sg_logits(ctl=ctl):
            logits = ctl.zeta if ctl.logit_scale is None else ctl.zeta * ctl.logit_scale
            best = tf.stop_gradient(tf.math.segment_max(logits, ctl._segment_ids))
            return logits - tf.gather(best, ctl._segment_ids)

        ctl.logits = sg_logits
    if "sur" in variant:  # the logistic's gradient for the Heaviside (not in the library)
        from chipnet_tf.search import heaviside as _h

        def surrogate(ctl=ctl):
            logits = ctl.logits()
            z_i = _h.logistic(logits, ctl.beta)
            z = _h.continuous_heaviside(logits, ctl.beta, ctl.gamma)
            return z_i + tf.stop_gradient(z - z_i), z_i

        import tensorflow as tf

        ctl.soft_gates = surrogate
    if "proj" in variant:
        ctl.exp_project = True
    if "offset" in variant:
        ctl.exp_offset = ctl.add_weight(name="offset", shape=(), initializer="zeros", trainable=True)
    if "anneal" in variant:
        # The penalty pulls V towards a target that goes from 1 to the budget (cubic) over
        # the first half of the search, so V - target stays small and the budget gradient
        # does not own every logit's sign.
        import tensorflow as tf

        def annealed(z, z_i, ctl=ctl):
            total = tf.cast(tf.maximum(ctl.total_steps, 1), tf.float32)
            p = tf.clip_by_value(tf.cast(ctl.pruning_step, tf.float32) / total / 0.5, 0.0, 1.0)
            target = ctl.budget + (1.0 - ctl.budget) * (1.0 - p) ** 3
            fraction = ctl.spec.tf_fraction(ctl.soft_counts(z), ctl.budget_type)
            crisp = tf.reduce_mean(tf.square(z - z_i))
            if "latecrisp" in variant:  # no crispness until the target reaches the budget
                crisp = crisp * tf.cast(p >= 1.0, tf.float32)
            return fraction, tf.square(fraction - target), crisp

        ctl._penalties = annealed
    if "goffset" in variant:
        # Per-group offsets: the budget loss moves a group's shared offset (Adam decides per
        # group whether to shrink it, from the sign of budget pressure against the group's
        # task gradient); the channels' own logits only rank within the group.
        import tensorflow as tf

        from chipnet_tf.search import heaviside

        tau = ctl.add_weight(name="tau", shape=(len(ctl.sizes),), initializer="zeros", trainable=True)
        seg = ctl._segment_ids
        speed = args.offset_speed

        def gates(budget_path, ctl=ctl):
            zeta = ctl.zeta * ctl.logit_scale
            offset = tf.gather(tau, seg) * ctl.logit_scale * speed
            logits = (tf.stop_gradient(zeta) if budget_path else zeta) + offset
            return heaviside.continuous_heaviside(logits, ctl.beta, ctl.gamma), heaviside.logistic(logits, ctl.beta)

        def penalties(z, z_i, ctl=ctl):
            zb, _ = gates(True)
            fraction = ctl.spec.tf_fraction(ctl.soft_counts(zb), ctl.budget_type)
            return fraction, tf.square(fraction - ctl.budget), tf.reduce_mean(tf.square(z - z_i))

        ctl.soft_gates = lambda: gates(False)
        ctl._penalties = penalties
    if "rel" in variant:
        # Scale-invariant gates: every group's logits are shifted so that its
        # largest sits at the anchor; a uniform shift of a group (what a following
        # BatchNormalization cannot see) then changes neither the gates nor the budget.
        import tensorflow as tf

        from chipnet_tf.search import heaviside

        seg = ctl._segment_ids
        anchor = args.anchor

        def rel_logits(ctl=ctl):
            logits = ctl.zeta * ctl.logit_scale
            return logits - tf.gather(tf.math.segment_max(logits, seg), seg) + anchor

        def rel_gates(ctl=ctl):
            logits = rel_logits()
            return heaviside.continuous_heaviside(logits, ctl.beta, ctl.gamma), heaviside.logistic(logits, ctl.beta)

        ctl.soft_gates = rel_gates
    if "dual" in variant:
        # Dual ascent on the budget: a multiplier that grows while V is above the
        # target (and falls while below), so the budget's pull keeps rising until the least
        # useful channels per unit of cost give way, instead of settling where the quadratic
        # penalty balances the task gradient.
        import tensorflow as tf

        lam = ctl.add_weight(name="lam", shape=(), initializer="zeros", trainable=False)
        base = ctl._penalties
        rate = args.dual_rate

        def dual(z, z_i, ctl=ctl, base=base):
            fraction, budget_loss, crisp = base(z, z_i)
            target = ctl.budget if ctl.target is None else ctl.target
            gap = fraction - target
            per_step = rate / tf.cast(tf.maximum(ctl.total_steps, 1), tf.float32)
            lam.assign_add(per_step * tf.stop_gradient(gap))
            return fraction, budget_loss + lam * gap / ctl.budget_weight, crisp

        ctl._penalties = dual
    opt = keras.optimizers.AdamW(args.lr, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    pruned.compile(opt, loss(), metrics=["accuracy"])
    x, y = train
    if args.repeat > 1:
        x, y = np.concatenate([x] * args.repeat), np.concatenate([y] * args.repeat)
    hist = pruned.fit(
        x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()]
    )
    V = [round(v, 3) for v in hist.history["budget"]]
    if "goffset" in variant:
        ctl.zeta.assign(ctl.zeta + tf.gather(tau, seg) * speed)  # the cut ranks the full logits
    masks = chipnet_tf.get_masks(pruned)
    if "rel" in variant and "lib" not in variant:
        rel = rel_logits().numpy()
        masks = chipnet_tf.select_masks(
            ctl.spec,
            dict(zip(ctl.group_names, np.split(rel, np.cumsum(ctl.sizes)[:-1]))),
            args.budget,
            args.budget_type,
        )
    zeta = ctl.zeta.numpy() * (1.0 if ctl.logit_scale is None else ctl.logit_scale.numpy())
    rec = {
        "data": args.data,
        "variant": variant,
        "budget_type": args.budget_type,
        "budget": args.budget,
        "epochs": args.epochs,
        "batch": args.batch,
        "repeat": args.repeat,
        "lr": args.lr,
        "seed": args.seed,
        "reference_steps": args.reference_steps,
        "ramp": args.ramp,
        "crisp_weight": args.crisp,
        "gamma_factor": args.gamma_factor,
        "gamma_max": args.gamma_max,
        "leak": args.leak if "leak" in variant else None,
        "steps": int(ctl.pruning_step.numpy()),
        "dense_val": round(float(dense_acc), 4),
        "V": V,
        "crisp": round(hist.history["crispness"][-1], 4),
        "lam": round(float(lam.numpy()), 3) if "dual" in variant else None,
        "zeta_q": [round(float(q), 3) for q in np.quantile(zeta, [0, 0.1, 0.5, 0.9, 1])],
        "kept": {k: int(v.sum()) for k, v in masks.items()},
        "hard_val_bn": round(hard_accuracy(pruned, masks, train, val), 4),
        "soft_train_acc": round(hist.history["accuracy"][-1], 4),
    }
    b, a = strip_acc(pruned, masks, train, val, args.ft_steps)
    rec["chipnet_strip_before"], rec["chipnet_ft"] = round(b, 4), round(a, 4)
    if args.uniform and args.budget_type == "channels":
        # Diagnostic: every group keeps the same fraction, chosen by the learned logits or at
        # random - is the ranking *within* a group better than chance?
        rng = np.random.default_rng(args.seed)
        sizes = np.cumsum(ctl.sizes)[:-1]
        zetas = dict(zip(ctl.group_names, np.split(ctl.zeta.numpy(), sizes)))
        for name, score in (("uniform_zeta", lambda z: z), ("uniform_random", lambda z: rng.random(z.size))):
            m = {}
            for g, z in zetas.items():
                k = max(1, int(round(args.budget * z.size)))
                keep = np.zeros(z.size, bool)
                keep[np.argsort(-score(z), kind="stable")[:k]] = True
                m[g] = keep
            b, a = strip_acc(pruned, m, train, val, args.ft_steps)
            rec[f"{name}_before"], rec[f"{name}_ft"] = round(b, 4), round(a, 4)
    if args.baselines:
        from benchmarks.accuracy.methods import random_scores
        from benchmarks.latency.models import channel_scores

        analysis = chipnet_tf.analyze(dense, warn=False)
        for name, scores in (
            ("l1", channel_scores(dense, analysis, args.seed)[0]),
            ("random", random_scores(analysis, args.seed)),
        ):
            m = chipnet_tf.select_masks(analysis.spec, scores, args.budget, args.budget_type)
            b, a = strip_acc(dense, m, train, val, args.ft_steps)
            rec[f"{name}_before"], rec[f"{name}_ft"] = round(b, 4), round(a, 4)
    rec["seconds"] = round(time.time() - t0, 1)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    sys.exit(main())
