"""Rules for TF-op layers: the ``TFOpLambda``/``SlicingOpLambda`` calls that functional-API
math on Keras tensors creates (``x + 3``, ``tf.nn.relu6(x)``, ``x[..., :k]``, ``tf.split``).

A call is classified by its op (``layer.symbol``) and its arguments (the call's
``node.call_args``/``call_kwargs``), never by layer names:

- element-wise ops of one tensor, with scalar or per-channel constants (``x + 3``,
  ``x * (1 / 6)``, ``tf.nn.relu6``, ``tf.math.sigmoid``, ``tf.clip_by_value``,
  ``tf.maximum(x, 0)``): ``passthrough`` when they map 0 to 0 for every channel, else
  ``channelwise``; a per-channel constant is sliced with the channels;
- element-wise ops between two tensors (``x * tf.nn.relu6(x + 3)``): ``merge``;
- reductions over axes other than the channel axis (``tf.reduce_mean(x, [1, 2],
  keepdims=True)``): ``passthrough``;
- channel slicing and splitting (``x[..., a:b]``, ``tf.split(x, n, axis=-1)``) map channels
  by index: the input's channel space is cut into parts (:meth:`chipnet_tf.registry.layouts.Spaces.split`),
  the reverse of a concatenation; ``tf.concat`` along channels is a ``concat``;
- anything else, and any op that could turn a pruned (zero) channel into inf or NaN
  (``c / x``, ``log``, ``rsqrt``), is opaque, with the analysis' usual warning.

``tf.einsum`` and ``tf.matmul`` (``tf.linalg.matmul``, ``a @ b``) calls are opaque and cost
their multiply-accumulates (:mod:`chipnet_tf.registry.contractions`); other TF ops cost nothing.
"""

import dataclasses
import inspect

import numpy as np

from chipnet_tf.compat import keras, tf
from chipnet_tf.registry import tfops_shapes as shapes
from chipnet_tf.registry.contractions import tf_op_costs
from chipnet_tf.registry.layouts import concat_layout
from chipnet_tf.registry.vocabulary import Kind, LayerRule, take

_ZERO_PRESERVING = frozenset(
    "nn.relu nn.relu6 nn.elu nn.selu nn.gelu nn.silu nn.leaky_relu math.tanh math.abs math.negative "
    "math.square math.sign math.sin math.erf math.softsign nn.softsign identity cast convert_to_tensor".split()
)
_CHANNELWISE = frozenset("math.sigmoid math.exp math.softplus nn.softplus math.cos".split())
_BINARY = {
    "__operators__.add": "add",
    "math.add": "add",
    "math.subtract": "sub",
    "math.multiply": "mul",
    "math.truediv": "div",
    "math.divide": "div",
    "math.maximum": "max",
    "math.minimum": "min",
}
_REDUCTIONS = frozenset("math.reduce_mean math.reduce_max math.reduce_min math.reduce_sum".split())


def _is_tensor(value):
    return hasattr(value, "_keras_history")


@dataclasses.dataclass
class _Op:
    """A classified TF-op call: its kind and what its layout handler and surgery need."""

    kind: Kind
    constants: tuple = ()  # names of per-channel constant arguments to slice with the channels
    sizes: list = None  # tf.split: the part sizes along channels
    part: tuple = None  # x[..., a:b]: (a, b, index of the channel entry in the slice spec)
    concat_axis: int = None
    equal: bool = False  # tf.split(x, n): n equal parts, in the stripped model too
    shape_read: bool = False  # tf.shape(x): the output is a fixed shape vector, x's channels are not stopped
    target: bool = False  # tf.reshape: the last entry of its target shape is renumbered
    heads: int = None  # tf.reshape(x, [.., r, C / r]): the channel axis cut into r coupled parts
    joined: int = None  # tf.reshape(x, [.., r * k]) of x (.., r, k): r copies of the channel axis


_OPAQUE = _Op(Kind.OPAQUE)


def _arguments(layer, node):
    """``{parameter name: value}`` of one call of ``layer.function``, or None."""
    try:
        return dict(inspect.signature(layer.function).bind(*node.call_args, **node.call_kwargs).arguments)
    except (TypeError, ValueError):
        return None


def _channel_constant(value, shape):
    """``value`` as an array if it is a finite constant that broadcasts over ``shape``
    without changing it, per channel or for all channels; else None."""
    if _is_tensor(value) or isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        c = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(c)) or c.ndim > len(shape):
        return None
    dims = list(shape[len(shape) - c.ndim :]) if c.ndim else []
    if any(d != 1 and (s is None or d != s) for d, s in zip(c.shape, dims)):
        return None
    return c


