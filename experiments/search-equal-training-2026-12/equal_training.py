"""ChipNet against random, L1-norm and uniform-width masks under EQUAL training epochs.

Every method gets the same dense PreResNet-20 (Fashion-MNIST, the benchmark's first 12,000
training images, pretrained once per seed and cached) and then exactly ``--total-epochs`` (T)
epochs of training: ChipNet searches S epochs and fine-tunes its hard network T - S epochs;
the one-shot masks (random, L1, uniform width) and "ChipNet masks on the dense weights"
fine-tune T epochs. Validation: the benchmark's train[90%:] (6,000 images) split in two, the
first 2,000 for ChipNet's own checkpoint selection (BestHardMasks), the other 4,000 for every
comparison. The test split is read only by ``--evaluate-test`` on the models a finished run
saved, after the setting has been chosen.

One JSON line per run is appended to ``--out`` as it finishes; a rerun skips the runs already
there, so an interrupted run resumes.

    taskset -c 1 env PYTHONPATH=. TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python experiments/search-equal-training-2026-12/equal_training.py --seeds 0 \\
        --cells flops:0.05,flops:0.02,channels:0.1,channels:0.05 --search-epochs 1,2,3,4
"""

import argparse
import json
import math
import os
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATASET = "fashion_mnist"
BATCH = 64
LR = 0.05
WEIGHT_DECAY = 1e-3
SELECTION_IMAGES = 2_000  # of the 6,000 validation images: ChipNet's checkpoint selection


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="0", help="comma-separated seeds (dense model, masks, training order)")
    p.add_argument("--cells", default="flops:0.05,flops:0.02,channels:0.1,channels:0.05", help="type:budget,...")
    p.add_argument("--total-epochs", type=int, default=6, help="T: training epochs after pretraining, every method")
    p.add_argument("--search-epochs", default="1,2,3,4", help="S values for ChipNet (fine-tunes T - S)")
    p.add_argument("--methods", default="random,l1,uniform,chipnet", help="random,l1,uniform,chipnet")
    p.add_argument(
        "--masks-on-dense",
        default="",
        help="S values at which ChipNet's masks are also fine-tuned from the dense weights (T epochs)",
    )
    p.add_argument("--kd", type=float, default=0.0, help="distillation weight (0: plain cross-entropy)")
    p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument("--dense-epochs", type=int, default=6, help="pretraining epochs of the dense model")
    p.add_argument("--cache", default="/tmp/search-equal-training-2026-12", help="dense weights and saved models")
    p.add_argument("--out", default=os.path.join(HERE, "results.jsonl"))
    p.add_argument(
        "--evaluate-test",
        default=None,
        help="no training: evaluate the saved models of the runs in --out matching this JSON filter "
        "(e.g. '{\"search_epochs\": [null, 1]}'), append test accuracy to test.jsonl",
    )
    return p.parse_args(argv)


# -- setup -----------------------------------------------------------------------------
def setup_tf():
    import logging

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from chipnet_tf.compat import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)


def load_data():
    from benchmarks.accuracy import data as acc_data

    data = dict(acc_data.load(DATASET))
    xv, yv = data.pop("val")
    data["select"] = (xv[:SELECTION_IMAGES], yv[:SELECTION_IMAGES])
    data["val"] = (xv[SELECTION_IMAGES:], yv[SELECTION_IMAGES:])
    return data


def build_model():
    from benchmarks.accuracy import data as acc_data

    return acc_data.model(DATASET)


# -- training (the benchmark's recipes, benchmarks/accuracy/methods.py) -------------------
def _ce():
    from chipnet_tf.compat import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def kd_loss(weight, temperature):
    """(1 - w) CE(label) + w T^2 KL(teacher_T || student_T); y = [label, teacher logits...]."""
    from chipnet_tf.compat import tf

    def loss(y, logits):
        labels = tf.cast(y[:, 0], tf.int64)
        teacher = y[:, 1:]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        p_t = tf.nn.softmax(teacher / temperature)
        log_s = tf.nn.log_softmax(logits / temperature)
        log_t = tf.nn.log_softmax(teacher / temperature)
        kl = tf.reduce_sum(p_t * (log_t - log_s), axis=-1)
        return (1.0 - weight) * ce + weight * temperature**2 * kl

    return loss


