"""Rules for the ``keras.ops`` calls of a Keras 3 functional model.

Keras 3 has no TF-op layers: ``keras.ops.add(x, y)``, ``x * 2``, ``keras.ops.relu(x)`` or
``keras.ops.concatenate([a, b])`` between layers become ``Operation`` nodes (classes of
``keras.src.ops``, one instance per call). They map onto the same kinds as the TF-op calls
of :mod:`chipnet_tf.registry.tfops`, by the Operation's class name and the call's
arguments (``node.arguments``):

- element-wise activations of one tensor (``Relu``, ``Relu6``, ``Gelu``, ``Silu``,
  ``Tanh``, ...): ``passthrough``; ``Sigmoid``, ``HardSigmoid``, ``Exp``, ``Softplus``:
  ``channelwise``;
- ``Add``, ``Subtract``, ``Multiply``, ``Maximum``, ``Minimum`` of two tensors: ``merge``;
  of a tensor and a finite constant, ``passthrough`` when they keep a zero channel zero
  (``x * 2``) and ``channelwise`` otherwise (``x + 3``), as for ``tf.math`` ops;
  ``TrueDivide``/``Divide`` of a tensor by a non-zero constant: ``passthrough``;
- ``Concatenate`` (its axis is the Operation's ``axis``): ``concat``;
- ``Mean``/``Max``/``Min``/``Sum`` over axes other than the channel axis: ``passthrough``;
- ``Reshape``: ``reshape``;
- ``Split`` along the channel axis (``keras.ops.split(x, 2, axis=-1)``, CSPNet's stages) and
  ``GetItem`` (``x[..., a:b]``, ``x[:, 0]``) map channels by index, as ``tf.split`` and
  ``x[..., a:b]`` do for tf_keras: the input's channel space is cut into parts; a ``GetItem``
  that keeps every channel (``x[:, 0]``, a transformer's class token) is ``passthrough``. The
  stripped model calls a new ``Split`` with the kept part sizes, or the slice with the kept
  bounds (:func:`resliced_call`).

``Einsum`` and ``Matmul`` (``keras.ops.einsum``, ``keras.ops.matmul``) are opaque and cost their
multiply-accumulates (:mod:`chipnet_tf.registry.contractions`).

Any other Operation (``Softmax``, ``Cumsum``, ...) is opaque: the analysis stops the groups
around it with its usual warning. This module does not import
Keras 3: Operation classes are matched by name in :func:`chipnet_tf.registry.table.lookup`.

Example:
    >>> from chipnet_tf.registry.keras3ops import OP_RULES
    >>> sorted(OP_RULES)[:3]
    ['Abs', 'Absolute', 'Add']
"""

import numpy as np

from chipnet_tf.compat import tf
from chipnet_tf.registry.contractions import keras_op_costs
from chipnet_tf.registry.tfops import _binary, _channel_slice, _is_tensor
from chipnet_tf.registry.vocabulary import Kind, LayerRule

_ZERO_PRESERVING = frozenset(
    "Relu Relu6 Elu Selu Gelu Silu HardSilu LeakyRelu Celu Tanh Abs Absolute Negative Square Sign Sin "
    "Softsign Copy".split()
)
_CHANNELWISE = frozenset("Sigmoid HardSigmoid Exp Softplus Cos".split())
_BINARY = {
    "Add": "add",
    "Subtract": "sub",
    "Multiply": "mul",
    "TrueDivide": "div",
    "Divide": "div",
    "Maximum": "max",
    "Minimum": "min",
}
_REDUCTIONS = frozenset("Mean Max Min Sum".split())


def _call(op):
    """``(args, kwargs)`` of the Operation's (first) call, or None."""
    nodes = getattr(op, "_inbound_nodes", None)
    if not nodes:
        return None
    arguments = nodes[0].arguments
    return tuple(arguments.args), dict(arguments.kwargs)


def _unary_kind(name, args, kwargs):
    others = list(args[1:]) + list(kwargs.values())
    if not args or not _is_tensor(args[0]) or any(_is_tensor(v) for v in tf.nest.flatten(others)):
        return Kind.OPAQUE
    return Kind.PASSTHROUGH if name in _ZERO_PRESERVING else Kind.CHANNELWISE


def _binary_kind(name, args, kwargs):
    values = list(args) + list(kwargs.values())
    if len(values) != 2 or not any(_is_tensor(v) for v in values):
        return Kind.OPAQUE
    shape = next(tuple(v.shape) for v in values if _is_tensor(v))
    return _binary(_BINARY[name], {"x1": values[0], "x2": values[1]}, shape).kind


def _reduction_kind(op, rank):
    axis = getattr(op, "axis", None)
    axes = [axis] if isinstance(axis, (int, np.integer)) else axis
    if not isinstance(axes, (list, tuple)) or not all(isinstance(a, (int, np.integer)) for a in axes):
        return Kind.OPAQUE
    return Kind.OPAQUE if any(int(a) % rank == rank - 1 for a in axes) else Kind.PASSTHROUGH


def _channels(args):
    return args[0].shape[-1] if args and _is_tensor(args[0]) and args[0].shape else None


