"""Attention heads as channel groups: costs against a hand count, the gated layer against
the stripped one, serialisation, and the calls that stay opaque.

Each test runs on tf_keras and on Keras 3 (``tests/twins.py``), under Keras 3's backend of
the process (``make test`` runs this file again under JAX and torch)."""

import numpy as np
import pytest

import chipnet_tf
from tests.twins import (
    CROSS_VALUE_DIM,
    FLAVOURS,
    build,
    cross_attention,
    decoder,
    keras_of_flavour,
    random_data,
    to_numpy,
    vit,
)


def _mha_flops(t, s, dq, dv, dk, heads, key_dim, value_dim, out):
    """Hand count of one attention call: Q/K/V projections with biases, QK^T and AV, the
    output projection with its bias."""
    q = t * dq * heads * key_dim + t * heads * key_dim
    k = s * dk * heads * key_dim + s * heads * key_dim
    v = s * dv * heads * value_dim + s * heads * value_dim
    scores = t * s * heads * key_dim
    mix = t * s * heads * value_dim
    o = t * heads * value_dim * out + t * out
    return q + k + v + scores + mix + o


def _dense_flops(positions, c_in, c_out):
    return positions * (c_in * c_out + c_out)


def _vit_flops(width, heads, mlp, blocks=2, tokens=49):
    patch = tokens * (4 * 4 * 1 * width + width)
    block = _mha_flops(tokens, tokens, width, width, width, heads, 4, 4, width)
    block += _dense_flops(tokens, width, mlp) + _dense_flops(tokens, mlp, width)
    return patch + blocks * block + _dense_flops(1, width, 10)


def _random_masks(pruned, seed=0):
    rng = np.random.default_rng(seed)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    masks = {}
    for name, size in zip(ctl.group_names, ctl.sizes):
        mask = rng.random(size) < 0.5
        mask[rng.integers(size)] = True
        masks[name] = mask
    return masks


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_vit_groups_and_costs_match_a_hand_count(flavour):
    model = build(flavour, vit)
    analysis = chipnet_tf.analyze(model, warn=False)
    assert [(g.name, g.size) for g in analysis.groups] == [
        ("patch", 16),
        ("mha0/heads", 4),
        ("fc0a", 32),
        ("mha1/heads", 4),
        ("fc1a", 32),
    ]
    assert analysis.stopped == []
    dense = _vit_flops(16, 4, 32)
    assert dense == 378_842
    assert analysis.spec.dense("flops") == dense == chipnet_tf.count_flops(model)
    assert analysis.spec.dense("params") == model.count_params()
    # 6 residual channels, 1 and 3 heads, 5 and 7 hidden units: each block's costs by hand.
    kept = analysis.spec.value([6, 1, 5, 3, 7], "flops")
    patch = 49 * (16 * 6 + 6)
    first = _mha_flops(49, 49, 6, 6, 6, 1, 4, 4, 6) + _dense_flops(49, 6, 5) + _dense_flops(49, 5, 6)
    second = _mha_flops(49, 49, 6, 6, 6, 3, 4, 4, 6) + _dense_flops(49, 6, 7) + _dense_flops(49, 7, 6)
    assert kept == patch + first + second + _dense_flops(1, 6, 10)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cross_and_causal_attention_costs_match_a_hand_count(flavour):
    model = build(flavour, cross_attention)
    analysis = chipnet_tf.analyze(model, warn=False)
    names = {g.name: g.size for g in analysis.groups}
    assert names == {
        "q_proj": 12,
        "v_proj": 10,
        "k_proj": 9,
        "cross": 11,
        "cross/heads": 3,
        "mix": 6,
        "causal/heads": 2,
    }
    projections = _dense_flops(5, 8, 12) + _dense_flops(7, 6, 10) + _dense_flops(7, 4, 9)
    cross = _mha_flops(5, 7, 12, 10, 9, 3, 4, CROSS_VALUE_DIM, 11)
    causal = _mha_flops(5, 5, 6, 6, 6, 2, 3, 3, 6)  # the causal mask changes no multiply-accumulate
    total = projections + cross + _dense_flops(5, 11, 6) + causal + _dense_flops(1, 6, 3)
    assert analysis.spec.dense("flops") == total == chipnet_tf.count_flops(model)
    assert analysis.spec.dense("params") == model.count_params()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_decoder_costs_match_a_hand_count(flavour):
    """A GPT-style decoder: the token embedding writes the residual stream (a lookup: no
    FLOPs), causal attention costs what full attention costs."""
    model = build(flavour, decoder)
    analysis = chipnet_tf.analyze(model, warn=False)
    assert [(g.name, g.size) for g in analysis.groups] == [
        ("embed", 16),
        ("attn0/heads", 4),
        ("fc0a", 32),
        ("attn1/heads", 4),
        ("fc1a", 32),
    ]
    block = _mha_flops(12, 12, 16, 16, 16, 4, 4, 4, 16) + _dense_flops(12, 16, 32) + _dense_flops(12, 32, 16)
    assert analysis.spec.dense("flops") == 2 * block + _dense_flops(12, 16, 50) == chipnet_tf.count_flops(model)
    assert analysis.spec.dense("params") == model.count_params()


