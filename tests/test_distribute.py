"""MirroredStrategy with two logical CPUs, and the mixed_float16 policy."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from tests.models import residual_cnn


def test_mirrored_strategy_two_replicas_trains_and_scales_penalty(digits):
    x, y, _, _ = digits
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    assert strategy.num_replicas_in_sync == 2
    zero_task_loss = lambda yt, yp: tf.zeros(tf.shape(yt)[:1])  # noqa: E731 - isolates the penalty
    dense = residual_cnn(8)
    single = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
    with strategy.scope():
        pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
        pruned.set_weights(single.get_weights())
        pruned.compile(keras.optimizers.SGD(0.0), zero_task_loss)
    single.compile(keras.optimizers.SGD(0.0), zero_task_loss)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    # Same global batch on 1 and 2 replicas: the penalty must not be counted per replica.
    losses = []
    for model in (single, pruned):
        hist = model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
        losses.append(hist.history["loss"][0])
    assert losses[0] > 1.0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert int(ctl.pruning_step.numpy()) == 2
    with strategy.scope():
        pruned.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    history = pruned.fit(
        x[:128], y[:128], batch_size=32, epochs=2, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()]
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(ctl.pruning_epoch.numpy()) == 3
    masks = chipnet_tf.get_masks(pruned)
    assert chipnet_tf.budget_report(pruned, masks=masks).totals["flops"]["fraction"] <= 0.5


def test_mixed_float16_keeps_mask_math_in_float32(digits):
    x, y, _, _ = digits
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        dense = residual_cnn(8)
        pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="params")
        ctl = chipnet_tf.prune.controllers(pruned)[0]
        gate = next(layer for layer in pruned.layers if isinstance(layer, chipnet_tf.ChannelGate))
        assert ctl.zeta.dtype == tf.float32 and ctl.compute_dtype == "float32"
        assert gate.compute_dtype == "float16"
        pruned.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        history = pruned.fit(
            x[:128], y[:128], batch_size=32, epochs=2, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()]
        )
        assert np.all(np.isfinite(history.history["loss"]))
        assert np.all(np.isfinite(ctl.zeta.numpy()))
        assert pruned.losses[0].dtype == tf.float32
        masks = chipnet_tf.get_masks(pruned)
        assert chipnet_tf.budget_report(pruned, masks=masks).totals["params"]["fraction"] <= 0.5
    finally:
        keras.mixed_precision.set_global_policy("float32")
