"""GatedBatchNormalization == ChannelGate(BatchNormalization(x)), and where prune_low_budget folds."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from tests.models import residual_cnn

L = keras.layers
SEGMENTS = [["g0", 3], [None, 2], ["g1", 3]]


def _pair(seed, **bn_kwargs):
    """A BatchNormalization and a GatedBatchNormalization with equal, non-trivial weights."""
    rng = np.random.default_rng(seed)
    bn = L.BatchNormalization(momentum=0.8, **bn_kwargs)
    bn.build((None, 4, 4, 8))
    bn.set_weights(
        [rng.normal(size=w.shape).astype("float32") + (1.5 if "variance" in w.name else 0) for w in bn.weights]
    )
    gbn = chipnet_tf.GatedBatchNormalization(SEGMENTS, momentum=0.8, **bn_kwargs)
    gbn.build([(None, 4, 4, 8), (3,), (3,)])
    gbn.set_weights(bn.get_weights())
    return bn, gbn


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("center", [True, False])
def test_folded_gate_equals_explicit_gate_values_gradients_and_moving_stats(training, center):
    bn, gbn = _pair(0, center=center)
    gate = chipnet_tf.ChannelGate(SEGMENTS)
    x = tf.random.stateless_normal((6, 4, 4, 8), seed=(1, 2))
    m0 = tf.Variable([0.0, 0.3, 1.0])
    m1 = tf.Variable([0.9, 0.0, 0.5])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ref = gate([bn(x, training=training), m0, m1])
        out = gbn([x, m0, m1], training=training)
        w = tf.random.stateless_normal(ref.shape, seed=(3, 4))
        loss_ref, loss_out = tf.reduce_sum(ref * w), tf.reduce_sum(out * w)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)
    for a, b in [(x, x), (m0, m0), (m1, m1), (bn.gamma, gbn.gamma)] + ([(bn.beta, gbn.beta)] if center else []):
        np.testing.assert_allclose(tape.gradient(loss_out, b).numpy(), tape.gradient(loss_ref, a).numpy(), atol=1e-4)
    # Moving statistics move identically (and only in training).
    for wa, wb in zip(bn.weights, gbn.weights):
        np.testing.assert_allclose(wb.numpy(), wa.numpy(), atol=1e-6)
    changed = not np.allclose(gbn.moving_mean.numpy(), _pair(0, center=center)[1].moving_mean.numpy())
    assert changed == training


def test_weights_and_config_match_batch_normalization():
    bn, gbn = _pair(1)
    assert [w.name.split("/")[-1] for w in gbn.weights] == [w.name.split("/")[-1] for w in bn.weights]
    assert gbn.gamma is gbn.weights[0] and gbn.beta is gbn.weights[1]  # overrides are call-local
    config = gbn.get_config()
    assert config["segments"] == SEGMENTS and config["momentum"] == 0.8
    again = chipnet_tf.GatedBatchNormalization.from_config(config)
    assert again.segments == SEGMENTS and again.repeat == 1


def test_rejects_scale_false_and_empty_segments():
    with pytest.raises(ValueError, match="needs scale=True"):
        chipnet_tf.GatedBatchNormalization(SEGMENTS, scale=False)
    with pytest.raises(ValueError, match="needs segments and repeat >= 1"):
        chipnet_tf.GatedBatchNormalization([])


def test_float16_inputs_keep_float32_masks():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gbn = chipnet_tf.GatedBatchNormalization([["g", 4]])
        out = gbn([tf.ones((2, 3, 3, 4), tf.float16), tf.constant([0.0, 1.0, 0.5, 1.0])], training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == tf.float16
    assert gbn.gamma.dtype == tf.float32
    assert np.all(out.numpy()[..., 0] == 0)


def test_prune_low_budget_folds_gates_that_follow_batch_norm():
    model = residual_cnn()
    pruned = chipnet_tf.prune_low_budget(model, 0.5)
    folded = [la.name for la in pruned.layers if isinstance(la, chipnet_tf.GatedBatchNormalization)]
    explicit = [la.name for la in pruned.layers if isinstance(la, chipnet_tf.ChannelGate)]
    bns = [la.name for la in model.layers if isinstance(la, L.BatchNormalization)]
    # Every BN of this net follows a conv and is followed by a gate: all are folded. The one
    # conv without a BN (the bias conv before the second block) keeps an explicit gate.
    assert sorted(folded) == sorted(bns) and len(bns) == 5
    no_bn = [la.name for la in model.layers if isinstance(la, L.Conv2D) and la.use_bias]
    assert explicit == [f"{no_bn[0]}_gate"]


def test_batch_norm_without_scale_or_shared_keeps_explicit_gate():
    x = keras.Input((6, 6, 3))
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(scale=False, name="bn_noscale")(y)
    shared = L.BatchNormalization(name="bn_shared")
    a = shared(L.Conv2D(4, 1, name="c2")(y))
    b = shared(L.Conv2D(4, 1, name="c3")(y))
    out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Concatenate()([a, b])))
    pruned = chipnet_tf.prune_low_budget(keras.Model(x, out), 0.5)
    assert not any(isinstance(la, chipnet_tf.GatedBatchNormalization) for la in pruned.layers)
    gates = sorted(la.name for la in pruned.layers if isinstance(la, chipnet_tf.ChannelGate))
    assert "bn_noscale_gate" in gates and sum(g.startswith("bn_shared") for g in gates) == 2


# -- GatedLayerNormalization -------------------------------------------------------------
def test_gated_layer_norm_is_layer_norm_of_the_kept_channels():
    rng = np.random.default_rng(0)
    ln = L.LayerNormalization(epsilon=1e-3)
    ln.build((None, 4, 8))
    ln.set_weights([rng.normal(size=(8,)).astype("float32") for _ in range(2)])
    gln = chipnet_tf.GatedLayerNormalization(SEGMENTS, epsilon=1e-3)
    gln.build([(None, 4, 8), (3,), (3,)])
    gln.set_weights(ln.get_weights())
    x = rng.normal(size=(2, 4, 8)).astype("float32")
    ones = [tf.ones(3), tf.ones(3)]
    np.testing.assert_allclose(gln([x, *ones]).numpy(), ln(x).numpy(), atol=1e-5)
    m0, m1 = np.array([1, 0, 1], "float32"), np.array([0, 1, 1], "float32")
    keep = np.flatnonzero(np.concatenate([m0, [1, 1], m1]))
    small = L.LayerNormalization(epsilon=1e-3)
    small.build((None, 4, len(keep)))
    small.set_weights([w[keep] for w in ln.get_weights()])
    out = gln([x, m0, m1]).numpy()
    np.testing.assert_allclose(out[..., keep], small(x[..., keep]).numpy(), atol=1e-5)
    config = gln.get_config()
    assert chipnet_tf.GatedLayerNormalization.from_config(config).segments == SEGMENTS


def test_prune_low_budget_gates_layer_norm_over_channels_only():
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same", name="stem")(x)
    h = L.LayerNormalization(name="ln_channels")(h)
    h = L.Conv2D(4, 1, name="pw")(h)
    h = L.LayerNormalization(axis=[1, 2, 3], name="ln_all")(h)
    out = L.Dense(2, name="head")(L.Flatten()(h))
    pruned = chipnet_tf.prune_low_budget(keras.Model(x, out), 0.5)
    gated = [la.name for la in pruned.layers if isinstance(la, chipnet_tf.GatedLayerNormalization)]
    assert gated == ["ln_channels"]  # ln_all mixes positions too: opaque, its group is fixed
    assert [g.name for g in chipnet_tf.analyze(keras.Model(x, out)).groups] == ["stem"]
