"""Channel spaces, layouts and the default layout handler of every layer kind.

A **space** is a run of channels written together (a conv's outputs); spaces that must be
pruned together are joined in a union-find. Two refinements let rules say more than
"these spaces are the same channels":

* a **period**: the space's mask repeats every ``period`` channels. A grouped convolution
  ``Conv2D(filters, groups=G)`` needs every conv group to keep the same number of input and
  output channels (Keras builds a grouped conv only with equal per-group widths), so it
  ties channel ``c`` to channel ``c + width / G`` of its input and of its output: the
  group's mask has ``period`` entries, tiled ``length / period`` times. Worked example:
  ``Conv2D(8, 3, groups=2)`` reading a 6-channel conv output: the input space has period
  3, the output period 4; keeping input offsets {0, 2} and output offsets {1} keeps input
  channels {0, 2, 3, 5} and output channels {1, 5}, a valid ``Conv2D(2, 3, groups=2)``
  over 4 channels. Coupled spaces take the gcd of their periods.
* a **split**: a space cut into consecutive parts (``x[..., :k]``, ``tf.split`` along
  channels) becomes one space per part, and every space coupled to it is cut the same way.
  The parts are groups of their own, named ``"<writer>[a:b]"``.

A tensor's channel axis is a :class:`Layout`: segments ``(space, length)`` tiled
``repeat`` times. A split or coupled space is read through :meth:`Spaces.expand`.
"""

import dataclasses
import itertools
import math

from chipnet_tf.registry.vocabulary import Kind


@dataclasses.dataclass(frozen=True)
class Layout:
    segments: tuple  # ((space, length), ...)
    repeat: int = 1

    @property
    def length(self):
        return sum(n for _, n in self.segments) * self.repeat

    def expanded(self):
        return self.segments * self.repeat


def shape_last(shape):
    return shape[-1] if shape else 1


class Spaces:
    """Union-find over channel spaces, with periods and splits (see the module docstring)."""

    def __init__(self):
        self.length = []
        self.origin = []
        self.fixed = []
        self.parent = []
        self.period = []  # per root: the mask repeats every `period` channels
        self.children = []  # per root: None, or the spaces it was cut into, in order

    def new(self, length, origin=None, fixed=False):
        length = int(length) if length is not None else 1
        fixed = fixed or length <= 1
        self.length.append(length)
        self.origin.append(origin)
        self.fixed.append(fixed)
        self.parent.append(len(self.parent))
        self.period.append(length)
        self.children.append(None)
        return len(self.parent) - 1

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def leaves(self, s):
        """The uncut spaces ``s`` consists of, in channel order (``[root of s]`` if uncut)."""
        r = self.find(s)
        if self.children[r] is None:
            return [r]
        return [leaf for c in self.children[r] for leaf in self.leaves(c)]

    def expand(self, lay):
        """``[(leaf space, length), ...]`` along the whole channel axis of ``lay``."""
        return [(leaf, self.length[leaf]) for s, _ in lay.segments for leaf in self.leaves(s)] * lay.repeat

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.children[ra] is not None or self.children[rb] is not None:
            cuts = self._cuts(ra) | self._cuts(rb)
            self._cut(ra, cuts)
            self._cut(rb, cuts)
            for la, lb in zip(self.leaves(ra), self.leaves(rb)):
                self.union(la, lb)
        lo, hi = min(ra, rb), max(ra, rb)
        self.parent[hi] = lo
        self.fixed[lo] = self.fixed[lo] or self.fixed[hi]
        self.period[lo] = math.gcd(self.period[lo], self.period[hi])
        if self.children[lo] is None:
            self.children[lo] = self.children[hi]

    def fix(self, s):
        for leaf in self.leaves(s):
            self.fixed[leaf] = True

    def is_fixed(self, s):
        return all(self.fixed[leaf] for leaf in self.leaves(s))

    # -- splits and periods --
    def _cuts(self, r):
        out, offset = set(), 0
        for leaf in self.leaves(r)[:-1]:
            offset += self.length[leaf]
            out.add(offset)
        return out

    def _cut(self, r, cuts):
        """Cuts root ``r`` at the given channel offsets (relative to ``r``)."""
        cuts = sorted(c for c in cuts if 0 < c < self.length[r])
        if not cuts:
            return
        if self.children[r] is None:
            if self.period[r] != self.length[r]:
                self.fixed[r] = True  # a periodic space cannot also be cut: not pruned
            bounds = [0, *cuts, self.length[r]]
            base = self.origin[r] or f"space{r}"
            self.children[r] = [
                self.new(b - a, origin=f"{base}[{a}:{b}]", fixed=self.fixed[r]) for a, b in zip(bounds, bounds[1:])
            ]
            return
        offset = 0
        for c in self.children[r]:
            cr = self.find(c)
            n = self.length[cr]
            self._cut(cr, {x - offset for x in cuts if offset < x < offset + n})
            offset += n

    def split(self, lay, sizes):
        """``lay`` cut into consecutive parts of ``sizes`` channels: one Layout per part, or
        None when the sizes do not add up or a tiled ``lay`` would be cut differently in
        different tiles."""
        if sum(sizes) != lay.length or min(sizes, default=0) < 1:
            return None
        if lay.repeat != 1:  # tiles of one layout (a flattened map, heads joined back): listed one by one
            lay = Layout(lay.expanded())
        bounds = set(list(itertools.accumulate(sizes))[:-1])
        offset = 0
        for s, n in lay.segments:
            self._cut(self.find(s), {b - offset for b in bounds})
            offset += n
        parts, current, filled = [], [], 0
        for leaf, n in self.expand(lay):
            current.append((leaf, n))
            filled += n
            if filled == sizes[len(parts)]:
                parts.append(Layout(tuple(current)))
                current, filled = [], 0
        return parts if len(parts) == len(sizes) else None

    def tie_period(self, lay, period):
        """Ties channel ``c`` to channel ``c + period`` along ``lay``; False when ``lay`` is
        not one space (the caller then fixes it)."""
        leaves = {leaf for leaf, _ in self.expand(lay)}
        if len(leaves) != 1:
            return False
        (leaf,) = leaves
        self.period[leaf] = math.gcd(self.period[leaf], self.length[leaf], int(period))
        return True

    # -- on layouts --
    def fixed_layout(self, shape, origin=None):
        n = shape_last(shape)
        return Layout(((self.new(n, origin=origin, fixed=True), n),))

    def fix_all(self, lay):
        for s, _ in lay.segments:
            self.fix(s)

    def unify(self, layouts):
        """Couples inputs of an element-wise op channel by channel; returns False when their
        lengths differ. Inputs cut differently are first cut at each other's boundaries: in
        ``conv_s + concat([conv_p, depthwise(conv_p)])`` (a ghost module), ``conv_s`` is cut
        in halves and each half is coupled with ``conv_p``."""
        ref = layouts[0]
        if any(other.length != ref.length for other in layouts[1:]):
            return False
        while True:  # cutting one occurrence of a space cuts all of them: repeat until aligned
            bounds = set().union(*(self._bounds(lay) for lay in layouts))
            if not any([self._cut_layout(lay, bounds) for lay in layouts]):
                break
        for other in layouts[1:]:
            for (sa, _), (sb, _) in zip(self.expand(ref), self.expand(other)):
                self.union(sa, sb)
        return True

    def _bounds(self, lay):
        return set(itertools.accumulate(n for _, n in self.expand(lay)))

    def _cut_layout(self, lay, bounds):
        """Cuts the spaces along ``lay`` at the channel offsets ``bounds``; True when one was cut."""
        cut, offset = False, 0
        for leaf, n in self.expand(lay):
            inside = {b - offset for b in bounds if offset < b < offset + n}
            if inside:
                self._cut(self.find(leaf), inside)
                cut = True
            offset += n
        return cut

    def prunable(self, lay):
        return any(not self.is_fixed(s) for s, _ in lay.segments)


