"""The ChipNet pipeline as library code: pretrain dense -> prune -> strip + fine-tune -> export.

``recipes/chipnet.py`` is the thin absl entry point; tests call :func:`run` directly.
Every stage reads what the previous one wrote under ``model_dir``:

    dense.keras       pretrain  (the dense model)
    pruned.keras      prune     (the wrapped model: gates, controller, schedule state)
    masks.npz         prune     (budget-aware hard masks; or --masks_from)
    stripped.keras    finetune  (the physically smaller model, fine-tuned)
    model.tflite, model_int8.tflite, report.json, report.png   export / prune
    logs/<stage>/     TensorBoard event files; logs/<stage>_history.json per-epoch logs
    backup/<stage>/   BackupAndRestore state while a stage runs (removed when it finishes)

Defaults (the reference implementation's, except the search's, which are
``prune_low_budget``'s: no crispness loss): pruning with AdamW, lr 1e-3, weight decay
1e-3 on weights and none on the mask logits, budget weight 30, 20 epochs, keeping the
epoch whose hard-masked network validates best; fine-tuning with SGD
momentum 0.9, lr 0.05, weight decay 1e-3, step decay (x0.1 at 50% and 75% of the epochs).
"""

import json
import os
import shutil
import tempfile

import numpy as np

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.io import write_json
from recipes import RecipeError, data, plots, training
from recipes.config import (
    STAGES,
    STRATEGIES,
    Config,
    barrier,
    config_dict,
    default_model_dir,
    is_chief,
    make_strategy,
    path,
    run_signature,
    say,
)

_backed_up_epochs = training.backed_up_epochs  # the tests' name for it


def build_model(config):
    """The dense model of ``config``: :func:`chipnet_tf.architectures.build` for its dataset,
    loaded into Keras 3 when ``config.keras`` is 3 (same architecture, same initial weights)."""
    shape, classes = data.info(config.dataset)
    try:
        model = architectures.build(
            config.model, **{"num_classes": classes, "input_shape": shape, **config.model_kwargs}
        )
    except (ValueError, TypeError) as e:
        raise RecipeError(f"--model={config.model}: {e}") from e
    return _to_keras3(model) if config.keras == 3 else model


def _to_keras3(model):
    """The tf_keras ``model`` as a Keras 3 model, through its HDF5 file (which Keras 3 reads)."""
    import keras as keras3

    with tempfile.TemporaryDirectory() as tmp:
        filename = os.path.join(tmp, "dense.h5")
        model.save(filename)
        try:
            return keras3.models.load_model(filename, compile=False)
        except Exception as e:  # noqa: BLE001 - what Keras 3 cannot read, said in one line
            raise RecipeError(f"--model={model.name} does not load into Keras 3 ({type(e).__name__}: {e}).") from None


def _test_dataset(config):
    return data.make_dataset(config.dataset, "test", config.batch_size, config.data_dir, shuffle=False)


def _accuracy(model, config):
    return training.accuracy(model, config, _test_dataset(config))


def pretrain(config):
    K = config.keras_module()
    K.utils.set_random_seed(config.seed)
    with config.distribution().scope():
        model = build_model(config)
        opt = K.optimizers.SGD(config.pretrain_lr, momentum=0.9, nesterov=True)
        model.compile(opt, training.loss(config), metrics=["accuracy"])
    history = training.fit(model, config, "pretrain", config.pretrain_epochs)
    training.save(model, path(config, "dense.keras"), config)
    return {"dense_accuracy": _accuracy(model, config), "pretrain_history": history}


def _load(config, name):
    filename = path(config, name)
    if not os.path.exists(filename):
        stage = {"dense.keras": "pretrain", "masks.npz": "prune", "stripped.keras": "finetune"}.get(name, "prune")
        raise RecipeError(f"{filename} does not exist: run --stage={stage} first (or --stage=all).")
    if name.endswith(".npz"):
        return chipnet_tf.load_masks(filename)
    return config.keras_module().models.load_model(filename, compile=False)


