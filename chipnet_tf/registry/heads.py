"""The rule of ``MultiHeadAttention``: a producer that reads its query, value and key and
whose heads are a channel group of their own.

An attention layer ``y = O(concat_h softmax(Q_h K_h^T / sqrt(d_k)) V_h)`` with ``H`` heads:

- its **heads** are an inner group (``LayerRule(inner=...)``, named ``"<layer>/heads"``): a
  removed head takes its columns of the query, key and value projections and its rows of
  the output projection with it, and ``num_heads`` shrinks in the stripped layer. The
  wrapped model multiplies each head's attention output by the head's mask before the
  output projection (:class:`chipnet_tf.search.layers.GatedMultiHeadAttention`), which is
  exactly the stripped layer under hard masks;
- its **inputs** are read like a Dense layer's: the query's, value's and key's channels
  may be pruned (rows of the three input projections);
- its **output** is a new channel space written by the output projection (the residual
  stream of a transformer, coupled with the skip connection by the Add after it).

Costs, per call, with ``T`` query and ``S`` value positions, ``K = key_dim``,
``V = value_dim``, kept heads ``h``, kept query/value/key channels ``q, v, k`` and kept
output channels ``o`` (biases when ``use_bias``)::

    params  K h q + K h k + V h v + V h o   (+ 2 K h + V h + o)
    flops   T K h q + S K h k + S V h v       projections
            + T S K h + T S V h                QK^T and AV (P T S for attention over some axes)
            + T V h o                          output projection
            (+ T K h + S K h + S V h + T o)    bias adds

The layer is a producer when it attends over its sequence axis and its query, value (and
key) are its only tensor inputs, given by position (``mha(q, v)`` or ``mha(q, v, k)``, the
key also as ``key=``); with a tensor ``attention_mask`` or Keras 3's ``use_gate`` it is
opaque (its FLOPs are still counted by the same formula).
"""

from chipnet_tf.compat import call_arguments
from chipnet_tf.registry.contractions import static_shape
from chipnet_tf.registry.vocabulary import Kind, LayerRule, prod, take

HEADS = "heads"
# The keyword argument that carries an inner group's mask in the wrapped model, by label.
MASK_ARGUMENTS = {HEADS: "head_mask"}


def _attention_axes(layer, rank):
    axes = getattr(layer, "_attention_axes", None)
    if axes is None:
        return tuple(range(1, rank - 1))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return tuple(int(a) % rank for a in axes)


def _output_width(layer):
    shape = getattr(layer, "_output_shape", None)
    if shape is None:
        return None
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
    return int(shape[0]) if len(shape) == 1 else -1


def _kind(layer, rank):
    if getattr(layer, "_use_gate", False) or _output_width(layer) == -1 or rank < 3:
        return Kind.OPAQUE
    return Kind.PRODUCER


def _tensor(x):
    return hasattr(x, "_keras_history")


_ROLES = ("query", "value", "key")


def input_roles(node):
    """The role of each tensor input of an attention call, in the order the flat graph
    lists them (the call's positional arguments, then its keyword arguments by name):
    ``"query"``, ``"value"``, ``"key"``, or the keyword's name (``"attention_mask"``,
    ``"head_mask"``). A loaded tf_keras model may pass the value by keyword."""
    return _roles_of(*call_arguments(node))


def _roles_of(args, kwargs):
    roles = [_ROLES[i] if i < len(_ROLES) else f"arg{i}" for i, a in enumerate(args) if _tensor(a)]
    return roles + [name for name in sorted(kwargs) if _tensor(kwargs[name])]


def _by_role(roles, values):
    """``(query, value, key)`` entries of ``values``, one per data input of ``roles`` (a
    wrapped layer's mask input left out; query, value, key when ``roles`` is None). The
    value defaults to the query and the key to the value, as in the layer."""
    roles = [r for r in roles if r != MASK_ARGUMENTS[HEADS]] if roles is not None else None
    if roles is None or len(roles) != len(values):
        roles = list(_ROLES[: len(values)])
    named = dict(zip(roles, values))
    query = named.get("query", values[0] if values else None)
    value = named.get("value", query)
    return query, value, named.get("key", value)


def _layout(ctx):
    """Opaque unless the call's only tensors are its query, value and key (and a wrapped
    layer's head mask)."""
    roles = input_roles(ctx.fnode.node)
    allowed = set(_ROLES) | {MASK_ARGUMENTS[HEADS]}
    if not set(roles) <= allowed or "query" not in roles or "value" not in roles:
        return None
    return ctx.out


def _inner(layer):
    return [(HEADS, int(layer._num_heads))]


