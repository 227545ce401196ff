"""How a recipe stage trains and saves, in either Keras: a resumable, logged ``fit`` and
atomic saves.

A stage's ``fit`` backs up every epoch (``BackupAndRestore``: a TensorFlow checkpoint in
tf_keras, ``latest.weights.h5`` and ``training_metadata.json`` in Keras 3), writes its
per-epoch logs to ``logs/<stage>_history.json`` and TensorBoard files to ``logs/<stage>/``,
and draws its data seeded per epoch, so a killed run continues from its last backed-up
epoch with the batches it would have seen.
"""

import json
import os
import shutil
import tempfile

from absl import logging as _logging

import chipnet_tf
from chipnet_tf.compat import tf
from chipnet_tf.io import write_json
from recipes import data
from recipes.config import barrier, is_chief, path, run_signature, say

_KERAS3_METADATA, _KERAS3_WEIGHTS = "training_metadata.json", "latest.weights.h5"


def loss(config):
    return config.keras_module().losses.SparseCategoricalCrossentropy(from_logits=True)


_EPOCH_LOG_CLASSES = {}


def epoch_log(config, filename, initial_epoch, write):
    """A callback writing per-epoch logs to ``filename`` atomically, a callback of the run's Keras.

    Resumed runs keep the epochs before the restored one, so the history (and report.png)
    covers the whole run. Listed before ``BackupAndRestore``: an epoch's row is written before
    its backup, and rows past the backup are dropped on resume.
    """
    K = config.keras_module()
    if K not in _EPOCH_LOG_CLASSES:

        class EpochLog(K.callbacks.Callback):
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

        _EPOCH_LOG_CLASSES[K] = EpochLog
    return _EPOCH_LOG_CLASSES[K](filename, initial_epoch, write)


def backed_up_epochs(backup_dir):
    """Epochs a ``BackupAndRestore`` backup under ``backup_dir`` holds (0 without one), in
    either Keras' format."""
    metadata = os.path.join(backup_dir, _KERAS3_METADATA)
    if os.path.exists(metadata):
        with open(metadata) as f:
            return int(json.load(f)["epoch"])
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if latest is None:
        return 0
    saved = tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")
    return int(saved) + 1


def fit(model, config, stage, epochs, callbacks=(), steps_per_epoch=None):
    """``model.fit`` for one stage: resumable (``BackupAndRestore``), logged, epoch-seeded data.

    Returns the per-epoch history of the whole stage (including epochs before a resume).
    """
    if epochs == 0:
        return {}
    K = config.keras_module()
    chief = is_chief(config)
    backup_dir = path(config, os.path.join("backup", stage))
    signature_file = os.path.join(backup_dir, "run.json")
    if chief and os.path.exists(signature_file):
        with open(signature_file) as f:
            if json.load(f) != run_signature(config):
                _logging.warning("Discarding the %s backup in %s: it is from another configuration.", stage, backup_dir)
                shutil.rmtree(backup_dir)
    barrier(config)  # every worker sees the same backup
    start = backed_up_epochs(backup_dir)
    if start:
        say(config, f"resuming {stage} at epoch {start + 1} from {backup_dir}")
    log = epoch_log(config, path(config, os.path.join("logs", f"{stage}_history.json")), start, chief)
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
        write_json(signature_file, run_signature(config))
    log_dir = path(config, os.path.join("logs", stage)) if chief else tempfile.mkdtemp()
    callbacks = [
        *callbacks,
        log,
        K.callbacks.BackupAndRestore(backup_dir),
        K.callbacks.TensorBoard(log_dir),
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
    say(config, f"{stage} had finished its epochs before it was interrupted; restoring them")
    if config.keras == 3:
        model.load_weights(os.path.join(backup_dir, _KERAS3_WEIGHTS))
    else:
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


def save(model, target, config):
    """Saves atomically (a temporary sibling renamed over ``target``), without optimizer state
    (the next stage compiles its own optimizer; BackupAndRestore keeps the state for resuming).

    Under a multi-worker strategy every worker saves (reading synced variables is collective)
    but only the chief writes ``target``; the others write to a temporary directory.
    """
    optimizer = model.optimizer
    fresh = type(optimizer).from_config(optimizer.get_config()) if optimizer is not None else None
    # same optimizer settings, no slot state
    model.compile(fresh if fresh is not None else "rmsprop", loss(config), metrics=["accuracy"])
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


def accuracy(model, config, dataset):
    """Top-1 accuracy of ``model`` on ``dataset``."""
    model.compile(loss=loss(config), metrics=["accuracy"])
    return float(model.evaluate(dataset, verbose=0, return_dict=True)["accuracy"])