def prune(config):
    K = config.keras_module()
    K.utils.set_random_seed(config.seed)
    with config.distribution().scope():
        dense = _load(config, "dense.keras")
    if config.masks_from:
        try:
            masks = chipnet_tf.load_masks(config.masks_from)
            chipnet_tf.strip_pruning(dense, masks=masks)  # validates them against this architecture
        except (OSError, ValueError) as e:
            raise RecipeError(f"--masks_from={config.masks_from}: {e}") from e
        if is_chief(config):
            report = chipnet_tf.budget_report(dense, masks=masks)
            chipnet_tf.save_masks(path(config, "masks.npz"), masks)
            plots.write_report_png(path(config, "report.png"), report)
            say(config, report)
        return {"masks_from": config.masks_from}
    with config.distribution().scope():
        pruned = chipnet_tf.prune_low_budget(
            dense,
            budget=config.budget,
            budget_type=config.budget_type,
            latency_table=config.latency_table,
            budget_weight=config.budget_weight,
            crispness_weight=config.crispness_weight,
        )
        opt = K.optimizers.AdamW(config.prune_lr, weight_decay=config.prune_weight_decay)
        opt.exclude_from_weight_decay(var_names=["zeta"])
        pruned.compile(opt, training.loss(config), metrics=["accuracy"])
    summaries = path(config, "logs/prune_chipnet") if is_chief(config) else tempfile.mkdtemp()
    callbacks = [chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries(summaries)]
    _, validation_split = data.split_names(config.validation_fraction)
    if validation_split:
        validation = data.make_dataset(
            config.dataset, validation_split, config.batch_size, config.data_dir, shuffle=False
        )
        best_file = path(config, "backup/prune/best_hard.npz")  # every worker reads it, the chief writes it
        train_split = data.split_names(config.validation_fraction)[0]
        calibration = data.make_dataset(config.dataset, train_split, config.batch_size, config.data_dir, shuffle=False)
        callbacks.append(
            chipnet_tf.BestHardMasks(
                validation,
                round_to=config.round_to,
                filepath=best_file,
                write=is_chief(config),
                calibration_data=calibration,
            )
        )
    try:
        history = training.fit(
            pruned,
            config,
            "prune",
            config.prune_epochs,
            callbacks=callbacks,
            steps_per_epoch=config.prune_steps_per_epoch,
        )
    finally:
        if not is_chief(config):
            shutil.rmtree(summaries, ignore_errors=True)
    training.save(pruned, path(config, "pruned.keras"), config)
    masks = chipnet_tf.get_masks(pruned, round_to=config.round_to)
    if is_chief(config):
        chipnet_tf.save_masks(path(config, "masks.npz"), masks)
        report = chipnet_tf.budget_report(dense, masks=masks)
        plots.write_report_png(path(config, "report.png"), report, history, config.budget, config.budget_type)
        if config.verbose:  # the report with the soft counts, only when someone reads it
            say(config, chipnet_tf.budget_report(pruned, masks=masks))
    out = {"prune_history": history}
    if validation_split and config.prune_epochs:
        out["best_prune_epoch"] = int(callbacks[-1].best_epoch) + 1
    return out


def finetune(config):
    K = config.keras_module()
    K.utils.set_random_seed(config.seed)
    masks = _load(config, "masks.npz")
    # The pruned model's weights (trained with the gates), else the dense ones (mask transfer).
    source = "dense.keras" if config.masks_from or not os.path.exists(path(config, "pruned.keras")) else "pruned.keras"
    # Loaded outside the strategy scope: it is only a source of weights (and tf_keras cannot
    # load a wrapped model's sync-on-read variables into a multi-worker scope from .keras).
    trained = _load(config, source)
    with config.distribution().scope():
        small = chipnet_tf.strip_pruning(trained, masks=masks)
        opt = K.optimizers.SGD(config.finetune_lr, momentum=0.9, weight_decay=config.finetune_weight_decay or None)
        small.compile(opt, training.loss(config), metrics=["accuracy"])
    epochs = max(1, config.finetune_epochs)

    def lr(epoch):
        return config.finetune_lr * (0.1 ** int(epoch >= 0.5 * epochs)) * (0.1 ** int(epoch >= 0.75 * epochs))

    history = training.fit(small, config, "finetune", config.finetune_epochs, [K.callbacks.LearningRateScheduler(lr)])
    training.save(small, path(config, "stripped.keras"), config)
    return {"stripped_accuracy": _accuracy(small, config), "finetune_history": history}


