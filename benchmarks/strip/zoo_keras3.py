"""The zoo benchmark on Keras 3 (``python -m benchmarks.strip.zoo_reach --keras 3``).

The same rows as :mod:`benchmarks.strip.zoo_reach`, for models built with Keras 3
(``import keras``, TensorFlow backend):

- Keras 3's ``keras.applications`` models of the tf_keras table (96x96, ``weights=None``,
  10 classes, logits); Keras 3 has no RegNet, so those rows are absent;
- keras-hub backbones built from explicit constructor arguments (random weights, never a
  preset), each under keras-hub's own image classifier head (10 classes, logits): ResNet,
  MobileNetV3, EfficientNet, CSPDarkNet, DenseNet, VGG and the vision transformers ViT,
  DeiT and DINOv2 (small configurations at small inputs).

The independent count (``tests/flops_oracle.py``) walks the ops of the model's frozen batch-1
``tf.function`` trace: the MACs of its convolution, MatMul, BatchMatMul and Einsum ops from their
static shapes (an Einsum's from its equation's index sizes), split into ``weighted`` (an operand
is a weight: convolutions, ``Dense``, ``EinsumDense``) and ``activations`` (two computed
operands: attention's ``QK^T`` and ``AV``), plus the ``bias`` adds (``BiasAdd``, and the AddV2
of a constant onto such an op's output that Keras 3 writes for ``EinsumDense`` and one-channel
biases). Keras 3 runs a grouped Conv2D on CPU through an XLA-compiled function the graph does
not show; it is traced as the plain convolution it is. ``count_flops`` is compared with the
total.
"""

# The keras.applications models of the tf_keras table that Keras 3 has (no RegNet); the tf_keras
# table (benchmarks.strip.zoo_reach.MODELS) is the RegNets and these.
APPLICATIONS = (
    "MobileNetV3Small",
    "MobileNetV3Large",
    "ConvNeXtTiny",
    "ResNet50",
    "ResNet50V2",
    "MobileNet",
    "MobileNetV2",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "DenseNet121",
    "InceptionV3",
    "Xception",
    "NASNetMobile",
    "VGG16",
)
SIZE = 96
CLASSES = 10


def _mobilenet_v3_small(hub, shape):
    """keras-hub's MobileNetV3 backbone with timm's mobilenetv3_small_100 arguments."""
    return hub.models.MobileNetBackbone(
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_expansion=[[72, 88], [96, 240, 240], [120, 144], [288, 576, 576]],
        stackwise_num_filters=[[24, 24], [40, 40, 40], [48, 48], [96, 96, 96]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [0.25] * 3, [0.25] * 2, [0.25] * 3],
        stackwise_activation=[["relu", "relu"], ["hard_swish"] * 3, ["hard_swish"] * 2, ["hard_swish"] * 3],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        output_num_filters=1024,
        input_num_filters=16,
        depthwise_filters=16,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=576,
        input_activation="hard_swish",
        output_activation="hard_swish",
        image_shape=shape,
    )


def _efficientnet_b0(hub, shape):
    """keras-hub's EfficientNet backbone with timm's efficientnet_b0 arguments."""
    return hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 7,
        stackwise_depth_coefficients=[1.0] * 7,
        stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
        stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
        stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
        stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
        stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=["v1"] * 7,
        min_depth=None,
        include_stem_padding=True,
        use_depth_divisor_as_min_depth=True,
        cap_round_filter_decrease=True,
        stem_conv_padding="valid",
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        dropout=0,
        projection_activation=None,
        input_shape=shape,
    )


def _cspdarknet53(hub, shape):
    """keras-hub's CSPNet backbone with timm's cspdarknet53 arguments."""
    return hub.models.CSPNetBackbone(
        stem_filters=32,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 2, 8, 8, 4],
        stackwise_num_filters=[64, 128, 256, 512, 1024],
        stackwise_strides=[2, 2, 2, 2, 2],
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0),
        stem_padding="same",
        stem_pooling=None,
        stage_type="csp",
        groups=1,
        block_type="dark_block",
        down_growth=True,
        avg_down=False,
        cross_linear=False,
        image_shape=shape,
    )


def _resnet(hub, shape, blocks, block_type, **kwargs):
    return hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2],
        block_type=block_type,
        image_shape=shape,
        **kwargs,
    )


def _resnet18(hub, shape):
    return _resnet(hub, shape, [2, 2, 2, 2], "basic_block")


def _resnet50_v2(hub, shape):
    return _resnet(hub, shape, [3, 4, 6, 3], "bottleneck_block", use_pre_activation=True)


