"""prune_low_budget: wrapping, hard-mask exactness, bad input."""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf
from tests.models import residual_cnn, toy_model

L = keras.layers


def _input_channel_mask(analysis, key, masks):
    segments, repeat = analysis.layouts[key]
    parts = [np.ones(n, bool) if g is None else masks[analysis.groups[g].name] for g, n in segments]
    return np.tile(np.concatenate(parts), repeat)


def zeroed_reference(dense, analysis, masks):
    """The dense model with every consumer's weights for pruned input channels zeroed.

    Equal outputs to the gated model under hard masks mean every channel-mixing layer
    reads exact zeros from pruned channels: what stripping relies on.
    """
    ref = keras.models.clone_model(dense)
    ref.set_weights(dense.get_weights())
    for fnode, kind in zip(analysis.graph.nodes, analysis.kinds):
        if kind != "producer":
            continue
        keep = _input_channel_mask(analysis, fnode.in_keys[0], masks)
        layer = ref.get_layer(fnode.name)
        weights = layer.get_weights()
        if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
            weights[0][..., ~keep, :] = 0
        elif isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
            weights[0][..., ~keep] = 0
        else:
            weights[0][..., ~keep, :] = 0
        layer.set_weights(weights)
    return ref


def random_masks(analysis, keep, seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for g in analysis.groups:
        m = rng.random(g.size) < keep
        m[rng.integers(g.size)] = True
        masks[g.name] = m
    return masks


def _randomise_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


def _mobilenet_small():
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)


def _resnet50v2_small():
    return keras.applications.ResNet50V2(input_shape=(32, 32, 3), weights=None, classes=10)


def _se_net():
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(16, 3, padding="same", name="stem")(x)
    h = L.BatchNormalization()(h)
    h = L.Activation("swish")(h)
    h = L.SeparableConv2D(16, 3, padding="same", name="sep")(h)
    s = L.GlobalAveragePooling2D(keepdims=True)(h)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    h = L.Multiply()([h, s])
    h = L.Concatenate()([h, L.Conv2D(8, 1, name="side")(x)])
    h = L.Flatten()(h)
    h = L.Dense(12, activation="relu", name="fc")(h)
    return keras.Model(x, L.Dense(3, name="head")(h))


