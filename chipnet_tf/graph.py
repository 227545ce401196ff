"""Functional-graph traversal: channel spaces, channel groups, gate points and costs.

Channels that must be kept or removed together form a **group** with one shared mask.
Worked example (a residual block)::

    x  = Conv2D(16)(inp)          # writes space S1 (16 channels)
    x  = BatchNormalization()(x)  # same channels as S1
    y  = Conv2D(16)(x)            # writes space S2
    y  = BatchNormalization()(y)
    out = Add()([x, y])           # Add couples S1 and S2: one group {S1, S2}
    z  = Conv2D(8)(out)           # reads the group as input channels

Removing channel 3 of the group removes output channel 3 of both convs, channel 3 of both
BNs, and input channel 3 of the last conv. A tensor's channel axis is described by a
**layout**: a list of segments, one per channel space, tiled ``repeat`` times (a
concatenation lists its inputs' segments; a Flatten tiles the layout over positions).

The analysis works on a *flat* view of the model (:mod:`chipnet_tf.flat_graph`: nested
functional models are walked into), so the same code serves wrapping, stripping and
budget reports.
"""

import dataclasses
import warnings

import numpy as np

from chipnet_tf import registry
from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import keras
from chipnet_tf.flat_graph import (  # re-exported: graph.flatten etc. are used across the package
    FlatGraph,
    FlatNode,
    UnsupportedModelError,
    check_model,
    flatten,
)
from chipnet_tf.registry import Kind


# -- union-find over channel spaces ----------------------------------------------------
class _Spaces:
    def __init__(self):
        self.length = []
        self.origin = []
        self.fixed = []
        self.parent = []

    def new(self, length, origin=None, fixed=False):
        length = int(length) if length is not None else 1
        fixed = fixed or length <= 1
        self.length.append(length)
        self.origin.append(origin)
        self.fixed.append(fixed)
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo
            self.fixed[lo] = self.fixed[lo] or self.fixed[hi]

    def fix(self, s):
        self.fixed[self.find(s)] = True

    def is_fixed(self, s):
        return self.fixed[self.find(s)]

    # -- on layouts --
    def fixed_layout(self, shape, origin=None):
        n = _shape_last(shape)
        return Layout(((self.new(n, origin=origin, fixed=True), n),))

    def fix_all(self, lay):
        for s, _ in lay.segments:
            self.fix(s)

    def unify(self, layouts):
        """Couples inputs of an element-wise op; returns False when they cannot be matched."""
        ref = layouts[0]
        for other in layouts[1:]:
            a, b = ref.expanded(), other.expanded()
            if len(a) != len(b) or any(la != lb for (_, la), (_, lb) in zip(a, b)):
                return False
        for other in layouts[1:]:
            for (sa, _), (sb, _) in zip(ref.expanded(), other.expanded()):
                self.union(sa, sb)
        return True

    def prunable(self, lay):
        return any(not self.is_fixed(s) for s, _ in lay.segments)


@dataclasses.dataclass(frozen=True)
class Layout:
    segments: tuple  # ((space, length), ...)
    repeat: int = 1

    @property
    def length(self):
        return sum(n for _, n in self.segments) * self.repeat

    def expanded(self):
        return self.segments * self.repeat


@dataclasses.dataclass
class Group:
    """A set of channels with one shared mask."""

    name: str
    size: int
    writers: list  # names of the layers whose output channels are this group


@dataclasses.dataclass
class Analysis:
    """Result of :func:`analyze`."""

    graph: FlatGraph
    groups: list
    layouts: dict  # tensor key -> [(group index or None, length)], repeat
    gates: dict  # tensor key -> layout, in call order
    gate_origin: dict  # tensor key -> name of the layer whose output is gated
    spec: object
    kinds: list  # the registry.Kind of each call in graph.nodes (opaque when it stopped groups)
    stopped: list  # names of opaque layers that stopped groups

    @property
    def group_names(self):
        return [g.name for g in self.groups]


def _shape_last(shape):
    return shape[-1] if shape else 1


