"""FLOPs of tensor contractions: ``EinsumDense``, and the einsum and matmul calls of a
functional model (tf_keras' ``tf.einsum``/``tf.matmul``/``tf.linalg.matmul``/``a @ b``
TF-op layers, Keras 3's ``keras.ops.einsum``/``keras.ops.matmul``).

An einsum's multiply-accumulates are the product of the sizes of all the indices of its
equation (each output element sums the products over the indices it does not keep); a
matmul's are its output elements times the inner dimension. ``EinsumDense`` adds its bias to
every output element. The batch axis counts 1 (FLOPs of a batch-1 call). These layers and
calls are opaque to the analysis: their FLOPs are constants of the budgets.
"""

import inspect

import numpy as np

from chipnet_tf.registry.vocabulary import prod


def static_shape(shape):
    """``shape`` (batch axis included) as a tuple of ints, the batch axis (None) as 1."""
    dims = tuple(shape)
    if any(d is None for d in dims[1:]):
        raise ValueError(f"FLOPs need static shapes; got a shape {dims} with unknown axes past the batch axis.")
    return tuple(1 if d is None else int(d) for d in dims)


def value_shape(value):
    """:func:`static_shape` of a tensor or of a constant (a numpy array, a list)."""
    shape = getattr(value, "shape", None)
    return static_shape(np.shape(value) if shape is None else shape)


def _indices(spec, rank, ellipsis_at):
    """Index names of one operand: its letters, and for ``...`` one name per axis it covers,
    numbered from the right (ellipsis axes broadcast right-aligned)."""
    spec = spec.strip()
    if "..." not in spec:
        return list(spec)
    head, tail = spec.split("...")
    covered = rank - len(head) - len(tail)
    ellipsis_at[0] = max(ellipsis_at[0], covered)
    return list(head) + [f"...{covered - i}" for i in range(covered)] + list(tail)


def _index_sizes(equation, shapes):
    """``({index: size}, output indices)`` of ``einsum(equation, *operands of shapes)``."""
    sizes, ellipsis_at = {}, [0]
    inputs, arrow, output = equation.partition("->")
    for spec, shape in zip(inputs.split(","), shapes):
        for index, size in zip(_indices(spec, len(shape), ellipsis_at), shape):
            sizes[index] = max(sizes.get(index, 1), int(size))  # a broadcast axis of size 1
    if not arrow:  # implicit output: the indices that appear once, in order
        letters = [c for c in inputs if c.isalpha()]
        output = "..." * bool(ellipsis_at[0]) + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    out = _indices(output, ellipsis_at[0] + len(output.replace("...", "").strip()), [0])
    return sizes, out


def einsum_macs(equation, shapes):
    """Multiply-accumulates of ``einsum(equation, *operands)`` on operands of ``shapes``: the
    product of the sizes of all the equation's indices (``...`` included).

    Example:
        >>> einsum_macs("abc,cd->abd", [(1, 49, 64), (64, 32)])  # 49 positions x a 64x32 kernel
        100352
    """
    return prod(_index_sizes(equation, shapes)[0].values())


def einsum_output_size(equation, shapes):
    """The number of elements of ``einsum(equation, *operands)`` on operands of ``shapes``."""
    sizes, out = _index_sizes(equation, shapes)
    return prod(sizes[i] for i in out)


def matmul_macs(a_shape, out_shape, transpose_a=False):
    """Multiply-accumulates of ``matmul(a, b)``: the output elements times the inner size."""
    inner = a_shape[-2] if transpose_a and len(a_shape) > 1 else a_shape[-1]
    return prod(out_shape) * int(inner)


# -- EinsumDense -----------------------------------------------------------------------
def einsum_dense_flops(layer, in_shape):
    """FLOPs of one ``EinsumDense`` call: its einsum's MACs (the kernel's size times the
    output positions it is applied at) plus a bias add per output element."""
    shapes = [static_shape(in_shape), tuple(layer.kernel.shape)]
    bias = einsum_output_size(layer.equation, shapes) if getattr(layer, "bias", None) is not None else 0
    return einsum_macs(layer.equation, shapes) + bias


def einsum_dense_costs(builder, ctx):
    builder.add("flops", ctx.name, einsum_dense_flops(ctx.layer, ctx.in_shape), builder.one)


# -- einsum / matmul calls -------------------------------------------------------------
def _bound(function, args, kwargs):
    try:
        return inspect.signature(function).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return None


def _tf_einsum_macs(args):
    operands = args.get("inputs", ())
    return einsum_macs(args["equation"], [value_shape(v) for v in operands])


def _tf_matmul_macs(args, out_shape):
    transpose = bool(args.get("transpose_a") or args.get("adjoint_a"))
    return matmul_macs(value_shape(args["a"]), static_shape(out_shape), transpose)


_TF_OPS = {"einsum": _tf_einsum_macs, "linalg.matmul": _tf_matmul_macs}


def tf_op_costs(builder, ctx):
    """The MACs of a ``tf.einsum``/``tf.matmul`` TF-op layer (tf_keras); other TF ops cost 0."""
    symbol = getattr(ctx.layer, "symbol", "")
    if symbol not in _TF_OPS:
        return
    args = _bound(ctx.layer.function, ctx.call_args, ctx.call_kwargs)
    if args is None:
        return
    macs = _tf_einsum_macs(args) if symbol == "einsum" else _tf_matmul_macs(args, ctx.out_shape)
    builder.add("flops", ctx.name, macs, builder.one)


def keras_op_costs(builder, ctx):
    """The MACs of a ``keras.ops.einsum``/``keras.ops.matmul`` call (Keras 3)."""
    name = type(ctx.layer).__name__
    operands = [value_shape(v) for v in ctx.call_args]
    if name == "Einsum":
        macs = einsum_macs(ctx.layer.subscripts, operands)
    else:
        macs = matmul_macs(operands[0], static_shape(ctx.out_shape))
    builder.add("flops", ctx.name, macs, builder.one)
