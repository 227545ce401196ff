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
- ``Reshape``: ``reshape``.

Any other Operation (``GetItem``, ``Split``, ``Softmax``, ``Cumsum``, ...) is opaque: the
analysis stops the groups around it with its usual warning. This module does not import
Keras 3: Operation classes are matched by name in :func:`chipnet_tf.registry.table.lookup`.

Example:
    >>> from chipnet_tf.registry.keras3ops import OP_RULES
    >>> sorted(OP_RULES)[:3]
    ['Abs', 'Absolute', 'Add']
"""

import numpy as np

from chipnet_tf.compat import tf
from chipnet_tf.registry.tfops import _binary, _is_tensor
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


def _op_kind(op, rank):
    """The :class:`Kind` of one ``keras.ops`` call (see the module docstring)."""
    name = type(op).__name__
    call = _call(op) if rank else None
    if call is None:
        return Kind.OPAQUE
    args, kwargs = call
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


KERAS3_OP_RULE = LayerRule(_op_kind)

# Operation class name (a class of a ``keras.src.ops`` module) -> rule.
OP_RULES = dict.fromkeys(
    sorted(_ZERO_PRESERVING | _CHANNELWISE | set(_BINARY) | _REDUCTIONS | {"Concatenate", "Reshape"}),
    KERAS3_OP_RULE,
)
