"""FLOPs of ``MultiHeadAttention`` (tf_keras and Keras 3).

One call on a query of ``Tq`` positions and ``Dq`` features and a value (and key) of ``Tv``
positions, with ``H`` heads of key size ``dk`` and value size ``dv`` and an output of ``Do``
features, costs (multiply-accumulates, plus a bias add per projected element when the layer
uses biases):

- the query, key and value projections: ``Tq*Dq*H*dk``, ``Tv*Dk*H*dk`` and ``Tv*Dv*H*dv``;
- the attention scores ``QK^T``: ``H*Tq*Tv*dk``, and their weighted sum of the values ``AV``:
  ``H*Tq*Tv*dv`` (over the attention axes; the other axes repeat them);
- the output projection: ``Tq*H*dv*Do``, and its bias ``Tq*Do``.

Every term but the output bias is a multiple of the number of heads: :func:`attention_costs`
gives the cost of one head and the shared rest, :func:`multi_head_attention_flops` their total.
Softmax, scaling and masking are not multiply-accumulates and cost nothing by the convention.
"""

import dataclasses
import inspect

from chipnet_tf.registry.contractions import static_shape
from chipnet_tf.registry.vocabulary import prod


@dataclasses.dataclass(frozen=True)
class AttentionCosts:
    """FLOPs of one ``MultiHeadAttention`` call: ``heads * per_head + shared``.

    Attributes:
        heads: the number of heads.
        projections: per head, the query, key and value projections with their biases.
        scores: per head, ``QK^T``.
        weighted_values: per head, ``AV``.
        output: per head, the output projection's MACs.
        output_bias: the output projection's bias adds (shared by the heads).
    """

    heads: int
    projections: int
    scores: int
    weighted_values: int
    output: int
    output_bias: int

    @property
    def per_head(self):
        return self.projections + self.scores + self.weighted_values + self.output

    @property
    def total(self):
        return self.heads * self.per_head + self.output_bias


def _attention_axes(layer, rank):
    axes = getattr(layer, "_attention_axes", None)
    if axes is None:
        return tuple(range(1, rank - 1))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return tuple(a % rank for a in axes)


def _output_features(layer, query_shape):
    out = getattr(layer, "_output_shape", None)
    if not out:
        return query_shape[-1]
    return prod(out) if isinstance(out, (tuple, list)) else int(out)


def attention_costs(layer, query_shape, value_shape, key_shape=None):
    """The :class:`AttentionCosts` of one call of the ``MultiHeadAttention`` ``layer`` on a
    query, value and key of these shapes (batch axis included; the key defaults to the value)."""
    query, value = static_shape(query_shape), static_shape(value_shape)
    key = value if key_shape is None else static_shape(key_shape)
    heads, dk = int(layer._num_heads), int(layer._key_dim)
    dv = int(layer._value_dim or dk)
    bias = 1 if layer._use_bias else 0
    tq, tv = prod(query[1:-1]), prod(value[1:-1])
    axes = _attention_axes(layer, len(query))
    pairs = prod(query[a] for a in axes) * tv  # (query, key) position pairs that attend
    do = _output_features(layer, query)
    return AttentionCosts(
        heads=heads,
        projections=tq * (query[-1] + bias) * dk + tv * (key[-1] + bias) * dk + tv * (value[-1] + bias) * dv,
        scores=pairs * dk,
        weighted_values=pairs * dv,
        output=tq * dv * do,
        output_bias=tq * do * bias,
    )


def multi_head_attention_flops(layer, query_shape, value_shape, key_shape=None):
    """FLOPs of one call of the ``MultiHeadAttention`` ``layer``: the query, key, value and
    output projections with their biases, ``QK^T`` and ``AV`` (see the module docstring).

    Example:
        >>> mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)  # doctest: +SKIP
        >>> multi_head_attention_flops(mha, (None, 49, 64), (None, 49, 64))  # doctest: +SKIP
        1122688
    """
    return attention_costs(layer, query_shape, value_shape, key_shape).total


def call_shapes(layer, args, kwargs):
    """``(query, value, key)`` shapes of one call (the key None when not given), or None."""
    try:
        bound = inspect.signature(layer.call).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return None
    if "query" not in bound or "value" not in bound:
        return None
    key = bound.get("key")
    return tuple(bound["query"].shape), tuple(bound["value"].shape), None if key is None else tuple(key.shape)


def multi_head_attention_costs(builder, ctx):
    """The cost terms of a ``MultiHeadAttention`` call (opaque: constants)."""
    shapes = call_shapes(ctx.layer, ctx.call_args, ctx.call_kwargs)
    if shapes is None:  # no call recorded: self-attention on the first input
        shapes = (ctx.in_shape, ctx.in_shape, None)
    builder.add("flops", ctx.name, multi_head_attention_flops(ctx.layer, *shapes), builder.one)