def kd_accuracy(y, logits):
    from chipnet_tf.compat import tf

    labels = tf.cast(y[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)


kd_accuracy.__name__ = "accuracy"


def compile_args(kd):
    """(loss, metrics) for plain or distilled training."""
    if kd["weight"] > 0:
        return kd_loss(kd["weight"], kd["temperature"]), [kd_accuracy]
    return _ce(), ["accuracy"]


def targets(data, split, kd):
    x, y = data[split]
    if kd["weight"] > 0:
        return x, np.concatenate([y[:, None].astype(np.float32), kd["logits"][split]], axis=1)
    return x, y


def step_decay(epochs):
    from chipnet_tf.compat import keras

    def lr(epoch):
        return LR * (0.1 ** int(epoch >= 0.5 * epochs)) * (0.1 ** int(epoch >= 0.75 * epochs))

    return keras.callbacks.LearningRateScheduler(lr)


def sgd():
    from chipnet_tf.compat import keras

    return keras.optimizers.SGD(LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)


def fit(model, data, epochs, seed, kd, callbacks=()):
    from chipnet_tf.compat import keras

    if epochs <= 0:
        return {}
    keras.utils.set_random_seed(seed)
    x, y = targets(data, "train", kd)
    h = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=list(callbacks))
    return {k: [float(v) for v in vs] for k, vs in h.history.items()}


def evaluate(model, data, split="val"):
    """Accuracy with BatchNorm statistics re-estimated on 20 training batches."""
    import chipnet_tf
    from chipnet_tf.compat import keras

    saved = chipnet_tf.recalibrate_batch_norm(model, data["train"][0], steps=20)
    model.compile(loss=_ce(), metrics=["accuracy"])
    x, y = data[split]
    acc = float(model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)["accuracy"])
    chipnet_tf.restore_batch_norm(saved)
    del keras
    return acc


def dense_model(data, seed, epochs, cache):
    """The seed's pretrained dense model (cached)."""
    from chipnet_tf.compat import keras

    path = os.path.join(cache, f"dense_seed{seed}_epochs{epochs}.weights.h5")
    keras.utils.set_random_seed(seed)
    model = build_model()
    if os.path.exists(path):
        model.load_weights(path)
        return model, None
    t0 = time.perf_counter()
    model.compile(sgd(), _ce(), metrics=["accuracy"])
    fit(model, data, epochs, seed, {"weight": 0.0}, [step_decay(epochs)])
    model.save_weights(path + ".tmp.weights.h5")
    os.replace(path + ".tmp.weights.h5", path)
    return model, time.perf_counter() - t0


def clone(model):
    from chipnet_tf.compat import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


# -- masks -----------------------------------------------------------------------------
def select_quietly(spec, scores, budget, budget_type):
    import chipnet_tf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masks = chipnet_tf.select_masks(spec, scores, budget, budget_type)
    return masks, any("below what keeping" in str(w.message) for w in caught)


def one_shot_scores(method, dense, analysis, seed, budget):
    from benchmarks.latency.models import channel_scores

    if method == "random":
        rng = np.random.default_rng(1000 * seed + int(1000 * budget))
        return {g.name: rng.standard_normal(g.size) for g in analysis.groups}
    l1 = channel_scores(dense, analysis, seed)[0]
    if method == "l1":
        return l1
    # uniform width: a channel's score is its quantile within its group (best channel by L1
    # highest), so any threshold keeps the same fraction of every group
    out = {}
    for g in analysis.groups:
        rank = np.argsort(np.argsort(-l1[g.name], kind="stable"), kind="stable")
        out[g.name] = 1.0 - (rank + 0.5) / g.size
    return out


