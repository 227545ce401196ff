"""BatchNorm statistics for a hard network: re-estimating them from data and putting them back.

A search leaves moving statistics that belong to no fixed network: with hard straight-through
gates the channels at the budget's equilibrium open and close from one step to the next, so
BatchNormalization averages over many networks, and the hard cut of :func:`get_masks` is yet
another one (see ``experiments/inference-bn-statistics-2026-12``). :func:`apply_masks` and
:func:`chipnet_tf.strip_pruning` call :func:`recalibrate_batch_norm` when given
``calibration_data``.
"""

import numpy as np

from chipnet_tf.compat import is_instance, is_keras3_object, keras, keras3, tf
from chipnet_tf.search.layers.controller import controllers
from chipnet_tf.tf_ops import to_numpy

DEFAULT_STEPS = 10
ARRAY_BATCH = 64


def _batch_norms(model):
    found = []

    def walk(layer):
        if is_instance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for sub in getattr(layer, "layers", None) or []:
            walk(sub)

    for layer in model.layers:
        walk(layer)
    return found


def check_steps(steps, name="steps"):
    """``steps`` (batches to re-estimate statistics on) as a positive int."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={steps!r}")
    return int(steps)


def _short(text, limit=80):
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_dataset(data, name="data"):
    """``data`` as a dataset of batches: a dataset as it is; ``(x, y)`` / ``(x,)`` tuples and
    arrays of inputs in batches of 64."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and data and not isinstance(data[0], (int, float)):
        data = data[0]  # (x, y) or (x, y, sample_weight): the inputs
    if data is None or isinstance(data, (str, bytes, dict)):
        raise TypeError(
            f"{name} must be a tf.data.Dataset of x or (x, y) batches, or an array of inputs. "
            f"Received: {_short(repr(data))}"
        )
    try:
        array = np.asarray(data)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype == object or array.ndim == 0 or not np.issubdtype(array.dtype, np.number):
        raise TypeError(
            f"{name} must be a tf.data.Dataset of x or (x, y) batches, or an array of inputs. "
            f"Received: {type(data).__name__} {_short(repr(data))}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} holds no examples (an array of shape {array.shape}).")
    return tf.data.Dataset.from_tensor_slices(array).batch(ARRAY_BATCH)


def recalibrate_batch_norm(model, data, steps=DEFAULT_STEPS):
    """Re-estimates every BatchNormalization's moving statistics on ``steps`` batches of ``data``.

    The moving mean/variance become the average of the per-batch statistics (momentum
    ``t / (t + 1)`` at batch ``t``); no weight is trained. Removing channels changes what
    the later layers see, and a search's own moving statistics belong to no fixed network
    (gates at the budget's equilibrium open and close from step to step), so a hard-masked or
    stripped network is judged fairly only after this ("BN calibration"). The batches run
    through the model in training mode (as ``fit`` would, Dropout included); the model's
    gates stay as they are, so call it after :func:`chipnet_tf.apply_masks` (or pass
    ``calibration_data`` to ``apply_masks`` / :func:`chipnet_tf.strip_pruning`, which do).

    Example:
        >>> conv, bn = keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), conv, bn])
        >>> x = np.random.default_rng(0).normal(3.0, 1.0, (128, 8, 8, 1)).astype("float32")
        >>> saved = chipnet_tf.recalibrate_batch_norm(model, x)  # two batches of 64
        >>> bool(np.allclose(bn.moving_mean, conv(x).numpy().mean((0, 1, 2)), atol=1e-4))
        True
        >>> chipnet_tf.restore_batch_norm(saved)  # the previous statistics again
        >>> bn.moving_mean.numpy().tolist()
        [0.0, 0.0]

    Args:
        model: a Keras model (nested models included), wrapped or stripped.
        data: a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` batches, an array of inputs (split
            into batches of 64), or an ``(x, y)`` tuple of arrays; training data, never the
            test split.
        steps: number of batches to average (a positive integer); fewer when ``data`` ends.

    Returns:
        The previous statistics, a list of ``(layer, momentum, moving mean, moving variance)``,
        for :func:`restore_batch_norm`; an empty list when the model has no BatchNormalization.

    Raises:
        TypeError: ``model`` is not a Keras model, or ``data`` is neither a dataset nor an
            array of inputs.
        ValueError: ``steps`` is not a positive integer, or ``data`` holds no batch.
    """
    if not isinstance(model, keras3().Model if is_keras3_object(model) else keras.Model):
        raise TypeError(f"model must be a Keras Model. Received: model={model!r}")
    steps = check_steps(steps)
    data = as_dataset(data)
    layers = _batch_norms(model)
    saved = [(bn, bn.momentum, to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)) for bn in layers]
    if not layers:
        return saved
    strategy = getattr(model, "distribute_strategy", None)
    seen = 0
    # A wrapped model that never ran fit (mask transfer: wrap, apply masks, calibrate) has no
    # schedule step yet, and its controller refuses training-mode calls without one; these
    # calls train nothing, so the step is set for them and put back.
    unstarted = [ctl for ctl in controllers(model) if int(ctl.to_numpy(ctl.pruning_step)) < 0]
    for ctl in unstarted:
        ctl.pruning_step.assign(0)
    try:
        for t, batch in enumerate(data.take(steps)):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for bn in layers:
                bn.momentum = t / (t + 1)
            if strategy is not None and strategy.num_replicas_in_sync > 1:
                strategy.run(lambda inputs: model(inputs, training=True), args=(x,))
            else:
                model(x, training=True)
            seen += 1
    finally:
        for bn, momentum, _, _ in saved:
            bn.momentum = momentum
        for ctl in unstarted:
            ctl.pruning_step.assign(-1)
    if not seen:
        raise ValueError("data yielded no batch: BatchNorm statistics cannot be re-estimated from it.")
    return saved


def restore_batch_norm(saved):
    """Puts back the statistics :func:`recalibrate_batch_norm` returned.

    Args:
        saved: the list :func:`recalibrate_batch_norm` returned.
    """
    for bn, _, mean, variance in saved:
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(variance)