def _split_sizes(op, args, rank):
    """The part sizes of a ``Split`` along the channel axis, or None."""
    channels, n = _channels(args), op.indices_or_sections
    if channels is None or not isinstance(op.axis, (int, np.integer)) or int(op.axis) % rank != rank - 1:
        return None
    if isinstance(n, (int, np.integer)):
        return [channels // int(n)] * int(n) if int(n) > 0 and channels % int(n) == 0 else None
    bounds = [0, *(int(i) for i in n), channels]
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    return sizes if min(sizes) > 0 else None


def _slice_spec(key):
    """A ``GetItem`` key in the form :func:`chipnet_tf.registry.tfops._channel_slice` reads
    (python slices as ``{"start", "stop", "step"}``), or None."""
    entries = list(key) if isinstance(key, (tuple, list)) else [key]
    spec = []
    for e in entries:
        if isinstance(e, slice):
            spec.append({"start": e.start, "stop": e.stop, "step": e.step})
        elif e is Ellipsis or e is None or isinstance(e, (int, np.integer)):
            spec.append(e)
        else:
            return None  # a tensor index
    return spec


def _channel_part(args, rank):
    """``"all"``, ``(a, b, index in the key)`` or None for a ``GetItem`` call."""
    if len(args) != 2 or not _is_tensor(args[0]) or _channels(args) is None:
        return None
    spec = _slice_spec(args[1])
    return None if spec is None else _channel_slice(spec, rank, _channels(args))


def _op_kind(op, rank):
    """The :class:`Kind` of one ``keras.ops`` call (see the module docstring)."""
    name = type(op).__name__
    call = _call(op) if rank else None
    if call is None:
        return Kind.OPAQUE
    args, kwargs = call
    if name == "Split":
        return Kind.PASSTHROUGH if not kwargs and _split_sizes(op, args, rank) else Kind.OPAQUE
    if name == "GetItem":
        return Kind.OPAQUE if kwargs or _channel_part(args, rank) is None else Kind.PASSTHROUGH
    if name in _ZERO_PRESERVING or name in _CHANNELWISE:
        return _unary_kind(name, args, kwargs)
    if name in _BINARY:
        return _binary_kind(name, args, kwargs)
    if name == "Concatenate":
        parts = tf.nest.flatten(list(args) + list(kwargs.values()))
        tensors = [p for p in parts if _is_tensor(p)]
        return Kind.CONCAT if tensors and len(tensors) == len(parts) else Kind.OPAQUE
    if name in _REDUCTIONS:
        return _reduction_kind(op, rank)
    if name == "Reshape":
        return Kind.RESHAPE
    return Kind.OPAQUE


def _layout(ctx):
    """Split and GetItem cut their input's channel space; every other call keeps its kind's."""
    op, rank = ctx.fnode.layer, len(ctx.fnode.in_shapes[0])
    name = type(op).__name__
    if name not in ("Split", "GetItem"):
        return ctx.out
    args = tuple(ctx.fnode.node.arguments.args)
    if name == "Split":
        return ctx.spaces.split(ctx.in_lays[0], _split_sizes(op, args, rank))
    part = _channel_part(args, rank)
    if part == "all":
        return ctx.in_lays[0]
    a, b, _ = part
    length = ctx.in_lays[0].length
    parts = ctx.spaces.split(ctx.in_lays[0], [n for n in (a, b - a, length - b) if n])
    return None if parts is None else parts[1 if a else 0]


def _kept_before(keep, position):
    return int(np.sum(np.asarray(keep) < position))


def resliced_call(op, args, kwargs, in_keep):
    """For the stripped model: ``(operation, (args, kwargs))`` of a ``Split`` or ``GetItem``
    call whose input keeps the channels ``in_keep`` (a new ``Split`` with the kept part
    sizes, the slice's kept bounds), ``None`` for any other call; a ``GetItem`` that keeps
    every channel is called again as it is."""
    name = type(op).__name__
    if name not in ("Split", "GetItem") or in_keep is None:
        return None
    rank = len(args[0].shape)
    if name == "Split":
        bounds = np.cumsum([0, *_split_sizes(op, args, rank)])
        cuts = [_kept_before(in_keep, b) for b in bounds[1:-1]]
        return type(op)(cuts, axis=op.axis), (args, kwargs)
    part = _channel_part(args, rank)
    if part == "all":
        return op, (args, kwargs)
    a, b, index = part
    key = list(args[1]) if isinstance(args[1], (tuple, list)) else [args[1]]
    key[index] = slice(_kept_before(in_keep, a), _kept_before(in_keep, b))
    key = tuple(key) if isinstance(args[1], tuple) else (key if isinstance(args[1], list) else key[0])
    return op, ((args[0], key, *args[2:]), kwargs)


KERAS3_OP_RULE = LayerRule(_op_kind, layout=_layout)

# Operation class name (a class of a ``keras.src.ops`` module) -> rule.
OP_RULES = {
    **dict.fromkeys(
        sorted(
            _ZERO_PRESERVING
            | _CHANNELWISE
            | set(_BINARY)
            | _REDUCTIONS
            | {"Concatenate", "Reshape", "Split", "GetItem"}
        ),
        KERAS3_OP_RULE,
    ),
    **dict.fromkeys(("Einsum", "Matmul"), LayerRule(Kind.OPAQUE, costs=keras_op_costs, flops=True)),
}