def _dims(layer):
    key_dim = int(layer._key_dim)
    value_dim = int(layer._value_dim) if layer._value_dim else key_dim
    return key_dim, value_dim


def _costs(builder, ctx):
    """See the module docstring; ``ctx.in_forms`` are the query's, value's and (when
    given) key's channel forms."""
    layer = ctx.layer
    key_dim, value_dim = _dims(layer)
    bias = 1 if layer._use_bias else 0
    roles = _roles_of(ctx.call_args, ctx.call_kwargs) if ctx.call_args or ctx.call_kwargs else None
    fq, fv, fk = _by_role(roles, ctx.in_forms)
    fh = ctx.inner_forms.get(HEADS, builder.form(int(layer._num_heads), {}))
    fo = ctx.out_form
    shapes = [static_shape(shape) for shape in ctx.in_shapes] or [static_shape(ctx.in_shape)]
    if roles is not None and len(shapes) == len(roles):  # a wrapped layer counted with its mask input
        shapes = [shape for shape, role in zip(shapes, roles) if role != MASK_ARGUMENTS[HEADS]]
    q_shape, v_shape, _ = _by_role(roles, shapes)
    rank = len(q_shape)
    axes = _attention_axes(layer, rank)
    t, s = prod(q_shape[1:-1]), prod(v_shape[1:-1])
    shared = prod(q_shape[a] for a in range(1, rank - 1) if a not in axes)
    pairs = shared * prod(q_shape[a] for a in axes) * prod(v_shape[a] for a in axes)
    if ctx.first_call:
        builder.add("params", ctx.name, key_dim, fq, fh)
        builder.add("params", ctx.name, key_dim, fk, fh)
        builder.add("params", ctx.name, value_dim, fv, fh)
        builder.add("params", ctx.name, value_dim, fh, fo)
        builder.add("params", ctx.name, bias * (2 * key_dim + value_dim), fh)
        builder.add("params", ctx.name, bias, fo)
    builder.add("flops", ctx.name, t * key_dim, fq, fh)
    builder.add("flops", ctx.name, s * key_dim, fk, fh)
    builder.add("flops", ctx.name, s * value_dim, fv, fh)
    builder.add("flops", ctx.name, pairs * (key_dim + value_dim), fh)
    builder.add("flops", ctx.name, t * value_dim, fh, fo)
    builder.add("flops", ctx.name, bias * (t * key_dim + s * key_dim + s * value_dim), fh)
    builder.add("flops", ctx.name, bias * t, fo)
    # The projections' outputs are channels too: K and V per kept head, and the output.
    builder.add("channels", ctx.name, 1, fo)
    builder.add("channels", ctx.name, 2 * key_dim + value_dim, fh)
    builder.add("volume", ctx.name, t, fo)
    builder.add("volume", ctx.name, t * key_dim + s * (key_dim + value_dim), fh)


def _surgery(ctx):
    """Slices heads (``ctx.inner_keeps["heads"]``), input rows and output columns."""
    w = ctx.weights
    heads = ctx.inner_keeps.get(HEADS)
    q_keep, v_keep, k_keep = _by_role(_roles_of(ctx.call_args, ctx.call_kwargs), ctx.in_keeps)
    bias = bool(ctx.layer._use_bias)
    n = 2 if bias else 1
    query, key, value, output = w[0:n], w[n : 2 * n], w[2 * n : 3 * n], w[3 * n : 4 * n]
    sliced = []
    for part, keep in ((query, q_keep), (key, k_keep), (value, v_keep)):
        sliced.append(take(take(part[0], keep, 0), heads, 1))
        if bias:
            sliced.append(take(part[1], heads, 0))
    sliced.append(take(take(output[0], heads, 0), ctx.out_keep, 2))
    if bias:
        sliced.append(take(output[1], ctx.out_keep, 0))
    config = ctx.config
    config["num_heads"] = int(sliced[0].shape[1])
    out_width = int(sliced[-1 if not bias else -2].shape[-1])
    if config.get("output_shape") is not None or out_width != int(sliced[0].shape[0]):
        config["output_shape"] = out_width
    # tf_keras builds the layer from these shapes in from_config.
    for name, width in (("query_shape", sliced[0].shape[0]), ("key_shape", sliced[n].shape[0])):
        if config.get(name) is not None:
            config[name] = tuple(config[name])[:-1] + (int(width),)
    if config.get("value_shape") is not None:
        config["value_shape"] = tuple(config["value_shape"])[:-1] + (int(sliced[2 * n].shape[0]),)
    return config, sliced


MULTI_HEAD_ATTENTION = LayerRule(_kind, _costs, _surgery, flops=True, layout=_layout, inner=_inner, multi_input=True)