@pytest.mark.parametrize(
    "factory,shape",
    [
        (toy_model, (4, 4, 3)),
        (lambda: residual_cnn(8), (8, 8, 1)),
        (_se_net, (8, 8, 3)),
        (_mobilenet_small, (32, 32, 3)),
        pytest.param(_resnet50v2_small, (32, 32, 3), marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_hard_masks_equal_dense_with_pruned_inputs_removed(factory, shape, keep):
    keras.utils.set_random_seed(1)
    dense = factory()
    _randomise_bn(dense)
    analysis = chipnet_tf.analyze(dense)
    masks = random_masks(analysis, keep, seed=int(keep * 10))
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    x = np.random.default_rng(2).normal(size=(3, *shape)).astype("float32")
    ref = zeroed_reference(dense, analysis, masks)
    np.testing.assert_allclose(pruned(x, training=False).numpy(), ref(x, training=False).numpy(), atol=2e-4, rtol=1e-4)


def test_wrapped_model_keeps_dense_weights_and_leaves_dense_untouched(trained_cnn, digits):
    x = digits[2][:8]
    before = [w.copy() for w in trained_cnn.get_weights()]
    pruned = chipnet_tf.prune_low_budget(trained_cnn, budget=0.5, budget_type="params")
    for w, b in zip(trained_cnn.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    head = trained_cnn.layers[-1].name
    assert pruned.get_layer(head).get_weights()[0].tolist() == trained_cnn.get_layer(head).get_weights()[0].tolist()
    assert pruned.get_layer(head) is not trained_cnn.get_layer(head)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert [w.name for w in pruned.trainable_weights if "zeta" in w.name] == [ctl.zeta.name]
    pruned(x)  # losses of the last eager call
    assert len(pruned.losses) == 1
    fraction, budget_loss, crisp = [t.numpy() for t in ctl.penalties()]
    assert pruned.losses[0].numpy() == pytest.approx(30 * budget_loss + 10 * crisp, rel=1e-5)
    assert pruned.predict(x, verbose=0).shape == (8, 10)


def test_exclude_keeps_layer_unpruned():
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.5, budget_type="flops", exclude=["e"])
    assert chipnet_tf.prune.controllers(pruned)[0].group_names == ["a"]


def test_single_layer_wrapper_in_subclassed_model(digits):
    x, y, _, _ = digits

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = chipnet_tf.prune_low_budget(L.Conv2D(16, 3), budget=0.5, budget_type="channels")
            self.pool = L.GlobalAveragePooling2D()
            self.head = L.Dense(10)

        def call(self, inputs):
            return self.head(self.pool(self.conv(inputs)))

    net = Net()
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x[:64], y[:64], epochs=2, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    masks = chipnet_tf.get_masks(net)
    assert list(masks) == [net.conv.name] and masks[net.conv.name].sum() == 8
    assert len(net.losses) == 1
    cfg = net.conv.get_config()
    again = chipnet_tf.PruneLowBudget.from_config(cfg)
    assert again.budget == 0.5 and again.layer.filters == 16


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = L.Dense(2)

    def call(self, x):
        return self.d(x)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"budget": 0.0}, ValueError, r"budget must be a fraction in \(0, 1\]. Received: budget=0.0"),
        ({"budget": 1.5}, ValueError, r"budget must be a fraction in \(0, 1\]. Received: budget=1.5"),
        ({"budget": float("nan")}, ValueError, r"Received: budget=nan"),
        ({"budget": "0.5"}, TypeError, r"budget must be a number in \(0, 1\]. Received: budget='0.5'"),
        ({"budget": 0.5, "budget_type": "speed"}, ValueError, r"Unknown budget_type='speed'. Accepted: .*'latency'"),
        (
            {"budget": 0.5, "exclude": ["nope"]},
            ValueError,
            r"exclude names layers that are not in the model: \['nope'\]",
        ),
        ({"budget": 0.5, "exclude": "a"}, TypeError, r"exclude must be a list of layer names. Received: exclude='a'"),
        ({"budget": 0.5, "budget_weight": -1.0}, ValueError, r"budget_weight must be a finite number >= 0"),
        ({"budget": 0.5, "schedule": {"beta": 1}}, TypeError, r"schedule must be a chipnet_tf.HeavisideSchedule"),
        (
            {"budget": 0.5, "gate_forward": "binary"},
            ValueError,
            r"gate_forward must be one of \('soft', 'hard'\). Received: gate_forward='binary'",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        chipnet_tf.prune_low_budget(toy_model(), **kwargs)


def test_bad_models_raise_clear_errors():
    pruned = chipnet_tf.prune_low_budget(toy_model(), budget=0.5)
    with pytest.raises(ValueError, match="is already wrapped by chipnet_tf.prune_low_budget"):
        chipnet_tf.prune_low_budget(pruned, budget=0.5)
    with pytest.raises(ValueError, match="is a subclassed model.*chipnet_tf.prune_low_budget\\(keras.layers.Conv2D"):
        chipnet_tf.prune_low_budget(_Subclassed(), budget=0.5)
    x = keras.Input((4,))
    with pytest.raises(ValueError, match="has nothing to prune"):
        chipnet_tf.prune_low_budget(keras.Model(x, L.Dense(3)(x)), budget=0.5)
    with pytest.raises(ValueError, match="Sequential model .* is not built"):
        chipnet_tf.prune_low_budget(keras.Sequential([L.Dense(3)]), budget=0.5)
    with pytest.raises(TypeError, match="PruneLowBudget wraps Conv1D/2D/3D"):
        chipnet_tf.prune_low_budget(L.BatchNormalization(), budget=0.5)
    with pytest.raises(ValueError, match="single wrapped layer supports budget_type 'channels' or 'volume'"):
        chipnet_tf.prune_low_budget(L.Dense(3), budget=0.5, budget_type="flops")
    with pytest.raises(TypeError, match="Expected a tf_keras Model. Received: int"):
        chipnet_tf.prune_low_budget(3, budget=0.5)


def test_a_single_keras3_layer_is_refused_with_what_works():
    import keras as keras3

    assert keras3.__version__.startswith("3.")
    with pytest.raises(TypeError, match="single layers of tf_keras models only.*'d'.*Prune the Keras 3 functional"):
        chipnet_tf.prune_low_budget(keras3.layers.Dense(2, name="d"), budget=0.5)


def test_sequential_model_is_supported():
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.ReLU(), L.Flatten(), L.Dense(3)])
    pruned = chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="params")
    assert chipnet_tf.prune.controllers(pruned)[0].groups == [["conv2d", 4]] or len(chipnet_tf.get_masks(pruned)) == 1
    assert tf.reduce_all(tf.math.is_finite(pruned(np.zeros((1, 8, 8, 1), "float32"))))


