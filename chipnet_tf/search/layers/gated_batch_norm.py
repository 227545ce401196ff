"""GatedBatchNormalization: BatchNormalization with a channel gate folded into scale/offset."""

import threading

from chipnet_tf import tf_ops
from chipnet_tf.compat import keras, register
from chipnet_tf.search.layers.segments import check_segments, data_shape, expand_mask, segments_config


def can_fold(layer, rank):
    """Whether a channel gate after ``layer`` can be folded into it as GatedBatchNormalization.

    True for a channels-last BatchNormalization (of either Keras) with a learned scale (the
    fold multiplies the scale and the offset by the mask:
    ``BN(x; gamma*m, beta*m) == m * BN(x; gamma, beta)``).
    """
    klass = type(layer)
    axis = layer.axis if isinstance(getattr(layer, "axis", None), (list, tuple)) else [getattr(layer, "axis", None)]
    return (
        klass.__name__ == "BatchNormalization"
        and klass.__module__.startswith(("tf_keras.", "keras."))
        and layer.scale
        and not getattr(layer, "renorm", False)
        and getattr(layer, "virtual_batch_size", None) is None
        and not getattr(layer, "synchronized", False)
        and rank is not None
        and list(axis) in ([rank - 1], [-1])
    )


class GatedBatchNormLogic:
    """What :class:`GatedBatchNormalization` computes, for either Keras (``_ops``)."""

    _ops = tf_ops

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(**kwargs)
        if not self.scale:
            raise ValueError("GatedBatchNormalization needs scale=True (the mask is folded into the scale).")
        self.segments, self.repeat = check_segments("GatedBatchNormalization", segments, repeat)
        # The masked scale/offset are handed to BatchNormalization.call through the
        # ``gamma``/``beta`` properties below; thread-local, because MirroredStrategy traces
        # its replicas in separate threads that may interleave inside one call.
        object.__setattr__(self, "_chipnet_local", threading.local())

    @property
    def gamma(self):
        override = getattr(self._chipnet_local, "gamma", None)
        return override if override is not None else self.__dict__.get("_chipnet_gamma")

    @gamma.setter
    def gamma(self, value):
        object.__setattr__(self, "_chipnet_gamma", value)

    @property
    def beta(self):
        override = getattr(self._chipnet_local, "beta", None)
        return override if override is not None else self.__dict__.get("_chipnet_beta")

    @beta.setter
    def beta(self, value):
        object.__setattr__(self, "_chipnet_beta", value)

    def build(self, input_shape):
        super().build(data_shape(input_shape))
        self.input_spec = None

    def call(self, inputs, training=None):
        ops = self._ops
        x, masks = inputs[0], inputs[1:]
        mask = expand_mask(self.segments, self.repeat, masks, ops)
        gamma, beta = self.__dict__.get("_chipnet_gamma"), self.__dict__.get("_chipnet_beta")
        local = self._chipnet_local
        local.gamma = gamma * ops.cast(mask, gamma.dtype)
        local.beta = None if beta is None else beta * ops.cast(mask, beta.dtype)
        try:
            return super().call(x, training=training)
        finally:
            local.gamma = local.beta = None

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), **segments_config(self)}


@register
class GatedBatchNormalization(GatedBatchNormLogic, keras.layers.BatchNormalization):
    """BatchNormalization whose output channels are multiplied by ChipNet group masks.

    Called as ``bn([x, mask_a, mask_b, ...])``. Computes exactly
    ``mask * BatchNormalization(x)``, but folds the mask into the per-channel scale and
    offset (``BN(x; gamma*m, beta*m)``), so the gate costs O(channels) instead of a
    multiply over the whole activation in the forward and backward pass. Moving
    statistics, ``training`` handling and weights are those of BatchNormalization, so
    ``strip_pruning`` turns it back into a plain BatchNormalization.

    Example:
        >>> bn = GatedBatchNormalization(segments=[["conv1", 2]])
        >>> y = bn([tf.ones((1, 2)), tf.constant([0.0, 1.0])])
        >>> y.shape
        TensorShape([1, 2])

    Args:
        segments: layout of the channel axis, ``[[group name or None, length], ...]``.
        repeat: how many times the segments are tiled along the channel axis.
        **kwargs: BatchNormalization arguments (``axis`` must be the last axis and
            ``scale`` True).
    """

    def __init__(self, segments, repeat=1, **kwargs):
        super().__init__(segments, repeat, **kwargs)
        self._autocast = False  # masks stay float32; BatchNormalization.call casts x itself
