"""GatedLayerNormalization: LayerNormalization over channels whose statistics skip pruned channels."""

from chipnet_tf import tf_ops
from chipnet_tf.compat import keras, register
from chipnet_tf.search.layers.segments import check_segments, data_shape, expand_mask, segments_config


def can_gate(layer, rank):
    """Whether ``layer`` is a LayerNormalization (of either Keras) over the last (channel)
    axis only, without Keras 3's RMS scaling."""
    klass = type(layer)
    if (
        klass.__name__ != "LayerNormalization"
        or not klass.__module__.startswith(("tf_keras.", "keras."))
        or getattr(layer, "rms_scaling", False)
        or not rank
    ):
        return False
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return [a % rank for a in axis] == [rank - 1]


class GatedLayerNormLogic:
    """What :class:`GatedLayerNormalization` computes, for either Keras (``_ops``)."""

    _ops = tf_ops

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(**kwargs)
        self.segments, self.repeat = check_segments("GatedLayerNormalization", segments, repeat)

    def build(self, input_shape):
        input_shape = data_shape(input_shape)
        super().build(input_shape)
        rank = len(input_shape)
        axis = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [a % rank for a in axis] != [rank - 1]:
            raise ValueError(f"GatedLayerNormalization normalizes the last axis only. Received axis={self.axis}.")

    def call(self, inputs):
        ops = self._ops
        x, masks = inputs[0], inputs[1:]
        m = expand_mask(self.segments, self.repeat, masks, ops)
        xf = ops.cast(x, "float32")
        total = ops.maximum(ops.sum(m), 1e-12)
        mean = ops.sum(xf * m, axis=-1, keepdims=True) / total
        var = ops.sum(ops.square(xf - mean) * m, axis=-1, keepdims=True) / total
        y = (xf - mean) * ops.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * ops.cast(self.gamma, "float32")
        if self.center:
            y = y + ops.cast(self.beta, "float32")
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), **segments_config(self)}


@register
class GatedLayerNormalization(GatedLayerNormLogic, keras.layers.LayerNormalization):
    """LayerNormalization over channels whose mean and variance are weighted by the masks.

    Called as ``ln([x, mask_a, ...])`` with the masks of its *input* channel layout. A
    LayerNormalization mixes channels through its statistics, so removing a channel changes
    every output; with mask-weighted statistics ``mean = sum(m x) / sum(m)`` the wrapped
    model under hard 0/1 masks computes exactly the LayerNormalization of the kept
    channels, which is what ``strip_pruning`` builds. With all masks 1 it is a plain
    LayerNormalization. Pruned channels' outputs are zeroed by the gates after it.

    Example:
        >>> ln = GatedLayerNormalization(segments=[["conv", 3]])
        >>> y = ln([tf.constant([[1.0, 3.0, 100.0]]), tf.constant([1.0, 1.0, 0.0])])
        >>> [round(float(v), 3) for v in y[0, :2]]
        [-1.0, 1.0]

    Args:
        segments: layout of the channel axis, ``[[group name or None, length], ...]``.
        repeat: how many times the segments are tiled along the channel axis.
        **kwargs: LayerNormalization arguments (``axis`` must be the last axis).
    """

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(segments, repeat, **kwargs)
        self._autocast = False