def test_hard_gate_forward_is_the_rounded_network_with_straight_through_gradient(digits):
    """gate_forward="hard": outputs equal the network with gates rounded at 1/2 (z > 0.5
    kept), and the task gradient still reaches every logit."""
    x = digits[0][:16]
    keras.utils.set_random_seed(1)
    pruned = chipnet_tf.prune_low_budget(
        residual_cnn(8), budget=0.5, budget_type="channels", gate_forward="hard", gate_logits="absolute", gate_leak=0.0
    )
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    zeta = np.random.default_rng(0).normal(0.0, 3.0, ctl.total).astype("float32")
    ctl.zeta.assign(zeta)
    z = ctl.soft_gates()[0].numpy()
    assert 0 < (z > 0.5).sum() < ctl.total  # some channels on, some off
    out = pruned(x, training=False).numpy()
    sizes = np.cumsum(ctl.sizes)[:-1]
    chipnet_tf.apply_masks(pruned, dict(zip(ctl.group_names, np.split(z > 0.5, sizes))))
    np.testing.assert_allclose(out, pruned(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    chipnet_tf.apply_masks(pruned, None)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(pruned(x, training=False)))
    grad = tape.gradient(loss, ctl.zeta).numpy()
    assert np.count_nonzero(grad) > 0.5 * ctl.total
    soft = chipnet_tf.prune_low_budget(residual_cnn(8), 0.5, "channels", **chipnet_tf.paper_search())
    assert chipnet_tf.prune.controllers(soft)[0].gate_forward == "soft"
    config = ctl.get_config()
    assert config["gate_forward"] == "hard"
    assert type(ctl).from_config(config).gate_forward == "hard"


def _closed_channel_gradients(digits, gate_leak):
    """Task-loss gradient at the closed channels' logits, and the output, of a hard-gated
    CNN with half its channels closed."""
    keras.utils.set_random_seed(1)
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), 0.5, "channels", gate_leak=gate_leak)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(0).normal(0.0, 3.0, ctl.total).astype("float32"))
    closed = ctl.soft_gates()[0].numpy() <= 0.5
    x = digits[0][:32]
    with tf.GradientTape() as tape:
        out = pruned(x, training=False)
        loss = tf.reduce_sum(tf.square(out))
    return tape.gradient(loss, ctl.zeta).numpy()[closed], out.numpy(), closed, ctl


def test_gate_leak_lets_the_task_loss_reach_closed_channels(digits):
    """A closed channel multiplied by exactly 0 feeds 0 into the ReLU after it, whose
    gradient there is 0: the task loss never reaches it. With the default leak (0.01) it
    does, and the forward pass stays within a few percent of the hard network's."""
    grad0, out0, closed, _ = _closed_channel_gradients(digits, 0.0)
    grad, out, closed_leak, ctl = _closed_channel_gradients(digits, 0.01)
    assert np.array_equal(closed, closed_leak) and 0 < closed.sum() < closed.size
    assert np.count_nonzero(grad0) < 0.5 * closed.sum()  # most closed channels are deaf without the leak
    assert np.count_nonzero(grad) == closed.sum()  # every one hears the task loss with it
    assert 0 < np.abs(out - out0).max() <= 0.05 * np.abs(out0).max()
    assert ctl.gate_leak == 0.01 and ctl.get_config()["gate_leak"] == 0.01
    assert type(ctl).from_config(ctl.get_config()).gate_leak == 0.01
    old = {k: v for k, v in ctl.get_config().items() if k != "gate_leak"}  # saved before the option
    assert type(ctl).from_config(old).gate_leak == 0.0
    with pytest.raises(ValueError, match=r"gate_leak must be a number in \[0, 0.5\). Received: gate_leak=0.5"):
        chipnet_tf.prune_low_budget(residual_cnn(8), 0.5, gate_leak=0.5)