def _binary(op, args, shape):
    """``x (op) c``, ``c (op) x`` or ``x (op) y``."""
    (xn, x), (yn, y) = list(args.items())[:2]
    if _is_tensor(x) and _is_tensor(y):
        return _OPAQUE if op == "div" else _Op(Kind.MERGE)
    tensor_first = _is_tensor(x)
    name, value = (yn, y) if tensor_first else (xn, x)
    c = _channel_constant(value, shape)
    if c is None or (op == "div" and (not tensor_first or np.any(c == 0))):
        return _OPAQUE
    zero = {
        "add": np.all(c == 0),
        "sub": np.all(c == 0),
        "mul": True,
        "div": True,
        "max": np.all(c <= 0),
        "min": np.all(c >= 0),
    }[op]
    return _Op(Kind.PASSTHROUGH if zero else Kind.CHANNELWISE, constants=(name,))


def _channel_slice(spec, rank, channels):
    """``(a, b, index)`` of a ``x[...]`` spec cutting only channels ``a:b``, or ``"all"``
    when it keeps every channel, or None."""
    spec = list(spec) if isinstance(spec, (tuple, list)) else [spec]
    if any(e is None for e in spec) or sum(e is Ellipsis for e in spec) > 1:
        return None
    if Ellipsis in spec:
        at = spec.index(Ellipsis)
        entries = [(i, e) for i, e in enumerate(spec) if e is not Ellipsis]
        fill = rank - len(entries)
        if fill < 0:
            return None
        positions = [(i, e) for i, e in entries[:at]] + [(None, None)] * fill + entries[at:]
    else:
        positions = list(enumerate(spec)) + [(None, None)] * (rank - len(spec))
    if len(positions) != rank:
        return None
    index, entry = positions[-1]
    if entry is None:
        return "all"
    if not isinstance(entry, dict):
        return None  # an integer index drops the channel axis
    bounds = [entry.get(k) for k in ("start", "stop", "step")]
    if any(v is not None and not isinstance(v, (int, np.integer)) for v in bounds) or bounds[2] not in (None, 1):
        return None
    picked = range(channels)[slice(*bounds)]
    if len(picked) == 0:
        return None
    if len(picked) == channels:
        return "all"
    return picked.start, picked.stop, index


def _classify(layer, node, rank):
    """The :class:`_Op` of one TF-op call."""
    args = _arguments(layer, node) if rank else None
    if not args:
        return _OPAQUE
    symbol = getattr(layer, "symbol", "")
    if symbol in _SHAPE_READS:
        return _shape_read(layer, args, rank)
    names = list(args)
    first = args[names[0]]
    shape = tuple(first.shape) if _is_tensor(first) else ()
    others = [v for k, v in args.items() if k != names[0]]
    if symbol in _ZERO_PRESERVING or symbol in _CHANNELWISE:
        if not _is_tensor(first) or any(_is_tensor(v) for v in tf.nest.flatten(others)):
            return _OPAQUE
        return _Op(Kind.PASSTHROUGH if symbol in _ZERO_PRESERVING else Kind.CHANNELWISE)
    if symbol in _BINARY and len(names) >= 2:
        return _binary(_BINARY[symbol], args, tuple(_shape_of(args, names[:2])))
    if symbol == "clip_by_value" and _is_tensor(first):
        bounds = [_channel_constant(args.get(k), shape) for k in ("clip_value_min", "clip_value_max")]
        if any(b is None for b in bounds):
            return _OPAQUE
        zero = np.all(bounds[0] <= 0) and np.all(bounds[1] >= 0)
        return _Op(Kind.PASSTHROUGH if zero else Kind.CHANNELWISE, constants=("clip_value_min", "clip_value_max"))
    if symbol in _REDUCTIONS and _is_tensor(first):
        axis = args.get("axis")
        axes = [axis] if isinstance(axis, (int, np.integer)) else axis
        if not isinstance(axes, (list, tuple)) or not all(isinstance(a, (int, np.integer)) for a in axes):
            return _OPAQUE
        return _OPAQUE if any(int(a) % rank == rank - 1 for a in axes) else _Op(Kind.PASSTHROUGH)
    return _classify_channel_index(symbol, args, first, rank)


def _shape_of(args, names):
    for n in names:
        if _is_tensor(args[n]):
            return args[n].shape
    return ()


