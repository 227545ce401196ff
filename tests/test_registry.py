"""registry: one LayerRule per layer type, str-enum kinds, scoped registration, one FLOPs source."""

import gc
import weakref

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import registry
from chipnet_tf.compat import keras
from chipnet_tf.registry import Kind, LayerRule

L = keras.layers


class _Custom(L.Layer):
    def call(self, x):
        return x


def test_kind_names_are_strings_and_a_typo_raises_listing_the_kinds():
    assert LayerRule("passthrough").kind(None, 4) is Kind.PASSTHROUGH
    assert Kind.MERGE == "merge" and f"{Kind.MERGE}" == "merge"
    with pytest.raises(ValueError, match=r"Unknown layer kind 'passthru'\. Accepted: producer, depthwise"):
        LayerRule("passthru")
    bad = LayerRule(lambda layer, rank: "pasthrough")
    with pytest.raises(ValueError, match=r"'pasthrough' for layer rule of Dense"):
        bad.kind(L.Dense(2), 2)


def test_registered_scope_and_unregister_restore_the_registry():
    assert registry.lookup(_Custom()).kind(None, 4) == "opaque"
    rule = LayerRule("passthrough")
    with registry.registered(_Custom, rule):
        assert registry.lookup(_Custom()) is rule
        # register_surgery adds surgery to the class's current rule.
        chipnet_tf.register_surgery(_Custom, lambda ctx: (ctx.config, ctx.weights))
        assert registry.lookup(_Custom()).kind(None, 4) == "passthrough"
        assert registry.lookup(_Custom()).surgery is not None
    assert registry.lookup(_Custom()).kind(None, 4) == "opaque"
    chipnet_tf.register_layer(_Custom, rule)
    assert registry.unregister_layer(_Custom) is rule
    assert registry.unregister_layer(_Custom) is None


def test_a_builtin_rule_carries_kind_costs_surgery_and_constant():
    rule = registry.lookup(L.BatchNormalization())
    assert rule.costs is not None and rule.surgery is not None and rule.constant is not None
    assert registry.lookup(L.ReLU()).constant is not None
    assert registry.lookup(L.PReLU()).constant is None  # not known to map constants
    with pytest.raises(TypeError, match="register_layer expects a LayerRule"):
        chipnet_tf.register_layer(_Custom, "passthrough")


@pytest.mark.parametrize(
    "layer, in_shape, out_shape, want",
    [
        (L.Conv2D(8, 3, groups=2), (None, 6, 6, 4), (None, 4, 4, 8), 16 * 9 * 2 * 8 + 16 * 8),
        (L.DepthwiseConv2D(3, depth_multiplier=2), (None, 6, 6, 4), (None, 4, 4, 8), 16 * 9 * 4 * 2 + 16 * 8),
        (L.Conv2DTranspose(5, 3, use_bias=False), (None, 4, 4, 3), (None, 6, 6, 5), 16 * 9 * 3 * 5),
        (L.SeparableConv2D(6, 3), (None, 5, 5, 4), (None, 3, 3, 6), 9 * (9 * 4 + 4 * 6) + 9 * 6),
        (L.Dense(7), (None, 3, 5), (None, 3, 7), 3 * 5 * 7 + 3 * 7),
        (L.BatchNormalization(), (None, 4, 4, 3), (None, 4, 4, 3), 0),
    ],
)
def test_layer_flops_is_the_cost_function_at_full_width(layer, in_shape, out_shape, want):
    layer.build(in_shape)
    assert registry.layer_flops(layer, in_shape, out_shape) == want


def test_traced_flops_cache_lives_outside_the_users_layer():
    class Block(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = L.Conv2D(4, 1)

        def call(self, x):
            return self.conv(x)

    block = Block()
    block(np.zeros((1, 3, 3, 2), "float32"))
    assert registry.layer_flops(block, (None, 3, 3, 2), (None, 3, 3, 4)) == 9 * 2 * 4 + 9 * 4
    assert not any("flops" in k for k in vars(block))
    assert block in registry.flops._SUBLAYER_FLOPS
    ref = weakref.ref(block)
    del block
    gc.collect()
    assert ref() is None  # the cache does not keep the layer alive


def test_register_layer_keeps_the_surgery_it_does_not_replace():
    """A rule without surgery keeps the class's (own or inherited) surgery; flops needs costs."""

    class MyConv(L.Conv2D):
        pass

    conv_surgery = registry.lookup(L.Conv2D(1, 1)).surgery
    assert conv_surgery is not None
    with registry.registered(MyConv, registry.LayerRule("producer")):
        assert registry.lookup(MyConv(1, 1)).surgery is conv_surgery

    def surgery(ctx):
        return ctx.config, ctx.weights

    chipnet_tf.register_surgery(_Custom, surgery)
    chipnet_tf.register_layer(_Custom, registry.LayerRule("passthrough"))
    try:
        assert registry.lookup(_Custom()).surgery is surgery
    finally:
        registry.unregister_layer(_Custom)
    with pytest.raises(ValueError, match=r"LayerRule\(flops=True\) needs the costs function"):
        registry.LayerRule("producer", flops=True)


def test_count_flops_with_a_scalar_input_to_a_call():
    """A call that reads a scalar tensor (a mean over every axis) is counted like any other:
    the conv's FLOPs, the scalar multiply none."""
    from chipnet_tf.compat import tf

    x = keras.Input((4, 4, 3), batch_size=1)
    scale = tf.reduce_mean(x)  # shape (): a scalar input of the multiply below
    y = keras.layers.Conv2D(2, 1, name="conv")(x) * scale
    model = keras.Model(x, y)
    assert chipnet_tf.count_flops(model) == 16 * (3 * 2 + 2)
