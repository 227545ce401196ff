"""After a default search on digits: what does the wrapped model report in inference, and why?

Runs the README's flow (prune_low_budget -> fit -> get_masks -> apply_masks -> evaluate ->
strip_pruning) and measures each network's test accuracy, with and without BatchNorm
statistics re-estimated, plus where the moving statistics differ from the hard network's.
"""

import argparse
import json

import numpy as np

import chipnet_tf
from chipnet_tf.compat import keras
from chipnet_tf.search.layers.controller import controllers
from tests.models import pruning_optimizer, residual_cnn


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images[..., None] / 16.0).astype("float32")
    y = data.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(x))
    return x[order][:1400], y[order][:1400], x[order][1400:], y[order][1400:]


def acc(model, x, y):
    return float(np.mean(model.predict(x, verbose=0, batch_size=256).argmax(-1) == y))


def bns(model):
    out = []

    def walk(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
        for sub in getattr(layer, "layers", None) or []:
            walk(sub)

    for layer in model.layers:
        walk(layer)
    return out


def batch_stats(model, layers, x):
    """Per BN: mean/var of its input over ``x`` in inference (what the network feeds it)."""
    probe = keras.Model(model.inputs, [bn.input[0] if isinstance(bn.input, list) else bn.input for bn in layers])
    outs = probe(x, training=False)
    outs = outs if isinstance(outs, list) else [outs]
    return [(o.numpy().reshape(-1, o.shape[-1]).mean(0), o.numpy().reshape(-1, o.shape[-1]).var(0)) for o in outs]


def stats_gap(model, x):
    """Per BN: max over channels of |moving mean - true mean| / sqrt(true var), and of
    |log(moving var / true var)|, for the network as it runs now."""
    layers = bns(model)
    rows = []
    for bn, (mean, var) in zip(layers, batch_stats(model, layers, x)):
        mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        sd = np.sqrt(var + bn.epsilon)
        rows.append(
            {
                "bn": bn.name,
                "mean_gap_sd": float(np.max(np.abs(mm - mean) / sd)),
                "log_var_ratio": float(np.max(np.abs(np.log((mv + bn.epsilon) / (var + bn.epsilon))))),
            }
        )
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--budget", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--best", action="store_true", help="search with BestHardMasks (calibrated) as the demo does")
    args = p.parse_args()
    x, y, xt, yt = digits()
    keras.utils.set_random_seed(args.seed)
    dense = residual_cnn(args.width)
    dense.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    dense.fit(x, y, epochs=6, batch_size=64, verbose=0)
    r = {"seed": args.seed, "dense": acc(dense, xt, yt)}
    pruned = chipnet_tf.prune_low_budget(dense, budget=args.budget, budget_type="flops")
    pruned.compile(pruning_optimizer(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    cbs = [chipnet_tf.UpdatePruningStep()]
    if args.best:
        cbs.append(chipnet_tf.BestHardMasks((x[1260:], y[1260:]), calibration_data=x[:640]))
    pruned.fit(x[:1260], y[:1260], batch_size=32, epochs=args.epochs, verbose=0, callbacks=cbs)
    ctl = controllers(pruned)[0]
    masks = chipnet_tf.get_masks(pruned)
    z = ctl.soft_gates()[0].numpy()
    open_ = z > 0.5
    cut = np.concatenate([masks[n] for n in ctl.group_names])
    r["soft_V"] = float(ctl.penalties()[0])
    r["open_channels"] = int(open_.sum())
    r["cut_channels"] = int(cut.sum())
    r["open_not_cut"] = int((open_ & ~cut).sum())
    r["cut_not_open"] = int((cut & ~open_).sum())
    # 1) the wrapped model as fit leaves it (gates z > 0.5, closed channels leak 1 %)
    r["wrapped_inference"] = acc(pruned, xt, yt)
    r["gap_wrapped"] = stats_gap(pruned, x[:640])
    # 2) the same forward, statistics re-estimated for it
    saved = chipnet_tf.search.callbacks.recalibrate_batch_norm(pruned, x[:640])
    r["wrapped_recalibrated"] = acc(pruned, xt, yt)
    chipnet_tf.search.callbacks.restore_batch_norm(saved)
    # 3) hard masks, the search's statistics
    chipnet_tf.apply_masks(pruned, masks)
    r["hard_inference"] = acc(pruned, xt, yt)
    r["gap_hard"] = stats_gap(pruned, x[:640])
    small = chipnet_tf.strip_pruning(pruned)
    r["stripped"] = acc(small, xt, yt)
    # 4) hard masks, statistics re-estimated
    chipnet_tf.search.callbacks.recalibrate_batch_norm(pruned, x[:640])
    r["hard_recalibrated"] = acc(pruned, xt, yt)
    r["stripped_after_recalibration"] = acc(chipnet_tf.strip_pruning(pruned), xt, yt)
    # 5) hard masks without the leak but keeping exactly the open set (is it the leak or the cut?)
    chipnet_tf.search.callbacks.restore_batch_norm(saved)
    chipnet_tf.apply_masks(pruned, dict(zip(ctl.group_names, np.split(open_, np.cumsum(ctl.sizes)[:-1]))))
    r["open_set_no_leak"] = acc(pruned, xt, yt)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
