"""Parameter counts, shapes and layer hygiene of chipnet_tf.architectures.

Expected parameter counts are derived here from the architecture definitions, independently
of the builders. Keras counts 4 parameters per BatchNormalization channel (gamma, beta and
the two moving statistics); PyTorch-style figures in papers count only the 2 trainable ones,
so those are compared against the trainable count.
"""

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import architectures
from chipnet_tf.compat import keras

BN = 4  # parameters per BatchNormalization channel in Keras' count_params()


def _trainable(model):
    return sum(int(w.shape.num_elements()) for w in model.trainable_weights)


def wrn_params(depth, k, classes):
    """Pre-activation WRN: stem 3x3x3x16; per stage s with input c and width w (n blocks):
    conv 9cw + 9w^2 + 18(n-1)w^2 (+ cw projection if c != w), BN over c + w + 2(n-1)w; final BN(64k); dense."""
    n = (depth - 2) // 6
    conv, bn = 27 * 16, 64 * k
    for c, w in ((16, 16 * k), (16 * k, 32 * k), (32 * k, 64 * k)):
        conv += 9 * c * w + 9 * w * w + 18 * (n - 1) * w * w + (c * w if c != w else 0)
        bn += c + w + 2 * (n - 1) * w
    return conv, bn, 64 * k * classes + classes


def preresnet_params(depth, classes):
    """Pre-activation bottleneck ResNet: per stage with input c and bottleneck p (n blocks), the first block has
    conv cp + 9p^2 + 4p^2 + 4cp (projection) and BN c + 2p; the other n-1 have conv 17p^2 and BN 6p."""
    n = (depth - 2) // 9
    conv, bn = 27 * 16, 256
    for c, p in ((16, 16), (64, 32), (128, 64)):
        conv += 5 * c * p + 13 * p * p + 17 * (n - 1) * p * p
        bn += c + 2 * p + 6 * (n - 1) * p
    return conv, bn, 256 * classes + classes


def resnet50_params(classes):
    """ResNet-50 v1, 3x3 stem: per stage with input c, bottleneck p and blocks b, the first block has conv
    5cp + 13p^2 (projection included) and BN 10p; the other b-1 have conv 17p^2 and BN 6p."""
    conv, bn = 27 * 64, 64
    for c, p, b in ((64, 64, 3), (256, 128, 4), (512, 256, 6), (1024, 512, 3)):
        conv += 5 * c * p + 13 * p * p + 17 * (b - 1) * p * p
        bn += 10 * p + 6 * (b - 1) * p
    return conv, bn, 2048 * classes + classes


def mobilenet_v2_params(classes):
    """MobileNetV2 (alpha 1): stem 3x3x3x32; block c -> o with expansion t: expand c*tc (t != 1), depthwise 9tc,
    project tc*o, BN tc (t != 1) + tc + o; last conv 320x1280 + BN; dense."""
    conv, bn, c = 27 * 32, 32 + 1280, 32
    for t, o, n in ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)):
        for _ in range(n):
            conv += (c * t * c if t != 1 else 0) + 9 * t * c + t * c * o
            bn += (t * c if t != 1 else 0) + t * c + o
            c = o
    return conv + 320 * 1280, bn, 1280 * classes + classes


@pytest.fixture(scope="module")
def wrn26_12():
    return architectures.get("wrn26_12")


@pytest.fixture(scope="module")
def preresnet164():
    return architectures.get("preresnet164")


@pytest.fixture(scope="module")
def resnet50():
    return architectures.resnet50_cifar()


def test_wrn26_12_count_params_equals_formula(wrn26_12):
    conv, bn, dense = wrn_params(26, 12, 10)
    assert (conv, bn, dense) == (52_488_624, 10_768, 7_690)
    assert wrn26_12.count_params() == conv + BN * bn + dense == 52_539_386
    assert _trainable(wrn26_12) == conv + 2 * bn + dense == 52_517_850
    assert wrn26_12.name == "wrn26_12"


def test_preresnet164_count_params_equals_formula_and_paper(preresnet164):
    conv, bn, dense = preresnet_params(164, 10)
    assert preresnet164.count_params() == conv + BN * bn + dense == 1_727_482
    assert _trainable(preresnet164) == conv + 2 * bn + dense == 1_703_258
    assert _trainable(preresnet164) == pytest.approx(1.70e6, rel=0.02)  # He et al. 2016: 1.7M
    assert preresnet164.name == "preresnet164"


def test_resnet50_cifar_count_params_equals_formula(resnet50):
    conv, bn, dense = resnet50_params(10)
    assert resnet50.count_params() == conv + BN * bn + dense == 23_573_962
    assert resnet50.count_params() == pytest.approx(23.5e6, rel=0.01)
    # kuangliu/pytorch-cifar's ResNet50 reports 23,520,842 parameters (trainable only).
    assert _trainable(resnet50) == conv + 2 * bn + dense == 23_520_842