def export(config):
    from chipnet_tf import export as export_lib

    if not is_chief(config):
        return {}
    if config.backend() not in (None, "tensorflow"):
        raise RecipeError(
            f"TFLite conversion needs Keras 3's TensorFlow backend; this run's is {config.backend()}: run "
            f"KERAS_BACKEND=tensorflow python -m recipes.chipnet --keras=3 --stage=export with the same flags."
        )
    dense = _load(config, "dense.keras")
    small = _load(config, "stripped.keras")
    masks = _load(config, "masks.npz")
    x_test = np.concatenate([x.numpy() for x, _ in _test_dataset(config).take(4)])
    calib = np.concatenate(
        [x.numpy() for x, _ in data.make_dataset(config.dataset, "train", 100, config.data_dir).take(2)]
    )
    float_bytes = export_lib.to_tflite(small, path(config, "model.tflite"), verify_samples=x_test[:50])
    int8_bytes = export_lib.to_tflite(
        small, path(config, "model_int8.tflite"), quantization="int8", representative_dataset=calib
    )
    report = chipnet_tf.budget_report(dense, masks=masks)
    return {
        "dense": {"params": dense.count_params(), "flops": chipnet_tf.count_flops(dense)},
        "stripped": {"params": small.count_params(), "flops": chipnet_tf.count_flops(small)},
        "predicted_kept": {t: row["kept"] for t, row in report.totals.items()},
        "tflite_bytes": {"float32": len(float_bytes), "int8": len(int8_bytes)},
        "int8_top1_agreement": export_lib.verify_tflite(int8_bytes, small, x_test).top1_agreement,
    }


_STAGE_FUNCTIONS = {"pretrain": pretrain, "prune": prune, "finetune": finetune, "export": export}
_STAGE_OF_KEY = {
    "dense_accuracy": "pretrain",
    "pretrain_history": "pretrain",
    "prune_history": "prune",
    "best_prune_epoch": "prune",
    "masks_from": "prune",
    "stripped_accuracy": "finetune",
    "finetune_history": "finetune",
    "dense": "export",
    "stripped": "export",
    "predicted_kept": "export",
    "tflite_bytes": "export",
    "int8_top1_agreement": "export",
}


_STAGE_TITLES = {
    "pretrain": lambda c: f"dense {c.model} on {c.dataset}, {c.pretrain_epochs} epochs",
    "prune": lambda c: (
        f"masks from {c.masks_from}"
        if c.masks_from
        else f"ChipNet to {c.budget:g} of {c.budget_type}, {c.prune_epochs} epochs"
    ),
    "finetune": lambda c: f"strip with the masks, fine-tune {c.finetune_epochs} epochs",
    "export": lambda c: "TFLite float32 (verified in LiteRT) and int8",
}


def _snapshot(model_dir):
    """``{name: mtime}`` of the run's top-level files, and of ``logs/`` as a whole."""
    out = {}
    for entry in os.scandir(model_dir):
        if entry.is_file() and not entry.name.startswith("."):
            out[entry.name] = entry.stat().st_mtime_ns
        elif entry.name == "logs":
            out["logs/"] = max(
                (os.stat(os.path.join(d, f)).st_mtime_ns for d, _, files in os.walk(entry.path) for f in files),
                default=0,
            )
    return out


def summary(report):
    """The end of a run in a few lines: accuracies, params, FLOPs and TFLite sizes where known."""
    lines = []
    dense, small = report.get("dense", {}), report.get("stripped", {})

    def row(name, accuracy, sizes, reference=None):
        parts = [f"{name:<9}"]
        if accuracy is not None:
            parts.append(f"test accuracy {accuracy:.4f}")
        for key in ("params", "flops"):
            if key in sizes:
                share = f" ({sizes[key] / reference[key]:.1%})" if reference and key in reference else ""
                parts.append(f"{sizes[key]:,} {'FLOPs' if key == 'flops' else key}{share}")
        return "  ".join(parts)

    if "dense_accuracy" in report or dense:
        lines.append(row("dense", report.get("dense_accuracy"), dense))
    if "best_prune_epoch" in report:
        lines.append(f"{'pruned':<9}  kept pruning epoch {report['best_prune_epoch']} (best hard-masked validation)")
    if "stripped_accuracy" in report or small:
        lines.append(row("stripped", report.get("stripped_accuracy"), small, dense))
    if "tflite_bytes" in report:
        sizes = report["tflite_bytes"]
        lines.append(
            f"{'TFLite':<9}  float32 {sizes['float32']:,} bytes, int8 {sizes['int8']:,} bytes "
            f"(int8 top-1 agreement with Keras {report['int8_top1_agreement']:.2%})"
        )
    return lines


