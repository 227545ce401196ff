"""Keras callbacks: the required schedule stepper and TensorBoard summaries."""

import numpy as np

from chipnet_tf.compat import keras, tf


def _controllers_or_raise(model):
    from chipnet_tf.prune import controllers

    found = controllers(model)
    if not found:
        raise ValueError(
            f"The model {model.name!r} has no chipnet_tf gates: wrap it with chipnet_tf.prune_low_budget "
            "before using chipnet_tf callbacks."
        )
    return found


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances ChipNet's schedule: beta/gamma every epoch, steepness every step. Required.

    The schedule state lives in the model (its controller's weights), so a model saved and
    loaded mid-run resumes where it stopped.

    Example:
        >>> pruned.fit(x, y, epochs=20, callbacks=[chipnet_tf.UpdatePruningStep()])  # doctest: +SKIP

    In a custom training loop call ``on_train_begin()`` once, ``on_train_batch_begin(i)``
    and ``on_train_batch_end(i)`` around each step, and ``on_epoch_end(epoch)``.
    """

    def __init__(self):
        super().__init__()
        self._ctls = []
        self._epochs = []
        self._steps = None

    def on_train_begin(self, logs=None):
        self._ctls = _controllers_or_raise(self.model)
        self._steps = (getattr(self, "params", None) or {}).get("steps")
        # Epochs are cached in Python so the per-batch hook does not read a variable.
        self._epochs = []
        for ctl in self._ctls:
            step = max(0, int(ctl.pruning_step.numpy()))
            epoch = int(ctl.pruning_epoch.numpy())
            ctl.set_schedule_state(epoch, 0.0, step)
            self._epochs.append(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        # Re-read once per epoch: a callback that runs after this one in on_train_begin
        # (BackupAndRestore) may have restored the controller's schedule state since.
        for i, ctl in enumerate(self._ctls):
            self._epochs[i] = int(ctl.pruning_epoch.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        if not self._steps:
            return
        for ctl, epoch in zip(self._ctls, self._epochs):
            ctl.steepness.assign(ctl.schedule.steepness(epoch + min(batch, self._steps) / self._steps))

    def on_train_batch_end(self, batch, logs=None):
        for ctl in self._ctls:
            ctl.pruning_step.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        for i, ctl in enumerate(self._ctls):
            self._epochs[i] = int(ctl.pruning_epoch.numpy()) + 1
            ctl.set_schedule_state(self._epochs[i])
        if logs is not None and self._ctls:
            ctl = self._ctls[0]
            logs["beta"] = float(ctl.beta.numpy())
            logs["gamma"] = float(ctl.gamma.numpy())


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
        self._ctls = _controllers_or_raise(self.model)
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        from chipnet_tf.masks import get_masks

        masks = get_masks(self.model)
        with self._writer.as_default():
            for ctl in self._ctls:
                step = int(ctl.pruning_epoch.numpy())
                fraction, _, crisp = ctl.penalties()
                kept = np.array([masks[n].sum() for n in ctl.group_names], dtype=np.float64)
                tf.summary.scalar("chipnet/budget", fraction, step=step)
                tf.summary.scalar("chipnet/hard_budget", ctl.spec.fraction(kept, ctl.budget_type), step=step)
                tf.summary.scalar("chipnet/crispness", crisp, step=step)
                tf.summary.scalar("chipnet/beta", ctl.beta, step=step)
                tf.summary.scalar("chipnet/gamma", ctl.gamma, step=step)
                tf.summary.scalar("chipnet/steepness", ctl.steepness, step=step)
                soft = ctl.soft_counts().numpy()
                for name, size, r in zip(ctl.group_names, ctl.sizes, soft):
                    tf.summary.scalar(f"chipnet_groups/{name}", float(r) / size, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