def _classify_channel_index(symbol, args, first, rank):
    """Slicing, splitting and concatenating along channels."""
    if symbol == "__operators__.getitem" and _is_tensor(first):
        part = _channel_slice(args.get("slice_spec"), rank, first.shape[-1])
        if part == "all":
            return _Op(Kind.PASSTHROUGH)
        return _OPAQUE if part is None else _Op(Kind.PASSTHROUGH, part=part)
    if symbol == "split" and _is_tensor(first) and int(args.get("axis", 0)) % rank == rank - 1:
        n = args.get("num_or_size_splits")
        sizes = shapes.split_sizes(n, first.shape[-1])
        return _OPAQUE if sizes is None else _Op(Kind.PASSTHROUGH, sizes=sizes, equal=isinstance(n, (int, np.integer)))
    if symbol == "concat" and isinstance(args.get("axis"), (int, np.integer)):
        if isinstance(first, (list, tuple)) and all(_is_tensor(v) for v in first):
            return _Op(Kind.CONCAT, concat_axis=int(args["axis"]))
    return _classify_channel_keeping(symbol, args, first, rank)


def _reshape_op(target, shape):
    """A reshape that keeps the channel axis last (``[-1, H * W, C]``), cuts it into ``r``
    equal parts (``[-1, r, C / r]``: ResNeSt's radix softmax, heads; ``[.., C / r]`` with the
    ``r`` parts moved to other axes: Swin's window reverse of a tiled axis) or makes a last
    axis of ``k`` whole channel vectors (``[-1, r * k]`` from ``(.., r, k)``; ``[.., w * C]``
    from ``(.., W, C)``: a window partition, a patch merge), else opaque. Elements are
    row-major, channels fastest: every chunk of ``k * C`` consecutive elements is ``k``
    whole channel vectors, every chunk of ``C / r`` the same part of one."""
    channels = shape[-1]
    if target[-1] < 1 or -1 in target[-2:] or channels is None:
        return _OPAQUE
    if target[-1] == channels:
        return _Op(Kind.PASSTHROUGH, target=True)
    if len(target) >= 2 and channels % target[-1] == 0:
        return _Op(Kind.RESHAPE, target=True, heads=channels // target[-1])
    if len(shape) >= 3 and target[-1] % channels == 0:
        return _Op(Kind.RESHAPE, target=True, joined=target[-1] // channels)
    return _OPAQUE


_SHAPE_READS = frozenset({"shape", "compat.v1.shape"})


def _shape_read(layer, args, rank):
    """``tf.shape(x)`` reads no channel value, only the shape, which a stripped model
    recomputes: it does not stop ``x``'s channels when every use of it takes entries other
    than the channel count (``tf.shape(x)[1:-1]``, ``tf.shape(x)[1] * tf.shape(x)[2]``)."""
    first = next(iter(args.values()))
    if not _is_tensor(first) or args.get("out_type", tf.int32) not in (tf.int32, tf.int64, "int32", "int64"):
        return _OPAQUE
    uses = [node for node in getattr(layer, "_outbound_nodes", []) if node.layer is not None]
    if not uses or not all(_takes_no_channel_count(node, rank) for node in uses):
        return _OPAQUE
    return _Op(Kind.PASSTHROUGH, shape_read=True)


def _takes_no_channel_count(node, rank):
    """Whether the TF-op call ``node`` indexes a shape vector of length ``rank`` without its
    last entry."""
    if getattr(node.layer, "symbol", "") != "__operators__.getitem":
        return False
    args = _arguments(node.layer, node)
    return shapes.takes_no_channel_count(args.get("slice_spec") if args else None, rank)


def _classify_channel_keeping(symbol, args, first, rank):
    """Reshapes and transposes that keep the channel axis last and whole: the channels of
    every position are the same channels (``tf.reshape(x, [-1, H * W, C])``,
    ``tf.transpose(x, [0, 2, 1, 3])``); a reshape's target channel count is renumbered."""
    if symbol in _REDUCTIONS and shapes.stacked_axis(first, args.get("axis"), _is_tensor):
        return _Op(Kind.MERGE)  # tf.reduce_sum([a, b], axis=0): a + b
    if not _is_tensor(first) or first.shape[-1] is None:
        return _OPAQUE
    if symbol == "reshape":
        target = args.get("shape")
        if (
            isinstance(target, (list, tuple))
            and len(target) >= 2
            and all(isinstance(v, (int, np.integer)) for v in target)
        ):
            return _reshape_op([int(v) for v in target], tuple(first.shape))
    if symbol in ("transpose", "compat.v1.transpose"):
        perm = args.get("perm")
        if isinstance(perm, (list, tuple)) and perm and int(perm[-1]) % rank == rank - 1 and not args.get("conjugate"):
            return _Op(Kind.PASSTHROUGH)
    return _OPAQUE


# -- the rule: kind, layout handler, surgery -------------------------------------------
def _kind(layer, rank):
    nodes = getattr(layer, "_inbound_nodes", None)
    return _classify(layer, nodes[0], rank).kind if nodes else Kind.OPAQUE


def _layout(ctx):
    op = _classify(ctx.fnode.layer, ctx.fnode.node, len(ctx.fnode.in_shapes[0]))
    if op.shape_read:
        return ctx.spaces.fixed_layout(ctx.out_shape)
    if op.heads or op.joined:
        return shapes.reshape_layout(ctx, op.heads, op.joined)
    if op.concat_axis is not None:
        return concat_layout(ctx, op.concat_axis)
    if op.sizes is not None:
        return shapes.split_layout(ctx, op.sizes, op.equal)
    if op.part is not None:
        a, b, _ = op.part
        length = ctx.in_lays[0].length
        sizes = [n for n in (a, b - a, length - b) if n]
        parts = ctx.spaces.split(ctx.in_lays[0], sizes)
        return None if parts is None else parts[1 if a else 0]
    return ctx.out


def _kept_before(keep, position):
    return int(np.sum(np.asarray(keep) < position))


def _replace(ctx, name, value):
    """Replaces argument ``name`` where the call passed it (positionally or by keyword)."""
    if name in ctx.call_kwargs:
        ctx.call_kwargs[name] = value
        return
    params = list(inspect.signature(ctx.layer.function).parameters)
    args = list(ctx.call_args)
    args[params.index(name)] = value
    ctx.call_args = tuple(args)


def _surgery(ctx):
    """Slices per-channel constants, and renumbers split sizes and slice bounds."""
    keep = ctx.in_keep
    node = _NodeArgs(ctx.call_args, ctx.call_kwargs)
    args = _arguments(ctx.layer, node)
    if keep is None or not args:
        return ctx.config, ctx.weights
    rank = len(next(v for v in tf.nest.flatten(list(args.values())) if _is_tensor(v)).shape)
    op = _classify(ctx.layer, node, rank)
    channels = ctx.in_channels[0]
    for name in op.constants:
        c = np.asarray(args[name])
        if c.ndim and c.shape[-1] == channels and channels > 1:
            _replace(ctx, name, take(c, keep, c.ndim - 1).astype(np.float32))
    if op.sizes is not None:
        bounds = np.cumsum([0, *op.sizes])
        kept = [_kept_before(keep, hi) - _kept_before(keep, lo) for lo, hi in zip(bounds, bounds[1:])]
        _replace(ctx, "num_or_size_splits", shapes.split_argument(args["num_or_size_splits"], kept, ctx.layer.name))
    if op.target:
        kept = len(keep) // op.heads if op.heads else len(keep) * (op.joined or 1)
        _replace(ctx, "shape", [*list(args["shape"])[:-1], kept])
    if op.part is not None:
        a, b, index = op.part
        spec = list(args["slice_spec"]) if isinstance(args["slice_spec"], (tuple, list)) else [args["slice_spec"]]
        spec[index] = {**spec[index], "start": _kept_before(keep, a), "stop": _kept_before(keep, b)}
        _replace(ctx, "slice_spec", tuple(spec) if isinstance(args["slice_spec"], tuple) else spec[0])
    return ctx.config, ctx.weights


@dataclasses.dataclass
class _NodeArgs:
    call_args: tuple = ()
    call_kwargs: dict = dataclasses.field(default_factory=dict)


def _op_layer_classes():
    """tf_keras' TFOpLambda (SlicingOpLambda is a subclass): not in its public API, so
    found among the Layer subclasses tf_keras defines."""
    todo, found = [keras.layers.Layer], []
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__name__ == "TFOpLambda" and cls.__module__.startswith("tf_keras."):
            found.append(cls)
    return found


# Costs: the MACs of tf.einsum and tf.matmul calls (opaque); every other TF op costs nothing.
TF_OP_RULE = LayerRule(_kind, costs=tf_op_costs, surgery=_surgery, layout=_layout, flops=True)


def tfop_rules():
    """``{TF-op layer class: TF_OP_RULE}`` for :mod:`chipnet_tf.registry` to install."""
    return dict.fromkeys(_op_layer_classes(), TF_OP_RULE)
