"""The ChipNet paper's convolutional architectures as plain tf_keras functional models.

Every model is channels-last and built only from built-in Keras layers (no ``Lambda``, no
TF ops on symbolic tensors, no custom layers), so the graph analysis in ``chipnet_tf.analysis.groups``
can walk it and ``keras.models.clone_model`` can rebuild it. Layer names are deterministic
(``stage2_block1_conv2`` and so on), which keeps masks and reports stable across runs.

Convolutions that feed a BatchNormalization have no bias; BatchNormalization uses PyTorch's
defaults (momentum 0.9, epsilon 1e-5) because the reference results were trained in PyTorch.

Example:

    from chipnet_tf import architectures

    model = architectures.get("wrn26_12", num_classes=100)
"""

from chipnet_tf.compat import keras

__all__ = ["mobilenet_v2_cifar", "preresnet", "resnet50_cifar", "small_cnn", "wrn"]

_INIT = "he_normal"


def _conv(x, filters, kernel, strides=1, name=None):
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer=_INIT, name=name
    )(x)


def _bn(x, name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def _bn_relu(x, prefix):
    return _relu(_bn(x, f"{prefix}_bn"), f"{prefix}_relu")


def _head(x, num_classes):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.layers.Dense(num_classes, kernel_initializer=_INIT, name="logits")(x)


def _scale(channels, width):
    return max(1, int(round(channels * width)))


def _make_divisible(value, divisor=8):
    # Same rounding as keras.applications.MobileNetV2: never drop more than 10% below value.
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def wrn(depth=26, widen_factor=12, num_classes=10, input_shape=(32, 32, 3), dropout=0.0, name=None):
    """Wide ResNet for CIFAR (Zagoruyko & Komodakis, 2016), pre-activation form.

    A 16-channel 3x3 stem, then three stages of ``(depth - 2) // 6`` basic blocks with
    ``16k``, ``32k`` and ``64k`` channels (``k = widen_factor``); the first block of stages 2
    and 3 has stride 2. Each block is BN-ReLU-Conv3x3-BN-ReLU-(Dropout)-Conv3x3; when the
    shape changes the BN-ReLU is shared and a 1x1 convolution projects the shortcut. The
    network ends with BN-ReLU, global average pooling and a dense classifier.

    Args:
      depth: total depth ``6n + 2`` (n basic blocks per stage). ChipNet's WRN-26-12 has n = 4.
      widen_factor: channel multiplier ``k``.
      num_classes: number of output logits.
      input_shape: channels-last input shape.
      dropout: dropout rate between the two convolutions of each block; 0 disables it.
      name: model name; defaults to ``f"wrn{depth}_{widen_factor}"``.

    Returns:
      A ``keras.Model``.

    Raises:
      ValueError: if ``(depth - 2) % 6 != 0`` or ``depth < 8``.

    Example:

        model = wrn(26, 12)  # WRN-26-12 for CIFAR-10
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"WRN depth must be 6n + 2 with n >= 1 (8, 14, 20, 26, ...). Received: depth={depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(inputs, 16, 3, name="stem_conv")
    channels = 16
    for stage, base in enumerate((16, 32, 64), start=1):
        filters = base * widen_factor
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            preact = _bn_relu(x, f"{prefix}_preact")
            if strides != 1 or channels != filters:
                shortcut = _conv(preact, filters, 1, strides, name=f"{prefix}_shortcut_conv")
            else:
                shortcut = x
            y = _conv(preact, filters, 3, strides, name=f"{prefix}_conv1")
            y = _bn_relu(y, f"{prefix}_2")
            if dropout:
                y = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(y)
            y = _conv(y, filters, 3, name=f"{prefix}_conv2")
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            channels = filters
    x = _bn_relu(x, "final")
    return keras.Model(inputs, _head(x, num_classes), name=name or f"wrn{depth}_{widen_factor}")


def preresnet(depth=164, num_classes=10, input_shape=(32, 32, 3), name=None):
    """Pre-activation bottleneck ResNet for CIFAR (He et al., 2016, "Identity Mappings").

    A 16-channel 3x3 stem, then three stages of ``(depth - 2) // 9`` bottleneck blocks with
    16, 32 and 64 bottleneck channels (outputs 64, 128, 256). Each block is
    BN-ReLU-Conv1x1-BN-ReLU-Conv3x3-BN-ReLU-Conv1x1; the first block of every stage shares
    its BN-ReLU with a 1x1 projection shortcut (stride 2 in stages 2 and 3). The network ends
    with BN-ReLU, global average pooling and a dense classifier.

    Args:
      depth: total depth ``9n + 2``; 164 gives 18 blocks per stage.
      num_classes: number of output logits.
      input_shape: channels-last input shape.
      name: model name; defaults to ``f"preresnet{depth}"``.

    Returns:
      A ``keras.Model``.

    Raises:
      ValueError: if ``(depth - 2) % 9 != 0`` or ``depth < 11``.

    Example:

        model = preresnet(164, num_classes=100)
    """
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"PreResNet depth must be 9n + 2 with n >= 1 (11, 20, ..., 164). Received: depth={depth}")
    blocks = (depth - 2) // 9
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(inputs, 16, 3, name="stem_conv")
    for stage, planes in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            preact = _bn_relu(x, f"{prefix}_preact")
            if block == 1:
                shortcut = _conv(preact, planes * 4, 1, strides, name=f"{prefix}_shortcut_conv")
            else:
                shortcut = x
            y = _conv(preact, planes, 1, name=f"{prefix}_conv1")
            y = _conv(_bn_relu(y, f"{prefix}_2"), planes, 3, strides, name=f"{prefix}_conv2")
            y = _conv(_bn_relu(y, f"{prefix}_3"), planes * 4, 1, name=f"{prefix}_conv3")
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
    x = _bn_relu(x, "final")
    return keras.Model(inputs, _head(x, num_classes), name=name or f"preresnet{depth}")


def resnet50_cifar(num_classes=10, input_shape=(32, 32, 3), width=1.0, name=None):
    """ResNet-50 (v1 bottleneck, post-activation) with a CIFAR stem.

    The stem is a 3x3 stride-1 convolution with no max-pool; stages have [3, 4, 6, 3]
    bottleneck blocks (Conv1x1-BN-ReLU-Conv3x3-BN-ReLU-Conv1x1-BN, add, ReLU) with
    64/128/256/512 bottleneck channels and 4x expansion. The stride sits on the 3x3
    convolution; the first block of each stage has a Conv1x1-BN projection shortcut.

    Args:
      num_classes: number of output logits.
      input_shape: channels-last input shape.
      width: multiplier for every channel count (bottleneck channels are rounded to an
        integer >= 1 and the block output is 4x that).
      name: model name; defaults to ``"resnet50_cifar"``.

    Returns:
      A ``keras.Model``.

    Example:

        tiny = resnet50_cifar(width=0.125)  # same topology, 1/64 of the parameters
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(inputs, _scale(64, width), 3, name="stem_conv")
    x = _bn_relu(x, "stem")
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        planes = _scale(planes, width)
        for block in range(1, blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            if block == 1:
                shortcut = _conv(x, planes * 4, 1, strides, name=f"{prefix}_shortcut_conv")
                shortcut = _bn(shortcut, f"{prefix}_shortcut_bn")
            else:
                shortcut = x
            y = _bn_relu(_conv(x, planes, 1, name=f"{prefix}_conv1"), f"{prefix}_1")
            y = _bn_relu(_conv(y, planes, 3, strides, name=f"{prefix}_conv2"), f"{prefix}_2")
            y = _bn(_conv(y, planes * 4, 1, name=f"{prefix}_conv3"), f"{prefix}_3_bn")
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = _relu(x, f"{prefix}_out_relu")
    return keras.Model(inputs, _head(x, num_classes), name=name or "resnet50_cifar")


# (expansion t, output channels c, repeats n, stride s); the first two stride-2 stages of the
# ImageNet network run at stride 1 for 32x32 inputs, as in kuangliu/pytorch-cifar.
_MOBILENET_V2_CIFAR = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2_cifar(num_classes=10, input_shape=(32, 32, 3), alpha=1.0, name=None):
    """MobileNetV2 (Sandler et al., 2018) for CIFAR.

    The block structure follows ``keras.applications.MobileNetV2``: a Conv1x1-BN-ReLU6
    expansion (skipped when t = 1), DepthwiseConv3x3-BN-ReLU6, a linear Conv1x1-BN
    projection, and an identity residual when stride is 1 and channels match. For CIFAR the
    stem is stride 1 and the stage strides are (1, 1, 2, 2, 1, 2, 1), so a 32x32 input
    reaches 4x4. A 1x1 convolution to 1280 channels, global average pooling and a dense
    classifier finish the network.

    Args:
      num_classes: number of output logits.
      input_shape: channels-last input shape.
      alpha: width multiplier; channel counts are rounded to multiples of 8 as in
        keras.applications, and the last convolution stays at 1280 unless ``alpha > 1``.
      name: model name; defaults to ``"mobilenet_v2_cifar"``.

    Returns:
      A ``keras.Model``.

    Example:

        tiny = mobilenet_v2_cifar(alpha=0.25)
    """
    inputs = keras.Input(shape=input_shape, name="input")
    channels = _make_divisible(32 * alpha)
    x = _conv(inputs, channels, 3, name="stem_conv")
    x = keras.layers.ReLU(6.0, name="stem_relu6")(_bn(x, "stem_bn"))
    index = 0
    for expansion, filters, repeats, stage_stride in _MOBILENET_V2_CIFAR:
        filters = _make_divisible(filters * alpha)
        for repeat in range(repeats):
            prefix = f"block{index}"
            strides = stage_stride if repeat == 0 else 1
            y = x
            if expansion != 1:
                y = _conv(y, channels * expansion, 1, name=f"{prefix}_expand_conv")
                y = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu6")(_bn(y, f"{prefix}_expand_bn"))
            y = keras.layers.DepthwiseConv2D(
                3,
                strides=strides,
                padding="same",
                use_bias=False,
                depthwise_initializer=_INIT,
                name=f"{prefix}_depthwise",
            )(y)
            y = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu6")(_bn(y, f"{prefix}_depthwise_bn"))
            y = _bn(_conv(y, filters, 1, name=f"{prefix}_project_conv"), f"{prefix}_project_bn")
            if strides == 1 and channels == filters:
                y = keras.layers.Add(name=f"{prefix}_add")([x, y])
            x, channels = y, filters
            index += 1
    last = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = _conv(x, last, 1, name="last_conv")
    x = keras.layers.ReLU(6.0, name="last_relu6")(_bn(x, "last_bn"))
    return keras.Model(inputs, _head(x, num_classes), name=name or "mobilenet_v2_cifar")


def small_cnn(num_classes=10, input_shape=(8, 8, 1), width=32, name=None):
    """A small residual CNN for the 8x8 digits dataset.

    Conv3x3-BN-ReLU stem with ``width`` channels, a basic block at stride 1 with an identity
    shortcut, a basic block at stride 2 to ``2 * width`` channels with a Conv1x1-BN projection,
    then global average pooling and a dense classifier. Blocks are post-activation
    (Conv-BN-ReLU-Conv-BN, add, ReLU).

    Args:
      num_classes: number of output logits.
      input_shape: channels-last input shape.
      width: stem channels; the second block has twice as many.
      name: model name; defaults to ``"small_cnn"``.

    Returns:
      A ``keras.Model``.

    Example:

        model = small_cnn(width=16)
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = _bn_relu(_conv(inputs, width, 3, name="stem_conv"), "stem")
    for block, (filters, strides) in enumerate(((width, 1), (2 * width, 2)), start=1):
        prefix = f"block{block}"
        if strides != 1:
            shortcut = _bn(_conv(x, filters, 1, strides, name=f"{prefix}_shortcut_conv"), f"{prefix}_shortcut_bn")
        else:
            shortcut = x
        y = _bn_relu(_conv(x, filters, 3, strides, name=f"{prefix}_conv1"), f"{prefix}_1")
        y = _bn(_conv(y, filters, 3, name=f"{prefix}_conv2"), f"{prefix}_2_bn")
        x = _relu(keras.layers.Add(name=f"{prefix}_add")([shortcut, y]), f"{prefix}_out_relu")
    return keras.Model(inputs, _head(x, num_classes), name=name or "small_cnn")
