"""ChannelGate: multiplies a tensor's channels by their groups' masks."""

from chipnet_tf import tf_ops
from chipnet_tf.compat import keras, register
from chipnet_tf.search.layers.segments import check_segments, expand_mask, segments_config


class ChannelGateLogic:
    """What :class:`ChannelGate` computes, for either Keras (``_ops``: the ops namespace)."""

    _ops = tf_ops

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(**kwargs)
        self.segments, self.repeat = check_segments("ChannelGate", segments, repeat)
        self.channels = sum(n for _, n in self.segments) * self.repeat

    def call(self, inputs):
        ops = self._ops
        x, masks = inputs[0], inputs[1:]
        return x * ops.cast(expand_mask(self.segments, self.repeat, masks, ops), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), **segments_config(self)}


@register
class ChannelGate(ChannelGateLogic, keras.layers.Layer):
    """Multiplies the channel (last) axis of ``x`` by the masks of its channel groups.

    Called as ``gate([x, mask_a, mask_b, ...])`` with one mask per pruned segment, in
    order. ``segments`` describes the channel axis: ``[[group name or None, length], ...]``
    (None marks channels that are never pruned), tiled ``repeat`` times (a flattened
    feature map). The mask is cast to ``x``'s dtype, so gates work under mixed precision.

    Example:
        >>> gate = ChannelGate(segments=[["conv1", 2], [None, 1]])
        >>> gate([tf.ones((1, 3)), tf.constant([0.0, 1.0])]).numpy().tolist()
        [[0.0, 1.0, 1.0]]

    Args:
        segments: layout of the channel axis, see above.
        repeat: how many times the segments are tiled along the channel axis.
    """

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(segments, repeat, **kwargs)
        self._autocast = False
