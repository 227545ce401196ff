"""A small vision transformer of built-in tf_keras layers (the transformer guide's and
benchmark's model).

Example:

    from chipnet_tf import architectures

    model = architectures.vit(depth=2, width=32)
"""

from chipnet_tf.compat import keras

__all__ = ["vit"]


def vit(num_classes=10, input_shape=(28, 28, 1), patch=4, depth=6, width=64, heads=4, mlp=128, name=None):
    """A small vision transformer (ViT; Dosovitskiy et al., 2021) for 28x28 images.

    Non-overlapping ``patch`` x ``patch`` patches embedded by a strided convolution to
    ``width`` channels, positions encoded by a 3x3 depthwise convolution over the patch grid
    added to it (CPVT's position encoding generator, Chu et al., 2023: built-in layers only,
    and it keeps the model's input size free), ``depth`` pre-norm blocks of
    multi-head self-attention (``heads`` heads of ``width // heads``) and a GELU MLP of
    ``mlp`` hidden units on a residual stream, a final LayerNormalization, the mean over
    tokens and a dense classifier. Every width is a channel group: the residual stream, each
    block's heads and each MLP's hidden units.

    Args:
      num_classes: number of output logits.
      input_shape: channels-last input shape; height and width divisible by ``patch``.
      patch, depth, width, heads, mlp: the transformer's sizes.
      name: model name; defaults to ``"vit"``.

    Returns:
      A ``keras.Model``.

    Example:

        model = vit(depth=2, width=32)
    """
    if input_shape[0] % patch or input_shape[1] % patch or width % heads:
        raise ValueError(
            "vit needs an input height and width divisible by patch and a width divisible by heads. "
            f"Received: input_shape={tuple(input_shape)}, patch={patch}, width={width}, heads={heads}"
        )
    rows, cols = input_shape[0] // patch, input_shape[1] // patch
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(width, patch, strides=patch, name="patch_embed")(inputs)
    position = keras.layers.DepthwiseConv2D(3, padding="same", name="position_conv")(x)
    x = keras.layers.Add(name="position_add")([x, position])
    x = keras.layers.Reshape((rows * cols, width), name="tokens")(x)
    for b in range(1, depth + 1):
        prefix = f"block{b}"
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln1")(x)
        y = keras.layers.MultiHeadAttention(heads, width // heads, name=f"{prefix}_attn")(y, y)
        x = keras.layers.Add(name=f"{prefix}_add1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln2")(x)
        y = keras.layers.Dense(mlp, activation="gelu", name=f"{prefix}_mlp1")(y)
        y = keras.layers.Dense(width, name=f"{prefix}_mlp2")(y)
        x = keras.layers.Add(name=f"{prefix}_add2")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name or "vit")
