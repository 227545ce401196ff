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

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
from absl import logging

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.compat import keras, tf
from chipnet_tf.io import write_json
from recipes import RecipeError, data, plots

STAGES = ("pretrain", "prune", "finetune", "export", "all")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


_STRATEGIES = {}


def make_strategy(name):
    """The tf.distribute strategy for ``--strategy`` (multi_worker reads TF_CONFIG).

    One instance per process and name: two MirroredStrategy instances in one process reuse
    the same collective keys and abort each other's all-reduces. Without GPUs, mirrored
    replicas reduce through one device (no collective ops; NCCL is for GPUs).
    """
    if name not in STRATEGIES:
        raise RecipeError(f"Unknown strategy {name!r}. Accepted: {', '.join(STRATEGIES)}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        if name == "mirrored":
            ops = None if tf.config.list_logical_devices("GPU") else tf.distribute.ReductionToOneDevice()
            _STRATEGIES[name] = tf.distribute.MirroredStrategy(cross_device_ops=ops)
        elif name == "multi_worker":
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            _STRATEGIES[name] = tf.distribute.TPUStrategy(resolver)
    return _STRATEGIES[name]


@dataclasses.dataclass
class Config:
    """Everything a run needs; the absl flags of ``recipes/chipnet.py`` map onto it."""

    stage: str = "all"
    dataset: str = "digits"
    data_dir: str = None
    model: str = "small_cnn"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    model_dir: str = None  # default: saved_models/runs/<dataset>_<model>
    budget: float = 0.25
    budget_type: str = "flops"
    latency_table: str = None  # .json from chipnet-tf profile; needed by budget_type="latency"
    batch_size: int = 64
    seed: int = 0
    pretrain_epochs: int = 30
    pretrain_lr: float = 0.05
    prune_epochs: int = 20
    prune_lr: float = 1e-3
    prune_steps_per_epoch: int = None  # None: steps_per_epoch
    validation_fraction: float = 0.1  # held out of train; pruning keeps the best hard-masked epoch
    prune_weight_decay: float = 1e-3
    budget_weight: float = 30.0
    crispness_weight: float = 0.0  # prune_low_budget's default (the paper: 10)
    finetune_epochs: int = 30
    finetune_lr: float = 0.05
    finetune_weight_decay: float = 1e-3
    round_to: int = 1
    strategy: str = "default"
    masks_from: str = None
    steps_per_epoch: int = None  # training steps per epoch; None = one pass (more repeats the split)
    augment: data.Augment = dataclasses.field(default_factory=data.Augment)
    verbose: int = 2
    callbacks: list = dataclasses.field(default_factory=list)  # extra Keras callbacks for every fit

    def distribution(self):
        """The tf.distribute strategy of this run (created once)."""
        if getattr(self, "_strategy", None) is None:
            self._strategy = make_strategy(self.strategy)
        return self._strategy

    def validate(self):
        if self.stage not in STAGES:
            raise RecipeError(f"Unknown stage {self.stage!r}. Accepted: {', '.join(STAGES)}.")
        data.check_dataset(self.dataset)
        if self.strategy not in STRATEGIES:
            raise RecipeError(f"Unknown strategy {self.strategy!r}. Accepted: {', '.join(STRATEGIES)}.")
        if not (isinstance(self.budget, (int, float)) and 0 < self.budget <= 1):
            raise RecipeError(f"budget must be in (0, 1]. Received: {self.budget!r}")
        chipnet_tf.budgets.check_budget_type(self.budget_type)
        if self.budget_type == "latency" and not self.latency_table:
            raise RecipeError(
                "--budget_type=latency needs --latency_table=PATH (chipnet-tf profile MODEL --out=PATH on the device)"
            )
        if not (isinstance(self.validation_fraction, (int, float)) and 0 <= self.validation_fraction < 0.5):
            raise RecipeError(f"validation_fraction must be in [0, 0.5). Received: {self.validation_fraction!r}")
        if self.augment.mixes_labels:
            raise RecipeError("CutMix/MixUp make one-hot labels; the recipes train with sparse labels. Turn them off.")
        for name in ("steps_per_epoch", "prune_steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise RecipeError(f"{name} must be a positive integer or None. Received: {value!r}")
        for name in ("batch_size", "pretrain_epochs", "prune_epochs", "finetune_epochs", "round_to"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name in ("batch_size", "round_to") else 0):
                raise RecipeError(
                    f"{name} must be a non-negative integer (batch_size, round_to >= 1). Received: {value!r}"
                )
        return self


def default_model_dir(config):
    """``saved_models/runs/<dataset>_<model>`` (git ignores ``saved_models/runs/``)."""
    return os.path.join("saved_models", "runs", f"{config.dataset}_{config.model}")


def path(config, name):
    return os.path.join(config.model_dir, name)


def is_chief(config):
    """Whether this process writes the run's files (always, except non-chief workers)."""
    return bool(config.distribution().extended.should_checkpoint)


def build_model(config):
    """The dense model of ``config``: :func:`chipnet_tf.architectures.build` for its dataset."""
    shape, classes = data.info(config.dataset)
    try:
        return architectures.build(
            config.model, **{"num_classes": classes, "input_shape": shape, **config.model_kwargs}
        )
    except (ValueError, TypeError) as e:
        raise RecipeError(f"--model={config.model}: {e}") from e


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _test_dataset(config):
    return data.make_dataset(config.dataset, "test", config.batch_size, config.data_dir, shuffle=False)


def config_dict(config):
    """The configuration as JSON-ready values (without the extra callbacks)."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "callbacks"}
    out["augment"] = dataclasses.asdict(config.augment)
    return json.loads(json.dumps(out))


def _run_signature(config):
    """What must not change for a run to be resumed: all but the stage, verbosity and strategy."""
    out = config_dict(config)
    for key in ("stage", "verbose", "strategy"):
        out.pop(key)
    return out


def _backed_up_epochs(backup_dir):
    """Epochs a ``BackupAndRestore`` checkpoint under ``backup_dir`` holds (0 without one)."""
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if latest is None:
        return 0
    saved = tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")
    return int(saved) + 1


class _EpochLog(keras.callbacks.Callback):
    """Per-epoch logs of a stage in ``logs/<stage>_history.json``, written atomically.

    Resumed runs keep the epochs before the restored one, so the history (and report.png)
    covers the whole run. Listed before ``BackupAndRestore``: an epoch's row is written before
    its backup, and rows past the backup are dropped on resume.
    """

    def __init__(self, filename, initial_epoch, write):
        super().__init__()
        self.filename, self.write = filename, write
        self.rows = []
        if initial_epoch and os.path.exists(filename):
            with open(filename) as f:
                self.rows = [r for r in json.load(f) if r["epoch"] < initial_epoch]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": int(epoch), **{k: float(v) for k, v in (logs or {}).items()}})
        if self.write:
            write_json(self.filename, self.rows)

    def history(self):
        keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
        return {k: [r[k] for r in self.rows] for k in keys}


def _fit(model, config, stage, epochs, callbacks=(), steps_per_epoch=None):
    """``model.fit`` for one stage: resumable (``BackupAndRestore``), logged, epoch-seeded data.

    Returns the per-epoch history of the whole stage (including epochs before a resume).
    """
    if epochs == 0:
        return {}
    chief = is_chief(config)
    backup_dir = path(config, os.path.join("backup", stage))
    signature_file = os.path.join(backup_dir, "run.json")
    if chief and os.path.exists(signature_file):
        with open(signature_file) as f:
            if json.load(f) != _run_signature(config):
                logging.warning("Discarding the %s backup in %s: it is from another configuration.", stage, backup_dir)
                shutil.rmtree(backup_dir)
    barrier(config)  # every worker sees the same backup
    start = _backed_up_epochs(backup_dir)
    if start:
        _say(config, f"resuming {stage} at epoch {start + 1} from {backup_dir}")
    log = _EpochLog(path(config, os.path.join("logs", f"{stage}_history.json")), start, chief)
    if start >= epochs:
        return _finish_from_backup(model, config, stage, backup_dir, callbacks, log)
    train, steps = data.make_train_dataset(
        config.dataset,
        config.batch_size,
        epochs,
        config.data_dir,
        augment=config.augment,
        seed=config.seed,
        initial_epoch=start,
        steps_per_epoch=steps_per_epoch or config.steps_per_epoch,
        drop_remainder=config.strategy in ("multi_worker", "tpu"),  # same static batch on every worker
        split=data.split_names(config.validation_fraction)[0],
    )
    if chief:  # after the data loaded: a run that fails on missing data leaves no files
        os.makedirs(backup_dir, exist_ok=True)
        write_json(signature_file, _run_signature(config))
    log_dir = path(config, os.path.join("logs", stage)) if chief else tempfile.mkdtemp()
    callbacks = [
        *callbacks,
        log,
        keras.callbacks.BackupAndRestore(backup_dir),
        keras.callbacks.TensorBoard(log_dir),
        *config.callbacks,
    ]
    try:
        model.fit(train, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=config.verbose)
    finally:
        if not chief:
            shutil.rmtree(log_dir, ignore_errors=True)
    barrier(config)  # the other workers are done with their backup files
    if chief:
        shutil.rmtree(backup_dir, ignore_errors=True)
    return log.history()


def _finish_from_backup(model, config, stage, backup_dir, callbacks, log):
    """The run was killed after its last epoch's backup but before fit ended: restore that
    state (and the best hard-masked epoch) instead of training again."""
    _say(config, f"{stage} had finished its epochs before it was interrupted; restoring them")
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    for callback in callbacks:
        if isinstance(callback, chipnet_tf.BestHardMasks):
            callback.set_model(model)
            callback.on_train_begin()
            callback.on_train_end()
    barrier(config)
    if is_chief(config):
        shutil.rmtree(backup_dir, ignore_errors=True)
    return log.history()


def barrier(config):
    """Multi-worker runs: every worker waits here (a one-number all-reduce), so files the
    chief wrote before it exist for all after it. A no-op on one machine."""
    if config.strategy != "multi_worker":
        return
    strategy = config.distribution()
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def _save(model, target, config):
    """Saves atomically (a temporary sibling renamed over ``target``), without optimizer state
    (the next stage compiles its own optimizer; BackupAndRestore keeps the state for resuming).

    Under a multi-worker strategy every worker saves (reading synced variables is collective)
    but only the chief writes ``target``; the others write to a temporary directory.
    """
    optimizer = model.optimizer
    fresh = type(optimizer).from_config(optimizer.get_config()) if optimizer is not None else None
    model.compile(
        fresh if fresh is not None else "rmsprop", _loss(), metrics=["accuracy"]
    )  # same optimizer settings, no slot state
    if not is_chief(config):
        tmp_dir = tempfile.mkdtemp()
        try:
            model.save(os.path.join(tmp_dir, os.path.basename(target)))
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return
    tmp = target + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, target)


def _accuracy(model, config):
    model.compile(loss=_loss(), metrics=["accuracy"])
    return float(model.evaluate(_test_dataset(config), verbose=0, return_dict=True)["accuracy"])


def pretrain(config):
    keras.utils.set_random_seed(config.seed)
    with config.distribution().scope():
        model = build_model(config)
        opt = keras.optimizers.SGD(config.pretrain_lr, momentum=0.9, nesterov=True)
        model.compile(opt, _loss(), metrics=["accuracy"])
    history = _fit(model, config, "pretrain", config.pretrain_epochs)
    _save(model, path(config, "dense.keras"), config)
    return {"dense_accuracy": _accuracy(model, config), "pretrain_history": history}


def _load(config, name):
    filename = path(config, name)
    if not os.path.exists(filename):
        stage = {"dense.keras": "pretrain", "masks.npz": "prune", "stripped.keras": "finetune"}.get(name, "prune")
        raise RecipeError(f"{filename} does not exist: run --stage={stage} first (or --stage=all).")
    if name.endswith(".npz"):
        return chipnet_tf.load_masks(filename)
    return keras.models.load_model(filename, compile=False)


def prune(config):
    keras.utils.set_random_seed(config.seed)
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
            _say(config, report)
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
        opt = keras.optimizers.AdamW(config.prune_lr, weight_decay=config.prune_weight_decay)
        opt.exclude_from_weight_decay(var_names=["zeta"])
        pruned.compile(opt, _loss(), metrics=["accuracy"])
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
        history = _fit(
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
    _save(pruned, path(config, "pruned.keras"), config)
    masks = chipnet_tf.get_masks(pruned, round_to=config.round_to)
    if is_chief(config):
        chipnet_tf.save_masks(path(config, "masks.npz"), masks)
        report = chipnet_tf.budget_report(dense, masks=masks)
        plots.write_report_png(path(config, "report.png"), report, history, config.budget, config.budget_type)
        if config.verbose:  # the report with the soft counts, only when someone reads it
            _say(config, chipnet_tf.budget_report(pruned, masks=masks))
    out = {"prune_history": history}
    if validation_split and config.prune_epochs:
        out["best_prune_epoch"] = int(callbacks[-1].best_epoch) + 1
    return out


def finetune(config):
    keras.utils.set_random_seed(config.seed)
    masks = _load(config, "masks.npz")
    # The pruned model's weights (trained with the gates), else the dense ones (mask transfer).
    source = "dense.keras" if config.masks_from or not os.path.exists(path(config, "pruned.keras")) else "pruned.keras"
    # Loaded outside the strategy scope: it is only a source of weights (and tf_keras cannot
    # load a wrapped model's sync-on-read variables into a multi-worker scope from .keras).
    trained = _load(config, source)
    with config.distribution().scope():
        small = chipnet_tf.strip_pruning(trained, masks=masks)
        opt = keras.optimizers.SGD(config.finetune_lr, momentum=0.9, weight_decay=config.finetune_weight_decay or None)
        small.compile(opt, _loss(), metrics=["accuracy"])
    epochs = max(1, config.finetune_epochs)

    def lr(epoch):
        return config.finetune_lr * (0.1 ** int(epoch >= 0.5 * epochs)) * (0.1 ** int(epoch >= 0.75 * epochs))

    history = _fit(small, config, "finetune", config.finetune_epochs, [keras.callbacks.LearningRateScheduler(lr)])
    _save(small, path(config, "stripped.keras"), config)
    return {"stripped_accuracy": _accuracy(small, config), "finetune_history": history}


def export(config):
    from chipnet_tf import export as export_lib

    if not is_chief(config):
        return {}
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


def _say(config, text):
    """What a run tells its user on stdout (stage headers, tables, files, summary); verbose=0 is silent."""
    if config.verbose:
        print(text, flush=True)


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
        _run_signature(config)
    ):
        report = {}  # another configuration: nothing it wrote or finished counts
    order = list(_STAGE_FUNCTIONS)
    stages = order if config.stage == "all" else [config.stage]
    for number, stage in enumerate(stages, 1):
        header = f"== {number}/{len(stages)} {stage}"
        if config.stage == "all" and stage in report.get("completed", []):
            _say(config, f"{header}: already finished in {config.model_dir} with these flags; skipping")
            continue
        _say(config, f"{header}: {_STAGE_TITLES[stage](config)}")
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
            _say(config, f"wrote {len(written)} files to {config.model_dir}: {', '.join(written)}")
        barrier(config)  # the next stage reads what the chief just wrote
    lines = summary(report)
    if lines:
        _say(config, "\n".join([f"== summary (all numbers in {report_path})", *lines]))
    return report


__all__ = ["STAGES", "Config", "build_model", "run"]