@dataclasses.dataclass
class LayoutContext:
    """What a layout handler (``LayerRule(layout=...)``) gets for one layer call.

    Attributes:
        spaces: the :class:`Spaces` of the analysis (couple, cut, tie or fix spaces).
        fnode: the :class:`chipnet_tf.analysis.flat_graph.FlatNode` (layer, call arguments, shapes).
        in_lays: the :class:`Layout` of each input tensor.
        kind: the call's :class:`chipnet_tf.registry.Kind`.
        out: the layout its kind gives by default (a producer's new space), or None.

    A handler returns the output :class:`Layout` (a list of them for several outputs), or
    None when the call cannot be seen through (it is then opaque).
    """

    spaces: Spaces
    fnode: object
    in_lays: list
    kind: Kind
    out: object = None

    @property
    def out_shape(self):
        return self.fnode.out_shapes[0] if self.fnode.out_shapes else ()


# -- the default handler of each kind (a producer's new space is made by the analysis) --
def _same_channels(ctx):
    return ctx.in_lays[0] if ctx.in_lays[0].length == shape_last(ctx.out_shape) else None


def _depthwise(ctx):
    return ctx.in_lays[0]


def _merge(ctx):
    full = [lay for lay in ctx.in_lays if lay.length == shape_last(ctx.out_shape)]
    out = full[0] if full and ctx.spaces.unify(full) else None
    for lay in ctx.in_lays:
        if lay not in full:
            ctx.spaces.fix_all(lay)
    return out


def concat_layout(ctx, axis):
    """A concatenation along ``axis``: layouts are concatenated along channels, otherwise
    the inputs are coupled like a merge."""
    rank = len(ctx.out_shape)
    if axis % rank == rank - 1:
        return Layout(tuple(seg for lay in ctx.in_lays for seg in lay.expanded()))
    return ctx.in_lays[0] if ctx.spaces.unify(ctx.in_lays) else None


def _concat(ctx):
    axis = getattr(ctx.fnode.layer, "axis", None)  # a tf.concat call: its rule's handler reads it
    return None if axis is None else concat_layout(ctx, axis)


def _reshape(ctx):
    in_shape, out_shape = ctx.fnode.in_shapes[0], ctx.out_shape
    if shape_last(out_shape) == shape_last(in_shape) and len(out_shape) > 1:
        return ctx.in_lays[0]
    if len(out_shape) == 2 and None not in in_shape[1:]:
        positions = math.prod(int(d) for d in in_shape[1:-1]) if len(in_shape) > 2 else 1
        return Layout(ctx.in_lays[0].segments, ctx.in_lays[0].repeat * positions)
    return None


DEFAULT_LAYOUT = {
    Kind.DEPTHWISE: _depthwise,
    Kind.CHANNELWISE: _same_channels,
    Kind.PASSTHROUGH: _same_channels,
    Kind.MERGE: _merge,
    Kind.CONCAT: _concat,
    Kind.RESHAPE: _reshape,
}