def test_crispness_waits_for_a_ramped_target_to_reach_the_budget():
    """With a crispness weight and a ramped target (the paper's penalty kept available),
    crispness is 0 while the target is above the budget and counts once it is there."""
    keras.utils.set_random_seed(1)
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), 0.3, "channels", crispness_weight=10.0)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    default = chipnet_tf.prune.controllers(chipnet_tf.prune_low_budget(residual_cnn(8), 0.3))[0]
    assert default.crispness_weight == 0.0 and default.schedule.gamma(0.99) == 2.0
    ctl.zeta.assign(np.random.default_rng(0).normal(0.0, 3.0, ctl.total).astype("float32"))
    ctl.target.assign(0.6)
    assert float(ctl.penalties()[2]) == 0.0
    ctl.target.assign(0.3)
    assert float(ctl.penalties()[2]) > 0.001


def test_relative_logits_ignore_a_shift_of_a_group_and_rank_the_cut():
    """gate_logits="relative" (the default): a group's gates and its soft budget do not move
    when all its logits move together (what a following BatchNormalization cannot see), each
    group's best channel is at the midpoint, and the hard cut ranks the relative logits."""
    keras.utils.set_random_seed(1)
    pruned = chipnet_tf.prune_low_budget(residual_cnn(8), budget=0.5, budget_type="channels")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert (ctl.gate_logits, ctl.gate_forward, ctl.schedule.unit) == ("relative", "hard", "progress")
    sizes = np.cumsum(ctl.sizes)[:-1]
    zeta = np.random.default_rng(0).normal(0.0, 3.0, ctl.total).astype("float32")
    ctl.zeta.assign(zeta)
    z, budget = ctl.soft_gates()[0].numpy(), float(ctl.penalties()[0])
    shift = np.repeat(np.arange(len(ctl.sizes), dtype="float32") * 5.0 - 7.0, ctl.sizes)
    ctl.zeta.assign(zeta + shift)
    np.testing.assert_allclose(ctl.soft_gates()[0].numpy(), z, rtol=1e-5, atol=1e-6)
    assert float(ctl.penalties()[0]) == pytest.approx(budget, rel=1e-5)
    scores = ctl.scores()
    for name, part in zip(ctl.group_names, np.split(zeta, sizes)):
        np.testing.assert_allclose(scores[name], part - part.max(), rtol=1e-5, atol=1e-5)
        assert scores[name].max() == 0.0
    masks = chipnet_tf.get_masks(pruned)
    expected = chipnet_tf.select_masks(ctl.spec, scores, 0.5, "channels")
    assert all(np.array_equal(masks[k], m) for k, m in expected.items())
    config = ctl.get_config()
    assert config["gate_logits"] == "relative"
    assert type(ctl).from_config(config).gate_logits == "relative"
    with pytest.raises(ValueError, match="gate_logits must be one of .*Received: gate_logits='max'"):
        chipnet_tf.prune_low_budget(residual_cnn(8), 0.5, gate_logits="max")


class _NoConfig(L.Layer):
    """A custom layer whose constructor needs an argument its get_config() leaves out."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"name": self.name}  # forgets factor: from_config raises TypeError


def test_layer_whose_config_does_not_round_trip_raises_naming_it():
    # Reusing the dense layer instead (the old fallback) would silently share its weights.
    x = keras.Input((4, 4, 2))
    h = L.Conv2D(4, 3, name="conv")(x)
    h = L.Conv2D(4, 1, name="conv1")(_NoConfig(2.0, name="no_config")(h))
    h = L.Conv2D(4, 1, name="conv2")(h)
    dense = keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    with (
        pytest.warns(UserWarning, match="no_config"),  # opaque: it stops groups, conv1's group remains
        pytest.raises(ValueError, match=r"(?s)cannot copy layer 'no_config' \(_NoConfig\).*TypeError.*get_config"),
    ):
        chipnet_tf.prune_low_budget(dense, 0.5)
