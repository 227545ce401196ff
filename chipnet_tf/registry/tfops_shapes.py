"""Channel-axis helpers of the TF-op rules (:mod:`chipnet_tf.registry.tfops`): splits along
channels, reshapes that cut the channel axis into parts or join them back, stacked-list
reductions and the shape reads that do not see the channel count.
"""

import numpy as np

from chipnet_tf.registry.layouts import Layout


def stacked_axis(values, axis, is_tensor):
    """Whether a reduction of the list ``values`` over ``axis`` is element-wise over the
    list: tensors of one shape, reduced over axis 0 only (the axis the list is stacked on)."""
    if not isinstance(values, (list, tuple)) or len(values) < 2 or not all(is_tensor(v) for v in values):
        return False
    axes = [axis] if isinstance(axis, (int, np.integer)) else axis
    same = all(tuple(v.shape) == tuple(values[0].shape) for v in values)
    return same and isinstance(axes, (list, tuple)) and list(axes) == [0]


def split_sizes(n, channels):
    """The part sizes of ``tf.split(x, n, axis=-1)`` over ``channels``, or None: ``n`` parts
    of equal size, or a size list with at most one ``-1`` (the rest of the channels)."""
    if channels is None:
        return None
    if isinstance(n, (int, np.integer)):
        return [channels // int(n)] * int(n) if int(n) > 0 and channels % int(n) == 0 else None
    if not isinstance(n, (list, tuple)) or not all(isinstance(v, (int, np.integer)) for v in n):
        return None
    sizes = [int(v) for v in n]
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = channels - sum(v for v in sizes if v != -1)
    return sizes if all(v > 0 for v in sizes) and sum(sizes) == channels else None


def split_layout(ctx, sizes, equal):
    """The parts of a split along channels. ``tf.split(x, n)`` stays a split into ``n``
    equal parts in the stripped model, so its parts are coupled: channel ``c`` of every part
    is kept or pruned together (ResNeSt's split of its radix branches)."""
    parts = ctx.spaces.split(ctx.in_lays[0], sizes)
    if parts is not None and equal and len(parts) > 1 and not ctx.spaces.unify(parts):
        return None
    return parts


def split_argument(original, kept, name):
    """The stripped ``num_or_size_splits``: a size list stays a list; a number of parts stays
    that number, which needs every part to keep as many channels."""
    if isinstance(original, (list, tuple)):
        return type(original)(kept)
    if len(set(kept)) != 1:
        raise ValueError(
            f"Cannot strip {name!r} (tf.split into {len(kept)} equal parts): its parts keep {kept} channels; "
            "split with a size list to prune its parts independently."
        )
    return len(kept)


def reshape_layout(ctx, heads, joined):
    """The output layout of a reshape that cuts the channel axis into ``heads`` coupled
    parts (channel ``c`` of every part is kept together: the stripped reshape keeps
    ``[.., r, kept]``), or joins ``joined`` copies of it (a tiled layout, like Flatten)."""
    lay = ctx.in_lays[0]
    if joined:
        return Layout(lay.segments, lay.repeat * joined)
    parts = ctx.spaces.split(lay, [lay.length // heads] * heads)
    return parts[0] if parts is not None and ctx.spaces.unify(parts) else None


def takes_no_channel_count(spec, rank):
    """Whether the index ``spec`` (``x[spec]`` of a TF-op call) takes entries of a shape
    vector of length ``rank`` other than its last (the channel count)."""
    if isinstance(spec, (tuple, list)):
        spec = spec[0] if len(spec) == 1 else None
    if isinstance(spec, (int, np.integer)):
        return -rank <= int(spec) < rank and int(spec) % rank != rank - 1
    if not isinstance(spec, dict):
        return False
    bounds = [spec.get(k) for k in ("start", "stop", "step")]
    if any(v is not None and not isinstance(v, (int, np.integer)) for v in bounds) or bounds[2] == 0:
        return False
    return rank - 1 not in range(rank)[slice(*bounds)]
