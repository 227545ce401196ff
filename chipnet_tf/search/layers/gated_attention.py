"""GatedMultiHeadAttention: a MultiHeadAttention whose heads are multiplied by their masks."""

from chipnet_tf import tf_ops
from chipnet_tf.compat import keras, register
from chipnet_tf.registry.heads import MASK_ARGUMENTS  # noqa: F401 - public here too


class GatedAttentionLogic:
    """What :class:`GatedMultiHeadAttention` adds to the attention layer of either Keras
    (``_ops``: the ops namespace): each head's attention output (``softmax(Q K^T) V``,
    shape ``(..., heads, value_dim)``) is multiplied by the head's mask before the output
    projection. Under a hard mask this is exactly the layer with the closed heads removed:
    their columns of the query, key and value projections and their rows of the output
    projection contribute nothing else."""

    _ops = tf_ops

    def call(self, query, value, key=None, head_mask=None, **kwargs):
        self._head_mask = head_mask
        try:
            return super().call(query, value, key=key, **kwargs)
        finally:
            self._head_mask = None

    def _compute_attention(self, *args, **kwargs):
        output, scores = super()._compute_attention(*args, **kwargs)
        mask = getattr(self, "_head_mask", None)
        if mask is not None:
            ops = self._ops
            output = output * ops.cast(ops.reshape(mask, (-1, 1)), output.dtype)
        return output, scores


@register
class GatedMultiHeadAttention(GatedAttentionLogic, keras.layers.MultiHeadAttention):
    """A ``MultiHeadAttention`` called with ``head_mask``, one value per head, that scales
    each head's attention output before the output projection; ``prune_low_budget`` puts it
    in place of an attention layer whose heads are a channel group, and
    :func:`chipnet_tf.strip_pruning` turns it back into a ``MultiHeadAttention`` with the
    kept heads only. Its config and weights are the attention layer's.

    Example:
        >>> mha = GatedMultiHeadAttention(num_heads=2, key_dim=4)
        >>> x = tf.ones((1, 3, 8))
        >>> y = mha(x, x, head_mask=tf.constant([1.0, 0.0]))
        >>> y.shape.as_list()
        [1, 3, 8]
    """
