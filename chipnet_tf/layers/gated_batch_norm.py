"""GatedBatchNormalization: BatchNormalization with a channel gate folded into scale/offset."""

import threading

from chipnet_tf.compat import keras, register, tf


def expand_mask(segments, repeat, masks):
    """The full float32 channel mask for a ``segments``/``repeat`` layout (see ChannelGate)."""
    masks = list(masks)
    pieces = []
    for group, n in segments:
        pieces.append(tf.ones((n,), tf.float32) if group is None else tf.cast(masks.pop(0), tf.float32))
    mask = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)
    if repeat > 1:
        mask = tf.tile(mask, [repeat])
    return mask


def check_segments(owner, segments, repeat):
    """``(segments, repeat)`` normalised (``[[group name or None, length], ...]``, int)."""
    out = [[None if g is None else str(g), int(n)] for g, n in segments]
    if not out or int(repeat) < 1:
        raise ValueError(f"{owner} needs segments and repeat >= 1. Received: {segments!r}, {repeat!r}")
    return out, int(repeat)


def can_fold(layer, rank):
    """Whether a channel gate after ``layer`` can be folded into it as GatedBatchNormalization.

    True for a channels-last BatchNormalization with a learned scale (the fold multiplies
    the scale and the offset by the mask: ``BN(x; gamma*m, beta*m) == m * BN(x; gamma, beta)``).
    """
    return (
        type(layer) is keras.layers.BatchNormalization
        and layer.scale
        and not layer.renorm
        and layer.virtual_batch_size is None
        and not getattr(layer, "synchronized", False)
        and rank is not None
        and list(layer.axis) in ([rank - 1], [-1])
    )


@register
class GatedBatchNormalization(keras.layers.BatchNormalization):
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
        super().__init__(**kwargs)
        if not self.scale:
            raise ValueError("GatedBatchNormalization needs scale=True (the mask is folded into the scale).")
        self.segments, self.repeat = check_segments("GatedBatchNormalization", segments, repeat)
        # The masked scale/offset are handed to BatchNormalization.call through the
        # ``gamma``/``beta`` properties below; thread-local, because MirroredStrategy traces
        # its replicas in separate threads that may interleave inside one call.
        object.__setattr__(self, "_chipnet_local", threading.local())
        self._autocast = False  # masks stay float32; BatchNormalization.call casts x itself

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
        if isinstance(input_shape, (list, tuple)) and input_shape and not isinstance(input_shape[0], (int, type(None))):
            input_shape = input_shape[0]
        super().build(input_shape)
        self.input_spec = None

    def call(self, inputs, training=None):
        x, masks = inputs[0], inputs[1:]
        mask = expand_mask(self.segments, self.repeat, masks)
        gamma, beta = self.__dict__.get("_chipnet_gamma"), self.__dict__.get("_chipnet_beta")
        local = self._chipnet_local
        local.gamma = gamma * tf.cast(mask, gamma.dtype)
        local.beta = None if beta is None else beta * tf.cast(mask, beta.dtype)
        try:
            return super().call(x, training=training)
        finally:
            local.gamma = local.beta = None

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = {"segments": [list(s) for s in self.segments], "repeat": self.repeat}
        return {**super().get_config(), **config}