def _inputs_of(model, n=3):
    if "int" in str(model.inputs[0].dtype):  # token ids
        return np.random.default_rng(0).integers(0, 50, size=(n, *model.inputs[0].shape[1:])).astype("int32")
    xs = [random_data(tuple(t.shape[1:]), n=n, seed=i)[0] for i, t in enumerate(model.inputs)]
    return xs[0] if len(xs) == 1 else xs


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("arch", [vit, cross_attention, decoder], ids=["vit", "cross_attention", "decoder"])
def test_stripped_attention_equals_the_gated_one(flavour, arch):
    model = build(flavour, arch)
    pruned = chipnet_tf.prune_low_budget(model, 0.3, "flops")
    masks = _random_masks(pruned, seed=1)
    chipnet_tf.apply_masks(pruned, masks)
    xs = _inputs_of(model)
    gated = to_numpy(pruned(xs, training=False))
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    stripped = to_numpy(small(xs, training=False))
    assert np.abs(stripped - gated).max() <= 1e-5 * np.abs(gated).max()
    K, _ = keras_of_flavour(flavour)
    heads = {
        layer.name: layer.get_config()["num_heads"] for layer in small.layers if "MultiHead" in type(layer).__name__
    }
    assert type(small.get_layer(next(iter(heads)))) is K.layers.MultiHeadAttention
    assert heads == {name.split("/")[0]: int(m.sum()) for name, m in masks.items() if name.endswith("/heads")}
    report = chipnet_tf.budget_report(model, masks=masks).totals
    assert chipnet_tf.count_flops(small) == report["flops"]["kept"]
    assert small.count_params() == report["params"]["kept"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_closed_heads_change_nothing_else(flavour):
    """A head closed by its gate contributes nothing: the wrapped layer with head 1 closed
    equals the dense layer whose head-1 value projection is zero."""
    K, _ = keras_of_flavour(flavour)
    model = build(flavour, vit)
    pruned = chipnet_tf.prune_low_budget(model, 0.5, "flops")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    masks = {name: np.ones(size, bool) for name, size in zip(ctl.group_names, ctl.sizes)}
    masks["mha0/heads"] = np.array([True, False, True, True])
    chipnet_tf.apply_masks(pruned, masks)
    dense = K.models.clone_model(model)
    dense.set_weights(model.get_weights())
    weights = dense.get_layer("mha0").get_weights()
    weights[4][:, 1] = 0.0  # value kernel (channels, heads, value_dim)
    weights[5][1] = 0.0  # value bias (heads, value_dim)
    dense.get_layer("mha0").set_weights(weights)
    x, _ = random_data((28, 28, 1), n=2)
    expected = to_numpy(dense(x, training=False))
    assert np.allclose(to_numpy(pruned(x, training=False)), expected, atol=1e-5)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_wrapped_attention_trains_and_round_trips(flavour, tmp_path):
    K, _ = keras_of_flavour(flavour)
    model = build(flavour, vit)
    pruned = chipnet_tf.prune_low_budget(model, 0.25, "flops")
    assert {type(layer).__name__ for layer in pruned.layers} >= {"GatedMultiHeadAttention"}
    pruned.compile(K.optimizers.Adam(1e-3), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data((28, 28, 1), n=16)
    history = pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[chipnet_tf.UpdatePruningStep()])
    assert np.isfinite(history.history["loss"]).all()
    path = str(tmp_path / "vit.keras")
    pruned.save(path)
    loaded = K.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x[:2], training=False)), to_numpy(pruned(x[:2], training=False)))
    masks = chipnet_tf.get_masks(pruned)
    np.testing.assert_array_equal(chipnet_tf.get_masks(loaded)["mha1/heads"], masks["mha1/heads"])
    small = chipnet_tf.strip_pruning(loaded)
    assert small.get_layer("mha1").get_config()["num_heads"] == int(masks["mha1/heads"].sum())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_attention_with_a_mask_tensor_is_opaque_and_still_counted(flavour):
    K, _ = keras_of_flavour(flavour)
    L = K.layers
    x = K.Input((6, 5), name="x")
    mask = K.Input((6, 6), name="mask")
    h = L.Dense(8, name="proj")(x)
    a = L.MultiHeadAttention(2, 4, name="mha")(h, h, attention_mask=mask)
    model = K.Model([x, mask], L.Dense(3, name="out")(a))
    with pytest.warns(UserWarning, match="'mha' its rule does not see through this call's arguments"):
        analysis = chipnet_tf.analyze(model)
    assert analysis.stopped == ["mha"]
    assert [g.name for g in analysis.groups] == []
    expected = _dense_flops(6, 5, 8) + _mha_flops(6, 6, 8, 8, 8, 2, 4, 4, 8) + _dense_flops(6, 8, 3)
    assert chipnet_tf.count_flops(model) == expected == analysis.spec.dense("flops")


def test_masks_that_close_every_head_are_refused():
    model = build("tf_keras", vit)
    masks = {"mha0/heads": np.zeros(4, bool)}
    with pytest.raises(ValueError, match="every one of layer 'mha0'.s heads"):
        chipnet_tf.strip_pruning(model, masks=masks)


def test_latency_tables_time_attention_at_kept_heads_and_widths():
    """A latency table times an attention call at kept heads x output widths: its lookup
    reads the heads' group and the stream it writes."""
    analysis = chipnet_tf.analyze(build("tf_keras", vit), warn=False)
    calls = {call["name"]: call for call in chipnet_tf.latency.timed_calls(analysis)}
    assert [name for name, call in calls.items() if call["kind"] == "attention"] == ["mha0", "mha1"]
    spec = analysis.spec
    heads, stream = spec.group_names.index("mha1/heads"), spec.group_names.index("patch")
    for form, group in ((calls["mha1"]["f_in"], heads), (calls["mha1"]["f_out"], stream)):
        assert spec.form_const[form] == 0 and spec.form_matrix[form].nonzero()[0].tolist() == [group]
    model, shapes = chipnet_tf.latency.timing.one_op_model(calls["mha1"]["signature"], 2, 8)
    assert shapes == [(49, 8), (49, 8)]
    layer = model.layers[-1]
    assert layer.get_config()["num_heads"] == 2 and model.output_shape == (1, 49, 8)