def _vit(hub, shape):
    return hub.models.ViTBackbone(
        image_shape=shape, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128
    )


def _deit(hub, shape):
    return hub.models.DeiTBackbone(
        image_shape=shape, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128
    )


def _dinov2(hub, shape):
    return hub.models.DINOV2Backbone(
        patch_size=8,
        num_layers=2,
        hidden_dim=64,
        num_heads=2,
        intermediate_dim=128,
        image_shape=shape,
        position_embedding_shape=shape,
    )


# name -> (backbone builder, input size, classifier class name in keras_hub.models, its pooling)
HUB = {
    "hub.ResNet18": (_resnet18, SIZE, "ImageClassifier", "avg"),
    "hub.ResNet50V2": (_resnet50_v2, SIZE, "ImageClassifier", "avg"),
    "hub.MobileNetV3Small": (_mobilenet_v3_small, SIZE, "ImageClassifier", "avg"),
    "hub.EfficientNetB0": (_efficientnet_b0, SIZE, "ImageClassifier", "avg"),
    "hub.CSPDarkNet53": (_cspdarknet53, SIZE, "ImageClassifier", "avg"),
    "hub.DenseNet121": (
        lambda hub, shape: hub.models.DenseNetBackbone(stackwise_num_repeats=[6, 12, 24, 16], image_shape=shape),
        SIZE,
        "ImageClassifier",
        "avg",
    ),
    "hub.VGG16": (
        lambda hub, shape: hub.models.VGGBackbone(
            stackwise_num_repeats=[2, 2, 3, 3, 3], stackwise_num_filters=[64, 128, 256, 512, 512], image_shape=shape
        ),
        SIZE,
        "ImageClassifier",
        "avg",
    ),
    "hub.ViT": (_vit, 32, "ViTImageClassifier", "token"),
    "hub.DeiT": (_deit, 32, "DeiTImageClassifier", "token"),
    "hub.DINOV2": (_dinov2, 32, None, "token"),  # keras-hub has no DINOv2 classifier: x[:, 0] -> Dense
}
TRANSFORMERS = ("hub.ViT", "hub.DeiT", "hub.DINOV2")
MODELS = APPLICATIONS + tuple(HUB)
# What the JSON file says about its rows.
HEADER = {
    "keras": "Keras 3 (TensorFlow backend); keras.applications at 96x96, keras-hub backbones under their image "
    "classifier (10 classes, logits), random weights from explicit constructor arguments",
    "input_sizes": {name: size for name, (_, size, _, _) in HUB.items()},
    "independent_count": "MACs of the Conv/MatMul/BatchMatMul/Einsum ops of the frozen batch-1 trace (grouped "
    "convs traced inline; an Einsum's from its equation) + bias adds (BiasAdd, and AddV2 of a constant onto such "
    "an op): 'weighted' (a weight operand), 'activations' (two computed operands: attention), 'bias'; "
    "profiler_exact: count_flops == their total",
}


def build(name):
    """The Keras 3 model ``name`` (a keras.applications name or a key of :data:`HUB`)."""
    import keras

    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    if name not in HUB:
        factory = getattr(keras.applications, name)
        return factory(input_shape=(SIZE, SIZE, 3), weights=None, classes=CLASSES, classifier_activation=None)
    import keras_hub

    backbone_of, size, head, pooling = HUB[name]
    backbone = backbone_of(keras_hub, (size, size, 3))
    if head is None:  # the class token of the backbone's output sequence
        x = keras.Input((size, size, 3), name="images")
        return keras.Model(x, keras.layers.Dense(CLASSES, name="predictions")(backbone(x)[:, 0]))
    head_class = getattr(keras_hub.models, head)
    return head_class(backbone=backbone, num_classes=CLASSES, activation=None, pooling=pooling)


def independent_counts(model):
    """The independent count of ``model``'s MACs + bias adds and what it is made of: the walk
    over its frozen batch-1 graph's ops of :func:`tests.flops_oracle.oracle_counts`."""
    from tests.flops_oracle import oracle_counts

    return oracle_counts(model)


def perturb_batchnorm(model, rng):
    """Random BatchNormalization statistics (far from the identity) in ``model`` and every
    model nested in it."""
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


def random_input(model, rng):
    shape = tuple(model.inputs[0].shape[1:])
    return rng.uniform(0, 255, size=(2, *shape)).astype("float32")


__all__ = ["HEADER", "MODELS", "build", "independent_counts"]
