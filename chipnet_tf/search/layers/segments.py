"""Channel-layout helpers shared by the gate layers (ChannelGate, GatedBatchNormalization,
GatedLayerNormalization).

A gate layer is called as ``layer([x, mask_a, mask_b, ...])``; its channel axis is
described by ``segments`` (``[[group name or None, length], ...]``, None marking channels
that are never pruned) tiled ``repeat`` times (a flattened feature map).
"""

from chipnet_tf import tf_ops


def check_segments(owner, segments, repeat):
    """``(segments, repeat)`` normalised (``[[group name or None, length], ...]``, int)."""
    out = [[None if g is None else str(g), int(n)] for g, n in segments]
    if not out or int(repeat) < 1:
        raise ValueError(f"{owner} needs segments and repeat >= 1. Received: {segments!r}, {repeat!r}")
    return out, int(repeat)


def expand_mask(segments, repeat, masks, ops=tf_ops):
    """The full float32 channel mask for a ``segments``/``repeat`` layout (``ops``:
    ``keras.ops`` in a Keras 3 layer, :mod:`chipnet_tf.tf_ops` in a tf_keras one)."""
    masks = list(masks)
    pieces = []
    for group, n in segments:
        pieces.append(ops.ones((n,), "float32") if group is None else ops.cast(masks.pop(0), "float32"))
    mask = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=0)
    if repeat > 1:
        mask = ops.tile(mask, [repeat])
    return mask


def data_shape(input_shape):
    """The shape of ``x`` out of the input shape of a ``[x, *masks]`` call."""
    if isinstance(input_shape, (list, tuple)) and input_shape and not isinstance(input_shape[0], (int, type(None))):
        return input_shape[0]
    return input_shape


def segments_config(layer):
    """The ``segments``/``repeat`` part of a gate layer's config."""
    return {"segments": [list(s) for s in layer.segments], "repeat": layer.repeat}