def analyze(model_or_graph, exclude=None, warn=True):
    """Finds the channel groups, the gate points and the exact cost model of a model.

    Args:
        model_or_graph: a tf_keras functional/Sequential model, or a :class:`FlatGraph`.
        exclude: layer names whose output channels are never pruned.
        warn: emit a warning naming layers that stop groups.

    Returns:
        An :class:`Analysis`.

    Raises:
        ValueError: ``exclude`` names a layer that is not in the model.
    """
    graph = model_or_graph if isinstance(model_or_graph, FlatGraph) else flatten(model_or_graph)
    names = {n.name for n in graph.nodes}
    exclude = list(exclude or [])
    unknown = [e for e in exclude if e not in names]
    if unknown:
        raise ValueError(f"exclude names layers that are not in the model: {unknown}. Layers: {sorted(names)}")

    spaces = _Spaces()
    layout, kinds, stopped = _propagate(graph, spaces, exclude)
    for k in graph.output_keys:
        spaces.fix_all(layout[k])
    groups, group_of_root = _groups(graph, spaces, layout, kinds)

    def glayout(lay):
        segs = [(group_of_root.get(spaces.find(s)), n) for s, n in lay.segments]
        return segs, lay.repeat

    gate_origin = _gate_points(graph, spaces, layout, kinds)
    spec = _cost_spec(graph, spaces, layout, kinds, groups, group_of_root)
    if stopped and warn:
        warnings.warn(
            "chipnet_tf: these layers cannot be seen through, so the channels feeding them and "
            f"coming out of them are not pruned: {stopped}. Register a rule with "
            "chipnet_tf.register_layer to prune through them.",
            stacklevel=3,
        )
    return Analysis(
        graph=graph,
        groups=groups,
        layouts={k: glayout(v) for k, v in layout.items()},
        gates={k: glayout(layout[k]) for k in gate_origin},
        gate_origin=gate_origin,
        spec=spec,
        kinds=kinds,
        stopped=stopped,
    )


def _propagate(graph, spaces, exclude):
    """Layouts of every tensor and the kind of every call, coupling channel spaces.

    Returns ``(layout, kinds, stopped)``: ``{tensor key: Layout}``, one Kind per node, and
    the names of the opaque layers that stopped groups.
    """
    layout = {key: spaces.fixed_layout(tuple(kt.shape)) for key, kt in zip(graph.input_keys, graph.input_tensors)}
    kinds, stopped = [], []
    # A layer called more than once has one set of weights: the channels it reads (and,
    # for a producer, writes) must be the same groups at every call.
    first_call = {}
    for fnode in graph.nodes:
        layer = fnode.layer
        in_lays = [layout[k] for k in fnode.in_keys]
        rank = len(fnode.in_shapes[0]) if fnode.in_shapes else 0
        kind = registry.lookup(layer).kind(layer, rank) if in_lays else Kind.OPAQUE
        if kind == Kind.PRODUCER and len(in_lays) != 1:
            kind = Kind.OPAQUE
        shared = first_call.get(id(layer))
        if shared is None:
            first_call[id(layer)] = (in_lays, kind, None)
        elif kind != Kind.OPAQUE and (layer.weights or kind == Kind.RESHAPE):
            first_in, first_kind, _ = shared
            if (
                first_kind != kind
                or len(first_in) != len(in_lays)
                or not all(spaces.unify([a, b]) for a, b in zip(first_in, in_lays))
            ):
                for lay in list(first_in) + in_lays:
                    spaces.fix_all(lay)
        if kind == Kind.PRODUCER and shared is not None and shared[2] is not None:
            out = shared[2]
        elif kind == Kind.PRODUCER:
            n = _shape_last(fnode.out_shapes[0] if fnode.out_shapes else ())
            fixed = not registry.output_prunable(layer)  # e.g. Dense(..., activation="softmax")
            out = Layout(((spaces.new(n, origin=fnode.name, fixed=fixed), n),))
            first_call[id(layer)] = (first_call[id(layer)][0], kind, out)
        else:
            out = _out_layout(spaces, kind, fnode, in_lays)
        if out is None:
            if any(
                spaces.origin[sp] is not None or not spaces.is_fixed(sp) for lay in in_lays for sp, _ in lay.segments
            ):
                stopped.append(fnode.name)
            kind = Kind.OPAQUE
            for lay in in_lays:
                spaces.fix_all(lay)
            outs = [spaces.fixed_layout(shape) for shape in fnode.out_shapes]
        else:
            outs = [out]
        if fnode.name in exclude:
            for lay in outs:
                spaces.fix_all(lay)
        kinds.append(kind)
        for k, lay in zip(fnode.out_keys, outs):
            layout[k] = lay
    return layout, kinds, stopped


def _out_layout(spaces, kind, fnode, in_lays):
    """The output layout of a non-producer call, or None when it cannot be seen through."""
    out_shape = fnode.out_shapes[0] if fnode.out_shapes else ()
    if kind == Kind.DEPTHWISE:
        return in_lays[0]
    if kind in (Kind.CHANNELWISE, Kind.PASSTHROUGH):
        return in_lays[0] if in_lays[0].length == _shape_last(out_shape) else None
    if kind == Kind.MERGE:
        full = [lay for lay in in_lays if lay.length == _shape_last(out_shape)]
        out = full[0] if full and spaces.unify(full) else None
        for lay in in_lays:
            if lay not in full:
                spaces.fix_all(lay)
        return out
    if kind == Kind.CONCAT:
        if fnode.layer.axis % len(out_shape) == len(out_shape) - 1:
            return Layout(tuple(seg for lay in in_lays for seg in lay.expanded()))
        return in_lays[0] if spaces.unify(in_lays) else None
    if kind == Kind.RESHAPE:
        in_shape = fnode.in_shapes[0]
        if _shape_last(out_shape) == _shape_last(in_shape) and len(out_shape) > 1:
            return in_lays[0]
        if len(out_shape) == 2 and None not in in_shape[1:]:
            positions = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
            return Layout(in_lays[0].segments, in_lays[0].repeat * positions)
    return None


