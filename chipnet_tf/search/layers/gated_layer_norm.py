"""GatedLayerNormalization: LayerNormalization over channels whose statistics skip pruned channels."""

from chipnet_tf.compat import keras, register, tf
from chipnet_tf.search.layers.segments import check_segments, data_shape, expand_mask, segments_config


def can_gate(layer, rank):
    """Whether ``layer`` is a LayerNormalization over the last (channel) axis only."""
    if type(layer) is not keras.layers.LayerNormalization or not rank:
        return False
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return [a % rank for a in axis] == [rank - 1]


@register
class GatedLayerNormalization(keras.layers.LayerNormalization):
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
        super().__init__(**kwargs)
        self.segments, self.repeat = check_segments("GatedLayerNormalization", segments, repeat)
        self._autocast = False

    def build(self, input_shape):
        input_shape = data_shape(input_shape)
        super().build(input_shape)
        rank = len(input_shape)
        if [a % rank for a in self.axis] != [rank - 1]:
            raise ValueError(f"GatedLayerNormalization normalizes the last axis only. Received axis={self.axis}.")

    def call(self, inputs):
        x, masks = inputs[0], inputs[1:]
        m = expand_mask(self.segments, self.repeat, masks)
        xf = tf.cast(x, tf.float32)
        total = tf.maximum(tf.reduce_sum(m), 1e-12)
        mean = tf.reduce_sum(xf * m, axis=-1, keepdims=True) / total
        var = tf.reduce_sum(tf.square(xf - mean) * m, axis=-1, keepdims=True) / total
        y = (xf - mean) * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * tf.cast(self.gamma, tf.float32)
        if self.center:
            y = y + tf.cast(self.beta, tf.float32)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), **segments_config(self)}
