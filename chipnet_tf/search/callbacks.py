"""Keras callbacks: the required schedule stepper, TensorBoard summaries, and best-epoch
selection on the hard-masked network (with BatchNorm recalibration)."""

import json
import os
import warnings

import numpy as np

from chipnet_tf.compat import keras, tf
from chipnet_tf.io import atomic_write
from chipnet_tf.search.batch_norm import check_steps, recalibrate_batch_norm, restore_batch_norm
from chipnet_tf.search.layers.controller import require_controllers
from chipnet_tf.search.masks import apply_masks, get_masks
from chipnet_tf.validators import check_round_to


def _sync(model):
    """Keras 3 on JAX keeps the variables outside the model during ``fit``: they are written
    back before a callback reads or assigns one, and the trainer then reads them again for
    the next step. A no-op elsewhere."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances ChipNet's schedule (beta, gamma, steepness) every step. Required.

    With a ``"progress"`` schedule (:meth:`~chipnet_tf.HeavisideSchedule.progress`; the default
    is the paper's per-epoch one) the search's length is the ``fit`` it runs in:
    ``epochs * steps_per_epoch`` optimizer steps (``fit`` knows both for arrays and for
    datasets of known size; otherwise pass ``steps_per_epoch`` to ``fit`` or
    ``total_steps`` here). The schedule then depends only on the fraction of those steps
    done, not on how they are cut into epochs. One ``fit`` is one search: a second ``fit``
    on the same model continues at the end of the schedule.

    A search shorter than ``min_steps`` optimizer steps (default: the schedule's
    :meth:`~chipnet_tf.HeavisideSchedule.minimum_steps`) is warned about, naming the steps
    it got and the steps it needs: its soft budget is not expected to converge.

    The schedule state lives in the model (its controller's weights), so a model saved and
    loaded mid-run resumes where it stopped.

    Example:
        >>> pruned.fit(x, y, epochs=20, callbacks=[chipnet_tf.UpdatePruningStep()])  # doctest: +SKIP

    In a custom training loop pass ``total_steps`` and call ``on_train_begin()`` once,
    ``on_train_batch_begin(i)`` and ``on_train_batch_end(i)`` around each step, and
    ``on_epoch_end(epoch)``.

    Args:
        total_steps: the search's length in optimizer steps; None to take it from ``fit``.
        min_steps: below this many steps the callback warns that the search is too short.
    """

    def __init__(self, total_steps=None, min_steps=None):
        super().__init__()
        for name, value in (("total_steps", total_steps), ("min_steps", min_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None. Received: {name}={value!r}")
        self.total_steps = None if total_steps is None else int(total_steps)
        self.min_steps = None if min_steps is None else int(min_steps)
        self._ctls = []
        self._epochs = []
        self._steps = None
        self._step = 0
        self._totals = []  # per controller: the progress search's length (None: per-epoch)

    def _search_steps(self, ctl):
        if self.total_steps is not None:
            return self.total_steps
        params = getattr(self, "params", None) or {}
        if params.get("steps") and params.get("epochs"):
            return int(params["steps"]) * int(params["epochs"])
        known = int(ctl.to_numpy(ctl.total_steps))
        if known > 0:
            return known
        raise ValueError(
            "chipnet_tf.UpdatePruningStep: the search's length is unknown (fit did not report steps per "
            "epoch). Pass steps_per_epoch to fit, or UpdatePruningStep(total_steps=N)."
        )

    def on_train_begin(self, logs=None):
        self._ctls = require_controllers(self.model, "using chipnet_tf callbacks")
        self._steps = (getattr(self, "params", None) or {}).get("steps")
        # Epochs and steps are cached in Python so the per-batch hook reads no variable.
        self._epochs, self._totals = [], []
        for ctl in self._ctls:
            total = None
            if (
                ctl.schedule.unit == "progress"
                and float(ctl.to_numpy(ctl.use_hard)) == 1.0
                and int(ctl.to_numpy(ctl.total_steps))
            ):
                total = int(ctl.to_numpy(ctl.total_steps))  # fixed masks (fine-tuning): the search state stays as it is
            elif ctl.schedule.unit == "progress":
                total = self._search_steps(ctl)
                ctl.set_total_steps(total)
                self._warn_if_short(total, ctl.schedule)
            elif self._steps and (getattr(self, "params", None) or {}).get("epochs"):
                self._warn_if_short(int(self._steps) * int(self.params["epochs"]), ctl.schedule)
            step = max(0, int(ctl.to_numpy(ctl.pruning_step)))
            epoch = int(ctl.to_numpy(ctl.pruning_epoch))
            ctl.set_schedule_state(epoch, 0.0, step)
            self._epochs.append(epoch)
            self._totals.append(total)
        self._step = max(0, int(self._ctls[0].to_numpy(self._ctls[0].pruning_step))) if self._ctls else 0

    def _warn_if_short(self, total, schedule):
        needed = schedule.minimum_steps() if self.min_steps is None else self.min_steps
        if total < needed:
            hint = "" if schedule.unit == "progress" else " or a progress schedule (HeavisideSchedule.progress())"
            warnings.warn(
                f"chipnet_tf: this search has {total} optimizer steps; it needs at least {needed} for its soft "
                f"budget to converge: use more epochs, a smaller batch{hint}.",
                stacklevel=3,
            )

    def on_epoch_begin(self, epoch, logs=None):
        _sync(self.model)
        # Re-read once per epoch: a callback that runs after this one in on_train_begin
        # (BackupAndRestore) may have restored the controller's schedule state since.
        for i, ctl in enumerate(self._ctls):
            self._epochs[i] = int(ctl.to_numpy(ctl.pruning_epoch))
        if self._ctls:
            self._step = max(0, int(self._ctls[0].to_numpy(self._ctls[0].pruning_step)))

    def on_train_batch_begin(self, batch, logs=None):
        _sync(self.model)
        for ctl, epoch, total in zip(self._ctls, self._epochs, self._totals):
            if total is not None:
                ctl.set_schedule_values(ctl.schedule.position(self._step, total))
            elif self._steps:
                ctl.steepness.assign(ctl.schedule.steepness(epoch + min(batch, self._steps) / self._steps))

    def on_train_batch_end(self, batch, logs=None):
        _sync(self.model)
        self._step += 1
        for ctl in self._ctls:
            ctl.pruning_step.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        _sync(self.model)
        if logs is not None and self._ctls and "budget" not in logs:
            # A controller that cannot update metrics inside a step (Keras 3 on JAX) is read
            # here: the values at the epoch's end, not its mean.
            budget, crispness = self._ctls[0].reported_values()
            logs["budget"], logs["crispness"] = float(budget), float(crispness)
        for i, ctl in enumerate(self._ctls):
            self._epochs[i] = int(ctl.to_numpy(ctl.pruning_epoch)) + 1
            ctl.set_schedule_state(self._epochs[i])
        if logs is not None and self._ctls:
            ctl = self._ctls[0]
            logs["beta"] = float(ctl.to_numpy(ctl.beta))
            logs["gamma"] = float(ctl.to_numpy(ctl.gamma))


class PruningSummaries(keras.callbacks.Callback):
    """Writes ChipNet scalars to TensorBoard at the end of every epoch.

    Scalars: ``chipnet/budget`` (soft fraction of the target resource),
    ``chipnet/hard_budget`` (of the budget-aware hard masks), ``chipnet/crispness``,
    ``chipnet/beta``, ``chipnet/gamma``, ``chipnet/steepness`` and, per group,
    ``chipnet_groups/<group>`` (soft kept fraction ``R_g / C_g``).

    Example:
        >>> callbacks = [chipnet_tf.UpdatePruningStep(), chipnet_tf.PruningSummaries("logs")]  # doctest: +SKIP

    Args:
        log_dir: directory for the event files.
    """

    def __init__(self, log_dir):
        super().__init__()
        if not isinstance(log_dir, (str, bytes)) and not hasattr(log_dir, "__fspath__"):
            raise TypeError(f"log_dir must be a path. Received: log_dir={log_dir!r}")
        self.log_dir = str(log_dir)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._ctls = require_controllers(self.model, "using chipnet_tf callbacks")
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        masks = get_masks(self.model)
        with self._writer.as_default():
            for ctl in self._ctls:
                step = int(ctl.to_numpy(ctl.pruning_epoch))
                fraction, _, crisp = ctl.penalties()
                kept = np.array([masks[n].sum() for n in ctl.group_names], dtype=np.float64)
                scalars = {
                    "budget": fraction,
                    "hard_budget": ctl.spec.fraction(kept, ctl.budget_type),
                    "crispness": crisp,
                    "beta": ctl.beta,
                    "gamma": ctl.gamma,
                    "steepness": ctl.steepness,
                }
                for tag, value in scalars.items():  # as numpy: any backend's tensors, torch's detached
                    tf.summary.scalar(f"chipnet/{tag}", float(ctl.to_numpy(value)), step=step)
                soft = ctl.to_numpy(ctl.soft_counts())
                for name, size, r in zip(ctl.group_names, ctl.sizes, soft):
                    tf.summary.scalar(f"chipnet_groups/{name}", float(r) / size, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class BestHardMasks(keras.callbacks.Callback):
    """Keeps the pruning epoch whose *hard* network validates best (the paper's model selection).

    After every epoch it fixes the budget-aware hard masks (``get_masks``), evaluates the
    hard-masked network on ``validation_data``, returns to soft gates and logs the result as
    ``hard_<monitor>``. When training ends it restores the weights (mask logits and schedule
    state included) of the best epoch, so ``get_masks`` afterwards gives that epoch's masks,
    and says so in one line unless ``fit`` runs with ``verbose=0``.

    Why: the soft budget can be met by shrinking every gate of a group to a small value that
    a following BatchNormalization scales back; such a network validates well with soft gates
    and badly with hard ones. The reference implementation selects its pruning checkpoint by
    hard-masked validation accuracy for the same reason.

    With ``calibration_data``, the hard network's BatchNormalization statistics are first
    re-estimated on a few training batches (:func:`recalibrate_batch_norm`) and put back
    after validating: without it, removing channels shifts the statistics the next layers
    see and the hard network validates near chance before any fine-tuning.

    Example:
        >>> pruned.fit(train, epochs=20, callbacks=[chipnet_tf.UpdatePruningStep(),
        ...            chipnet_tf.BestHardMasks(val_ds)])  # doctest: +SKIP

    Args:
        validation_data: a ``tf.data.Dataset`` of ``(x, y)`` batches or an ``(x, y)`` tuple.
        monitor: a metric the model is compiled with (``"accuracy"``) or ``"loss"``.
        mode: ``"max"`` or ``"min"``; default ``"min"`` for losses, else ``"max"``.
        round_to: passed to ``get_masks`` (a positive integer).
        calibration_data: training inputs (dataset of ``x`` or ``(x, y)`` batches, or an
            array) to re-estimate BatchNormalization statistics on, or None.
        calibration_steps: batches of ``calibration_data`` to use.
        filepath: optional ``.npz`` path; the best state is saved there (atomically) and
            reloaded by a resumed run, so an interrupted run selects as an uninterrupted one.
        restore: restore the best epoch's weights when training ends.
        write: write ``filepath`` (False: only read it, e.g. on non-chief workers).
    """

    def __init__(
        self,
        validation_data,
        monitor="accuracy",
        mode=None,
        round_to=1,
        filepath=None,
        restore=True,
        write=True,
        calibration_data=None,
        calibration_steps=10,
    ):
        super().__init__()
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max', 'min' or None. Received: mode={mode!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name. Received: monitor={monitor!r}")
        self.validation_data = validation_data
        self.monitor = monitor
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.round_to = check_round_to(round_to)
        self.filepath = None if filepath is None else str(filepath)
        self.restore = restore
        self.write = bool(write)
        self.calibration_data = calibration_data
        self.calibration_steps = check_steps(calibration_steps, "calibration_steps")
        self.best_value = None
        self.best_epoch = None
        self.best_masks = None
        self._best_weights = None

    def _better(self, value):
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def on_train_begin(self, logs=None):
        require_controllers(self.model, "using chipnet_tf callbacks")
        self.best_value = self.best_epoch = self.best_masks = self._best_weights = None
        if self.filepath and os.path.exists(self.filepath):
            with np.load(self.filepath, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                self._best_weights = [f[f"w{i}"] for i in range(meta["num_weights"])]
            self.best_value, self.best_epoch = meta["value"], meta["epoch"]
            self.best_masks = {k: np.asarray(v, bool) for k, v in meta["masks"].items()}

    def on_epoch_end(self, epoch, logs=None):
        masks = get_masks(self.model, round_to=self.round_to)
        apply_masks(self.model, masks)
        saved = None
        try:
            if self.calibration_data is not None:
                saved = recalibrate_batch_norm(self.model, self.calibration_data, self.calibration_steps)
            data = self.validation_data
            if isinstance(data, tuple):
                results = self.model.evaluate(*data, verbose=0, return_dict=True)
            else:
                results = self.model.evaluate(data, verbose=0, return_dict=True)
        finally:
            if saved is not None:
                restore_batch_norm(saved)
            apply_masks(self.model, None)
        if self.monitor not in results:
            raise ValueError(
                f"BestHardMasks monitors {self.monitor!r}, which the model does not compute. "
                f"Available: {', '.join(sorted(results))}."
            )
        value = float(results[self.monitor])
        if logs is not None:
            logs[f"hard_{self.monitor}"] = value
        if self._better(value):
            self.best_value, self.best_epoch, self.best_masks = value, int(epoch), masks
            self._best_weights = [np.array(w) for w in self.model.get_weights()]
            if self.filepath and self.write:
                self._save()

    def _save(self):
        meta = {
            "value": self.best_value,
            "epoch": self.best_epoch,
            "num_weights": len(self._best_weights),
            "masks": {k: np.asarray(v).astype(int).tolist() for k, v in self.best_masks.items()},
        }
        arrays = {f"w{i}": w for i, w in enumerate(self._best_weights)}
        atomic_write(self.filepath, lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **arrays))

    def on_train_end(self, logs=None):
        if self.restore and self._best_weights is not None:
            self.model.set_weights(self._best_weights)
            if (getattr(self, "params", None) or {}).get("verbose", 1):  # fit's verbose, as EarlyStopping does
                keras.src.utils.io_utils.print_msg(
                    f"BestHardMasks: restored the weights of epoch {self.best_epoch + 1}, whose hard-masked "
                    f"network validated best ({self.monitor} {self.best_value:.4f})."
                )