def _groups(graph, spaces, layout, kinds):
    """Groups: roots of spaces that are not fixed, named after their first writer.

    Returns ``(groups, {root space: group index})``.
    """
    roots = []
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if not spaces.is_fixed(r) and r not in roots:
            roots.append(r)
    writers = {r: [] for r in roots}
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if r in writers and spaces.origin[s]:
            writers[r].append(spaces.origin[s])
    for fnode, kind in zip(graph.nodes, kinds):
        if kind == Kind.DEPTHWISE:
            for s, _ in layout[fnode.out_keys[0]].segments:
                r = spaces.find(s)
                if r in writers and fnode.name not in writers[r]:
                    writers[r].append(fnode.name)
    groups = [Group(name=writers[r][0], size=spaces.length[r], writers=writers[r]) for r in roots]
    return groups, {r: i for i, r in enumerate(roots)}


def _gate_points(graph, spaces, layout, kinds):
    """``{gated tensor key: name of the layer whose output it is}``, in call order.

    Gates go after every writer, following a single-consumer chain of channelwise affine
    layers (the paper's "after BatchNormalization"), then wherever a channel-mixing layer
    would otherwise read a pruned channel that is not exactly zero.
    """
    consumers = {}
    for i, fnode in enumerate(graph.nodes):
        for k in fnode.in_keys:
            consumers.setdefault(k, []).append(i)
    outputs = set(graph.output_keys)
    gates = set()
    for fnode, kind in zip(graph.nodes, kinds):
        if kind not in (Kind.PRODUCER, Kind.DEPTHWISE):
            continue
        k = fnode.out_keys[0]
        if not spaces.prunable(layout[k]):
            continue
        while k not in outputs and len(consumers.get(k, [])) == 1:
            i = consumers[k][0]
            if not isinstance(graph.nodes[i].layer, keras.layers.BatchNormalization) or kinds[i] != Kind.CHANNELWISE:
                break
            k = graph.nodes[i].out_keys[0]
        gates.add(k)

    while True:
        clean = {k: True for k in graph.input_keys}
        added = False
        for fnode, kind in zip(graph.nodes, kinds):
            ins = [clean[k] or not spaces.prunable(layout[k]) for k in fnode.in_keys]
            if kind == Kind.PRODUCER and not ins[0]:
                gates.add(fnode.in_keys[0])
                added = True
                ins[0] = True
            out_len = _shape_last(fnode.out_shapes[0]) if fnode.out_shapes else 0
            if kind in (Kind.PASSTHROUGH, Kind.RESHAPE):
                c = ins[0]
            elif kind == Kind.MERGE:
                full = [
                    ok
                    for ok, k in zip(ins, fnode.in_keys)
                    if layout[k].length == out_len and spaces.prunable(layout[k])
                ]
                c = any(full) if isinstance(fnode.layer, keras.layers.Multiply) else all(full)
            elif kind == Kind.CONCAT:
                c = all(ins)
            else:  # producer/depthwise/channelwise write non-zeros; opaque outputs are fixed
                c = False
            for k in fnode.out_keys:
                clean[k] = c or k in gates or not spaces.prunable(layout[k])
        if not added:
            break
    return {k: fnode.name for fnode in graph.nodes for k in fnode.out_keys if k in gates}


def _cost_spec(graph, spaces, layout, kinds, groups, group_of_root):
    """The exact :class:`chipnet_tf.budgets.CostSpec`: every rule's cost terms."""
    builder = CostSpecBuilder([g.name for g in groups], [g.size for g in groups])

    def form(lay):
        const = 0
        coeffs = {}
        for s, n in lay.segments:
            g = group_of_root.get(spaces.find(s))
            if g is None:
                const += n * lay.repeat
            else:
                coeffs[g] = coeffs.get(g, 0) + lay.repeat
        return builder.form(const, coeffs)

    for fnode, kind in zip(graph.nodes, kinds):
        ctx = registry.CostContext(
            layer=fnode.layer,
            name=fnode.name,
            kind=kind,
            in_forms=[form(layout[k]) for k in fnode.in_keys],
            out_form=form(layout[fnode.out_keys[0]]) if fnode.out_keys else builder.one,
            out_shape=fnode.out_shapes[0] if fnode.out_shapes else (),
            in_shape=fnode.in_shapes[0] if fnode.in_shapes else (),
            first_call=fnode.first_call,
        )
        registry.lookup(fnode.layer).add_costs(builder, ctx)
    return builder.build()


__all__ = [
    "Analysis",
    "FlatGraph",
    "FlatNode",
    "Group",
    "Layout",
    "UnsupportedModelError",
    "analyze",
    "check_model",
    "flatten",
]
