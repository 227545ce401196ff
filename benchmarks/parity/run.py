"""One flavour's runs of the parity benchmark (one process: Keras 3's backend is per process).

For each seed, on digits with the accuracy benchmark's PreResNet-20 and split:

1. the dense model starts from the same initial weights in every flavour (a tf_keras
   model built with the seed, saved as HDF5, loaded by the flavour's Keras);
2. it is trained ``pretrain`` epochs with the accuracy benchmark's SGD recipe;
3. ChipNet searches ``search`` epochs at the budget (``prune_low_budget`` defaults,
   ``search_optimizer``, ``UpdatePruningStep`` and ``BestHardMasks`` on the held-out split);
4. the dense weights are stripped to the selected masks (BatchNorm re-estimated on training
   images) and fine-tuned ``finetune`` epochs with the SGD recipe; test accuracy is reported.

Usage (the parent, ``python -m benchmarks.parity``, starts one per flavour)::

    KERAS_BACKEND=jax python -m benchmarks.parity.run --flavour keras3 --work_dir DIR
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from chipnet_tf.compat import keras as tf_keras
from chipnet_tf.io import write_json

BATCH, LR, WEIGHT_DECAY = 64, 0.05, 1e-3  # the accuracy benchmark's SGD recipe


def keras_module(flavour):
    if flavour == "tf_keras":
        return tf_keras
    import keras

    return keras


def initial_weights(seed, work_dir):
    """The HDF5 file of the seed's dense model at initialisation (built once, with tf_keras)."""
    path = Path(work_dir) / f"init-{seed}.h5"
    if not path.exists():
        tf_keras.utils.set_random_seed(seed)
        model = acc_data.model("digits")
        tmp = path.with_suffix(".tmp.h5")
        model.save(tmp)
        os.replace(tmp, path)
    return path


def _sgd_fit(K, model, x, y, epochs, seed, callbacks=()):
    def lr(epoch):
        return LR * (0.1 ** int(epoch >= 0.5 * epochs)) * (0.1 ** int(epoch >= 0.75 * epochs))

    model.compile(
        K.optimizers.SGD(LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY),
        K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    K.utils.set_random_seed(seed)
    cbs = [K.callbacks.LearningRateScheduler(lr), *callbacks]
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=cbs)


def _accuracy(K, model, x, y):
    model.compile(loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return float(model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)["accuracy"])


def one_run(flavour, seed, args):
    """The four steps above for one seed; returns the result row."""
    K = keras_module(flavour)
    data = acc_data.load("digits")
    (x, y), (xv, yv), (xt, yt) = data["train"], data["val"], data["test"]
    t0 = time.perf_counter()
    dense = K.models.load_model(initial_weights(seed, args.work_dir), compile=False)
    _sgd_fit(K, dense, x, y, args.pretrain, seed)
    dense_acc = _accuracy(K, dense, xt, yt)
    K.utils.set_random_seed(seed)
    search_dense = K.models.clone_model(dense)
    search_dense.set_weights(dense.get_weights())
    pruned = chipnet_tf.prune_low_budget(search_dense, budget=args.budget, budget_type=args.budget_type)
    steps = args.search * int(np.ceil(len(y) / BATCH))
    pruned.compile(
        chipnet_tf.search_optimizer(steps, model=pruned),
        K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    best = chipnet_tf.BestHardMasks((xv, yv), calibration_data=x)
    K.utils.set_random_seed(seed)
    history = pruned.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=args.search,
        shuffle=True,
        verbose=0,
        callbacks=[chipnet_tf.UpdatePruningStep(), best],
    ).history
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(dense, masks=masks)
    small = chipnet_tf.strip_pruning(dense, masks=masks, calibration_data=x)
    _sgd_fit(K, small, x, y, args.finetune, seed)
    return {
        "protocol": {k: getattr(args, k) for k in ("budget", "budget_type", "pretrain", "search", "finetune")},
        "flavour": flavour,
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow") if flavour == "keras3" else "tensorflow",
        "seed": seed,
        "dense_accuracy": dense_acc,
        "accuracy": _accuracy(K, small, xt, yt),
        "kept": {name: int(m.sum()) for name, m in masks.items()},
        "fraction": float(report.totals[args.budget_type]["fraction"]),
        "soft_budget_per_epoch": [float(v) for v in history.get("budget", [])],
        "flops": int(chipnet_tf.count_flops(small)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--flavour", choices=("tf_keras", "keras3"), required=True)
    p.add_argument("--work_dir", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--budget_type", default="flops")
    p.add_argument("--pretrain", type=int, default=10)
    p.add_argument("--search", type=int, default=4)
    p.add_argument("--finetune", type=int, default=6)
    args = p.parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow") if args.flavour == "keras3" else "tensorflow"
    for seed in args.seeds:
        out = Path(args.work_dir) / f"{args.flavour}-{backend}-{seed}.json"
        if out.exists():  # resumable: a finished seed is not run again
            continue
        row = one_run(args.flavour, seed, args)
        write_json(out, row)
        print(json.dumps({k: row[k] for k in ("flavour", "backend", "seed", "accuracy", "fraction", "seconds")}))


if __name__ == "__main__":
    main()
