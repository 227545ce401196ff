"""Channel groups found in keras.applications models (weights=None, built offline)."""

import pytest

import chipnet_tf
from chipnet_tf.compat import keras


@pytest.fixture(scope="module")
def resnet50():
    return keras.applications.ResNet50(weights=None)


@pytest.fixture(scope="module")
def mobilenetv2():
    return keras.applications.MobileNetV2(weights=None)


@pytest.fixture(scope="module")
def densenet121():
    return keras.applications.DenseNet121(weights=None)


def _by_name(analysis):
    return {g.name: g for g in analysis.groups}


def _layout(analysis, layer_name):
    key = next(k for n in analysis.graph.nodes if n.name == layer_name for k in n.out_keys)
    segments, repeat = analysis.layouts[key]
    return [(None if g is None else analysis.groups[g].name, n) for g, n in segments], repeat


def test_resnet50_residual_stages_share_one_group(resnet50):
    analysis = chipnet_tf.analyze(resnet50)
    groups = _by_name(analysis)
    assert len(analysis.groups) == 37  # conv1 + 2 inner convs x 16 blocks + 4 stages
    stage_sizes = {}
    for stage, blocks in (("conv2", 3), ("conv3", 4), ("conv4", 6), ("conv5", 3)):
        writers = {f"{stage}_block1_0_conv"} | {f"{stage}_block{b}_3_conv" for b in range(1, blocks + 1)}
        group = next(g for g in analysis.groups if f"{stage}_block1_3_conv" in g.writers)
        assert set(group.writers) == writers
        stage_sizes[stage] = group.size
        for b in range(1, blocks + 1):
            assert groups[f"{stage}_block{b}_1_conv"].writers == [f"{stage}_block{b}_1_conv"]
    assert stage_sizes == {"conv2": 256, "conv3": 512, "conv4": 1024, "conv5": 2048}
    # the classifier's outputs are not a group; its inputs are the conv5 stage group
    assert "predictions" not in groups
    assert _layout(analysis, "avg_pool") == ([(group.name, 2048)], 1)
    # gates after every BN of a conv (53 convs)
    assert len(analysis.gates) == 53
    assert analysis.spec.dense("params") == resnet50.count_params() == 25_636_712


def test_mobilenetv2_depthwise_joins_input_group(mobilenetv2):
    analysis = chipnet_tf.analyze(mobilenetv2)
    groups = _by_name(analysis)
    assert groups["Conv1"].writers == ["Conv1", "expanded_conv_depthwise"]
    for b in range(1, 17):
        assert groups[f"block_{b}_expand"].writers == [f"block_{b}_expand", f"block_{b}_depthwise"]
        assert groups[f"block_{b}_expand"].size == mobilenetv2.get_layer(f"block_{b}_expand").filters
    # inverted residuals couple the projections of a stage
    assert set(groups["block_1_project"].writers) == {"block_1_project", "block_2_project"}
    assert set(groups["block_3_project"].writers) == {"block_3_project", "block_4_project", "block_5_project"}
    assert set(groups["block_13_project"].writers) == {"block_13_project", "block_14_project", "block_15_project"}
    assert len(analysis.groups) == 25
    assert analysis.spec.dense("params") == mobilenetv2.count_params()
    assert analysis.spec.dense("flops") == 300_775_272  # multiply-accumulates + bias adds


def test_densenet121_concat_outputs_map_to_input_groups(densenet121):
    analysis = chipnet_tf.analyze(densenet121)
    groups = _by_name(analysis)
    # 58 dense layers x 2 convs + stem + 3 transitions = 120 groups
    assert len(analysis.groups) == 120
    segments, repeat = _layout(analysis, "conv2_block6_concat")
    assert repeat == 1
    assert segments == [("conv1/conv", 64)] + [(f"conv2_block{b}_2_conv", 32) for b in range(1, 7)]
    segments, _ = _layout(analysis, "conv3_block12_concat")
    assert segments[0] == ("pool2_conv", 128) and len(segments) == 13
    # BN -> ReLU on a concat feeds a conv: gated there with the concatenated layout
    gated = [analysis.gate_origin[k] for k in analysis.gates]
    assert "conv2_block2_0_relu" in gated
    assert groups["conv2_block1_2_conv"].size == 32
    assert analysis.spec.dense("params") == densenet121.count_params()


def test_flatten_dense_tiles_the_channel_layout():
    L = keras.layers
    x = keras.Input((3, 3, 2))
    h = L.Conv2D(4, 2, name="c")(x)  # 2x2x4
    h = L.Flatten(name="flat")(h)
    h = L.Dense(6, name="fc")(h)
    out = L.Dense(3, name="head")(h)
    analysis = chipnet_tf.analyze(keras.Model(x, out))
    assert _layout(analysis, "flat") == ([("c", 4)], 4)
    spec = analysis.spec
    # fc params: (4 positions * C) * F + F; with C=2, F=3 kept: 8*3 + 3 = 27
    assert spec.layer_values([2, 3], "params")["fc"] == 27


def test_opaque_layer_stops_groups_with_warning():
    L = keras.layers
    x = keras.Input((4, 4, 3))
    a = L.Conv2D(4, 1, name="a")(x)
    # mixes channels (a channel-local Lambda is probed and seen through)
    b = L.Lambda(lambda t: t - keras.backend.mean(t, axis=-1, keepdims=True), name="center")(a)
    c = L.Conv2D(4, 1, name="b")(b)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(c))
    with pytest.warns(UserWarning, match=r"cannot be seen through.*\['center'\]"):
        analysis = chipnet_tf.analyze(keras.Model(x, out))
    assert [g.name for g in analysis.groups] == ["b"]


def test_nested_model_is_flattened():
    L = keras.layers
    inner_in = keras.Input((4, 4, 8))
    inner = keras.Model(inner_in, L.ReLU()(L.Conv2D(8, 1, name="inner_conv")(inner_in)), name="block")
    x = keras.Input((4, 4, 3))
    h = L.Conv2D(8, 1, name="stem")(x)
    h = inner(h)
    out = L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h))
    model = keras.Model(x, out)
    analysis = chipnet_tf.analyze(model)
    assert [g.name for g in analysis.groups] == ["stem", "inner_conv"]
    assert analysis.spec.dense("params") == model.count_params()