def _check_writable(model_dir):
    try:
        os.makedirs(model_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=model_dir, prefix=".write_test"):
            pass
    except OSError as e:
        raise RecipeError(f"model_dir {model_dir!r} is not writable: {e.strerror or e}.") from None


def _remove_stale_temporaries(model_dir):
    """Temporary files of a killed run (atomic writes rename them; a SIGKILL leaves them)."""
    for directory in (model_dir, os.path.join(model_dir, "logs")):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name.endswith(".tmp.keras") or (name.startswith(".") and name.endswith(".tmp")):
                target = os.path.join(directory, name)
                shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)


def run(config):
    """Runs ``config.stage`` (or all of them); writes and returns ``report.json``'s content.

    ``stage="all"`` resumes: a stage that finished under the same configuration is not run
    again, and a stage that was interrupted continues from its last epoch backup. Unless
    ``config.verbose`` is 0 it prints a header per stage, the budget table, the files each
    stage wrote and a final summary. A run that fails before writing any file removes the
    ``model_dir`` it created.
    """
    config.validate()
    if config.model_dir is None:
        config.model_dir = default_model_dir(config)
    config.distribution()  # multi-worker strategies must exist before any other TF op
    created = not os.path.exists(config.model_dir)
    try:
        return _run(config)
    except BaseException:
        if created and is_chief(config) and not any(files for _, _, files in os.walk(config.model_dir)):
            shutil.rmtree(config.model_dir, ignore_errors=True)
        raise


def _run(config):
    _check_writable(config.model_dir)
    if is_chief(config):
        _remove_stale_temporaries(config.model_dir)
    report_path = path(config, "report.json")
    report = {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    if {k: v for k, v in report.get("config", {}).items() if k not in ("stage", "verbose", "strategy")} != (
        run_signature(config)
    ):
        report = {}  # another configuration: nothing it wrote or finished counts
    order = list(_STAGE_FUNCTIONS)
    stages = order if config.stage == "all" else [config.stage]
    no_tflite = config.stage == "all" and config.backend() not in (None, "tensorflow")
    if no_tflite:  # TFLite conversion needs TensorFlow's Keras 3 backend: a separate run does it
        stages = stages[:-1]
    for number, stage in enumerate(stages, 1):
        header = f"== {number}/{len(stages)} {stage}"
        if config.stage == "all" and stage in report.get("completed", []):
            say(config, f"{header}: already finished in {config.model_dir} with these flags; skipping")
            continue
        say(config, f"{header}: {_STAGE_TITLES[stage](config)}")
        before = _snapshot(config.model_dir)
        later = order[order.index(stage) + 1 :]
        if is_chief(config):  # running a stage makes what the later ones wrote or backed up stale
            for name in later:
                shutil.rmtree(path(config, os.path.join("backup", name)), ignore_errors=True)
        for key in [k for k in report if _STAGE_OF_KEY.get(k) in [stage, *later]]:
            del report[key]
        report.update(_STAGE_FUNCTIONS[stage](config))
        report["config"] = config_dict(config)
        report["completed"] = [s for s in report.get("completed", []) if order.index(s) < order.index(stage)]
        report["completed"].append(stage)
        if is_chief(config):
            write_json(report_path, report)
            after = _snapshot(config.model_dir)
            written = sorted(name for name, mtime in after.items() if before.get(name) != mtime)
            say(config, f"wrote {len(written)} files to {config.model_dir}: {', '.join(written)}")
        barrier(config)  # the next stage reads what the chief just wrote
    lines = summary(report)
    if no_tflite:
        lines.append(
            f"export skipped: TFLite conversion needs Keras 3's TensorFlow backend (this run's is "
            f"{config.backend()}); run KERAS_BACKEND=tensorflow python -m recipes.chipnet --keras=3 --stage=export "
            "with the same flags"
        )
    if lines:
        say(config, "\n".join([f"== summary (all numbers in {report_path})", *lines]))
    return report


__all__ = ["STAGES", "STRATEGIES", "Config", "build_model", "make_strategy", "run"]