def test_mobilenet_v2_cifar_count_params_equals_formula():
    model = architectures.mobilenet_v2_cifar()
    conv, bn, dense = mobilenet_v2_params(10)
    assert model.count_params() == conv + BN * bn + dense == 2_270_794
    assert _trainable(model) == conv + 2 * bn + dense == 2_236_682


@pytest.mark.parametrize("alpha", [0.25, 1.0])
def test_mobilenet_v2_cifar_count_params_equals_keras_applications(alpha):
    # Strides do not change parameter counts, so the ImageNet network is a reference for any alpha.
    reference = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=alpha, weights=None, classes=10)
    assert architectures.mobilenet_v2_cifar(alpha=alpha).count_params() == reference.count_params()


TINY = {
    "resnet50_cifar": dict(width=0.125),
    "mobilenet_v2_cifar": dict(alpha=0.25),
    "wrn": dict(depth=8, widen_factor=1, dropout=0.1),
    "preresnet": dict(depth=11),
    "small_cnn": dict(width=8, input_shape=(8, 8, 1)),
    "vit": dict(input_shape=(8, 8, 1), patch=2, depth=1, width=8, heads=2, mlp=4),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_model_forward_gives_logits(name):
    model = architectures.get(name, num_classes=7, **TINY[name])
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    assert model.output_shape == (None, 7)
    assert model(x, training=False).shape == (2, 7)


@pytest.mark.parametrize(
    "name, layer, size",
    [
        ("resnet50_cifar", "stage4_block3_out_relu", 4),
        ("mobilenet_v2_cifar", "last_relu6", 4),
        ("wrn", "final_relu", 8),
    ],
)
def test_cifar_models_downsample_32_to_expected_size(name, layer, size):
    model = architectures.get(name, **TINY[name])
    assert model.get_layer(layer).output_shape[1:3] == (size, size)


def test_models_use_only_builtin_keras_layers(wrn26_12, preresnet164, resnet50):
    models = [wrn26_12, preresnet164, resnet50] + [architectures.get(name, **TINY[name]) for name in TINY]
    for model in models:
        for layer in model.layers:
            assert type(layer).__module__.startswith("tf_keras.src.layers.") or type(layer).__name__ == "InputLayer"
            assert type(layer).__name__ not in ("Lambda", "TFOpLambda", "SlicingOpLambda")


def test_layer_names_are_deterministic():
    first, second = (architectures.small_cnn(width=4) for _ in range(2))
    assert [layer.name for layer in first.layers] == [layer.name for layer in second.layers]
    assert first.get_layer("block2_shortcut_conv").kernel.shape == (1, 1, 4, 8)


def test_vit_count_params_equals_formula_and_its_groups():
    model = architectures.vit()
    block = 2 * 2 * 64 + (4 * 64 * 64 + 3 * 64 + 64) + (64 * 128 + 128 + 128 * 64 + 64)  # norms, attention, MLP
    stem = (4 * 4 * 64 + 64) + (3 * 3 * 64 + 64)  # patch embedding and position convolution
    assert model.count_params() == stem + 6 * block + 2 * 64 + (64 * 10 + 10) == 203_338
    groups = [(g.name, g.size) for g in chipnet_tf.analyze(model, warn=False).groups]
    assert groups[:3] == [("patch_embed", 64), ("block1_attn/heads", 4), ("block1_mlp1", 128)]
    assert len(groups) == 13


def test_vit_bad_patch_raises():
    with pytest.raises(ValueError, match="Received: input_shape=\\(30, 30, 1\\), patch=4"):
        architectures.vit(input_shape=(30, 30, 1))


def test_wrn_bad_depth_raises():
    with pytest.raises(ValueError, match="Received: depth=27"):
        architectures.wrn(depth=27)


def test_preresnet_bad_depth_raises():
    with pytest.raises(ValueError, match="Received: depth=165"):
        architectures.preresnet(depth=165)


def test_get_unknown_name_raises_listing_names():
    with pytest.raises(ValueError) as info:
        architectures.get("nope")
    assert "Received: name='nope'" in str(info.value)
    assert all(name in str(info.value) for name in architectures.NAMES)
    assert architectures.NAMES == (
        "wrn",
        "wrn26_12",
        "preresnet",
        "preresnet164",
        "resnet50_cifar",
        "mobilenet_v2_cifar",
        "small_cnn",
        "vit",
    )


def test_build_makes_architectures_and_keras_applications_with_logits():
    """One builder for the recipes' and chipnet-tf's --model."""
    assert architectures.build("small_cnn", num_classes=3).output_shape == (None, 3)
    app = architectures.build("MobileNetV2", input_shape=(32, 32, 3), num_classes=7, alpha=0.35)
    assert app.output_shape == (None, 7)
    assert app.layers[-1].get_config()["activation"] == "linear"  # logits, like this module's models
    with pytest.raises(ValueError, match="Unknown model 'nope'. Accepted: wrn, wrn26_12, "):
        architectures.build("nope")