def chipnet_search(dense, data, budget, budget_type, seed, epochs, kd):
    """prune_low_budget's default search for ``epochs`` epochs (AdamW 1e-3, BestHardMasks on
    the selection split). Returns (pruned model, masks, info)."""
    import chipnet_tf
    from chipnet_tf.compat import keras

    keras.utils.set_random_seed(seed)
    pruned = chipnet_tf.prune_low_budget(clone(dense), budget=budget, budget_type=budget_type)
    opt = keras.optimizers.AdamW(1e-3, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    loss, metrics = compile_args(kd)
    pruned.compile(opt, loss, metrics=metrics)
    best = chipnet_tf.BestHardMasks(targets(data, "select", kd), calibration_data=data["train"][0])
    history = fit(pruned, data, epochs, seed, kd, [chipnet_tf.UpdatePruningStep(), best])
    masks = chipnet_tf.get_masks(pruned)
    info = {
        "best_search_epoch": int(best.best_epoch) + 1,
        "soft_budget_per_epoch": history.get("budget", []),
        "hard_select_accuracy_per_epoch": history.get("hard_accuracy", []),
    }
    return pruned, masks, info


def finish(source, masks, data, seed, epochs, kd, spec, budget_type, save_path):
    """Strip (BatchNorm re-estimated), evaluate, fine-tune ``epochs``, evaluate, save."""
    import chipnet_tf

    small = chipnet_tf.strip_pruning(source, masks=masks, calibration_data=data["train"][0])
    counts = np.asarray([int(masks[n].sum()) for n in spec.group_names], np.float64)
    rec = {
        "achieved": float(spec.fraction(counts, budget_type)),
        "achieved_all": {t: float(spec.fraction(counts, t)) for t in spec.budget_types},
        "kept_per_group": {n: int(masks[n].sum()) for n in spec.group_names},
        "groups_with_one_channel": int(sum(masks[n].sum() == 1 for n in spec.group_names)),
        "val_before_finetune": evaluate(small, data),
    }
    loss, metrics = compile_args(kd)
    small.compile(sgd(), loss, metrics=metrics)
    history = fit(small, data, epochs, seed, kd, [step_decay(epochs)])
    losses = history.get("loss", [])
    rec["final_train_loss"] = losses[-1] if losses else None
    rec["finite"] = bool(
        all(math.isfinite(v) for v in losses) and all(np.isfinite(w).all() for w in small.get_weights())
    )
    rec["val"] = evaluate(small, data)
    small.save(save_path)
    return rec


# -- the runs --------------------------------------------------------------------------
def run_key(rec):
    keys = ("seed", "budget_type", "budget", "method", "search_epochs", "total_epochs", "kd", "dense_epochs")
    return tuple(rec.get(k) for k in keys)


def model_name(key):
    return "-".join(str(k) for k in key).replace("/", "_") + ".keras"


def done_keys(out):
    if not os.path.exists(out):
        return set()
    with open(out) as f:
        return {run_key(json.loads(line)) for line in f if line.strip()}


def append(out, rec):
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def main(argv=None):
    args = parse_args(argv)
    setup_tf()
    import chipnet_tf

    os.makedirs(args.cache, exist_ok=True)
    models_dir = os.path.join(args.cache, "models")
    os.makedirs(models_dir, exist_ok=True)
    if args.evaluate_test:
        return evaluate_test(args, models_dir)
    data = load_data()
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = [(c.split(":")[0], float(c.split(":")[1])) for c in args.cells.split(",")]
    search_epochs = [int(s) for s in args.search_epochs.split(",") if s]
    methods = args.methods.split(",")
    T = args.total_epochs
    done = done_keys(args.out)
    for seed in seeds:
        dense, dense_seconds = dense_model(data, seed, args.dense_epochs, args.cache)
        if dense_seconds is not None:
            print(f"seed {seed}: dense pretrained in {dense_seconds:.0f}s, val {evaluate(dense, data):.4f}", flush=True)
        kd = {"weight": args.kd, "temperature": args.kd_temperature}
        if args.kd > 0:
            kd["logits"] = {s: dense.predict(data[s][0], batch_size=256, verbose=0) for s in ("train", "select")}
        analysis = chipnet_tf.analyze(dense, warn=False)
        spec = analysis.spec
        for budget_type, budget in cells:
            base = {
                "seed": seed,
                "budget_type": budget_type,
                "budget": budget,
                "total_epochs": T,
                "kd": args.kd,
                "dense_epochs": args.dense_epochs,
            }
            todo = [(m, None) for m in methods if m != "chipnet"]
            if "chipnet" in methods:
                todo += [("chipnet", s) for s in search_epochs]
            for method, S in todo:
                rec = dict(base, method=method, search_epochs=S)
                variants = [rec]
                if method == "chipnet" and str(S) in args.masks_on_dense.split(","):
                    variants.append(dict(base, method="chipnet_masks_dense", search_epochs=S))
                if all(run_key(v) in done for v in variants):
                    continue
                t0 = time.perf_counter()
                ctx = {"data": data, "seed": seed, "kd": kd, "spec": spec, "models": models_dir, "out": args.out}
                if method == "chipnet":
                    pruned, masks, info = chipnet_search(dense, data, budget, budget_type, seed, S, kd)
                    search_seconds = time.perf_counter() - t0
                    rec.update(info, minimal_network=False, search_seconds=search_seconds)
                    if run_key(rec) not in done:
                        finish_and_record(rec, pruned, masks, T - S, t0, ctx)
                    if len(variants) > 1 and run_key(variants[1]) not in done:
                        other = variants[1]
                        other.update(info, minimal_network=False, search_seconds=search_seconds)
                        finish_and_record(other, dense, masks, T, time.perf_counter(), ctx)
                    continue
                scores = one_shot_scores(method, dense, analysis, seed, budget)
                masks, minimal = select_quietly(spec, scores, budget, budget_type)
                rec["minimal_network"] = minimal
                finish_and_record(rec, dense, masks, T, t0, ctx)


def finish_and_record(rec, source, masks, epochs, t0, ctx):
    """Strips ``source`` with ``masks``, fine-tunes ``epochs`` and appends the run's record."""
    model_path = os.path.join(ctx["models"], model_name(run_key(rec)))
    rec.update(
        finish(source, masks, ctx["data"], ctx["seed"], epochs, ctx["kd"], ctx["spec"], rec["budget_type"], model_path)
    )
    rec["seconds"] = time.perf_counter() - t0
    append(ctx["out"], rec)
    report(rec)


def report(rec):
    s = "" if rec["search_epochs"] is None else f" S={rec['search_epochs']}"
    print(
        f"seed {rec['seed']} {rec['budget_type']} {rec['budget']} kd {rec['kd']} {rec['method']}{s}: "
        f"val {rec['val']:.4f} (before fine-tuning {rec['val_before_finetune']:.4f}), "
        f"{rec['groups_with_one_channel']} one-channel groups, {rec['seconds']:.0f}s",
        flush=True,
    )


def evaluate_test(args, models_dir):
    from chipnet_tf.compat import keras

    data = load_data()
    want = json.loads(args.evaluate_test)
    test_out = os.path.join(os.path.dirname(args.out), "test.jsonl")
    with open(args.out) as f:
        records = [json.loads(line) for line in f if line.strip()]
    done = done_keys(test_out)
    for rec in records:
        if any(rec.get(k) not in (v if isinstance(v, list) else [v]) for k, v in want.items()):
            continue
        if run_key(rec) in done:
            continue
        small = keras.models.load_model(os.path.join(models_dir, model_name(run_key(rec))), compile=False)
        out = {k: rec[k] for k in ("seed", "budget_type", "budget", "method", "search_epochs", "total_epochs", "kd")}
        out["dense_epochs"] = rec["dense_epochs"]
        out["val"] = rec["val"]
        out["test"] = evaluate(small, data, "test")
        append(test_out, out)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
