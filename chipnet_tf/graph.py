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

The analysis works on a *flat* view of the model (nested functional models are walked
into), so the same code serves wrapping, stripping and budget reports.
"""

import dataclasses
import warnings

import numpy as np

from chipnet_tf import registry
from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import is_keras3_object, keras, tf


class UnsupportedModelError(ValueError):
    """The model cannot be analysed (subclassed, unbuilt, Keras 3, ...)."""


# -- flat view -------------------------------------------------------------------------
@dataclasses.dataclass
class FlatNode:
    layer: object
    name: str
    node: object  # the tf_keras Node
    scope: int
    in_keys: list
    out_keys: list
    out_shapes: list
    in_shapes: list
    first_call: bool


@dataclasses.dataclass
class FlatGraph:
    nodes: list
    input_keys: list
    input_tensors: list
    output_keys: list
    layer_names: dict  # id(layer) -> flat name

    def resolve_args(self, fnode, tensors):
        """``(args, kwargs)`` of ``fnode``'s call with its input tensors from ``tensors``."""

        def sub(x):
            if hasattr(x, "_keras_history"):
                return tensors[self._key(fnode.scope, x)]
            return x

        args = tf.nest.map_structure(sub, fnode.node.call_args)
        kwargs = tf.nest.map_structure(sub, fnode.node.call_kwargs)
        return args, kwargs

    def _key(self, scope, kt):
        key = (scope, id(kt))
        while key in self._alias:
            key = self._alias[key]
        return key


def _is_functional(layer):
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def check_model(model):
    """Raises a clear error unless ``model`` is a built tf_keras functional/Sequential model."""
    if is_keras3_object(model):
        raise TypeError(
            f"chipnet_tf needs a tf_keras (Keras 2) model, but received a Keras 3 object of type "
            f"{type(model).__module__}.{type(model).__name__}. Build the model with "
            "`import tf_keras as keras` (pip install tf-keras), or import chipnet_tf before "
            "TensorFlow so that TF_USE_LEGACY_KERAS=1 makes tf.keras the tf_keras Keras 2."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a tf_keras Model. Received: {type(model).__name__} {model!r}")
    if isinstance(model, keras.Sequential) and not model.built:
        raise UnsupportedModelError(
            f"Sequential model {model.name!r} is not built: give it an input shape "
            "(keras.Input or input_shape=...) or call it on data before pruning."
        )
    if not _is_functional(model):
        raise UnsupportedModelError(
            f"Model {model.name!r} of class {type(model).__name__} is a subclassed model: its graph "
            "cannot be analysed. Wrap its layers instead, e.g. `self.conv = "
            "chipnet_tf.prune_low_budget(keras.layers.Conv2D(64, 3), budget=0.5, "
            'budget_type="channels")`; channels and volume budgets work per layer, params and flops '
            "budgets need a functional or Sequential model."
        )


def flatten(model):
    """Walks a functional model (recursing into nested functional models) in call order."""
    check_model(model)
    alias = {}
    nodes = []
    layer_names = {}
    used_names = set()
    called = set()
    counter = [0]

    def key(scope, kt):
        k = (scope, id(kt))
        while k in alias:
            k = alias[k]
        return k

    def name_of(layer, prefix):
        if id(layer) not in layer_names:
            name = layer.name
            if name in used_names and prefix:
                name = f"{prefix}_{layer.name}"
            i = 1
            base = name
            while name in used_names:
                name = f"{base}_{i}"
                i += 1
            used_names.add(name)
            layer_names[id(layer)] = name
        return layer_names[id(layer)]

    def walk(m, scope, prefix):
        for depth in sorted(m._nodes_by_depth, reverse=True):
            for node in m._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer = node.layer
                in_kts = tf.nest.flatten(node.keras_inputs)
                out_kts = tf.nest.flatten(node.outputs)
                if _is_functional(layer):
                    counter[0] += 1
                    inner = counter[0]
                    for inner_in, outer_in in zip(tf.nest.flatten(layer.inputs), in_kts):
                        alias[(inner, id(inner_in))] = key(scope, outer_in)
                    walk(layer, inner, layer.name)
                    for inner_out, outer_out in zip(tf.nest.flatten(layer.outputs), out_kts):
                        alias[(scope, id(outer_out))] = key(inner, inner_out)
                    continue
                nodes.append(
                    FlatNode(
                        layer=layer,
                        name=name_of(layer, prefix),
                        node=node,
                        scope=scope,
                        in_keys=[key(scope, t) for t in in_kts],
                        out_keys=[(scope, id(t)) for t in out_kts],
                        out_shapes=[tuple(t.shape) for t in out_kts],
                        in_shapes=[tuple(t.shape) for t in in_kts],
                        first_call=id(layer) not in called,
                    )
                )
                called.add(id(layer))

    walk(model, 0, "")
    graph = FlatGraph(
        nodes=nodes,
        input_keys=[(0, id(t)) for t in model.inputs],
        input_tensors=list(model.inputs),
        output_keys=[key(0, t) for t in tf.nest.flatten(model.outputs)],
        layer_names=layer_names,
    )
    graph._alias = alias
    return graph


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
    kinds: dict  # flat layer name -> kind
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
    layout = {}
    kinds = {}
    stopped = []
    for key, kt in zip(graph.input_keys, graph.input_tensors):
        layout[key] = Layout(((spaces.new(_shape_last(tuple(kt.shape)), fixed=True), _shape_last(tuple(kt.shape))),))

    def fixed_layout(shape, origin=None):
        n = _shape_last(shape)
        return Layout(((spaces.new(n, origin=origin, fixed=True), n),))

    def fix_all(lay):
        for s, _ in lay.segments:
            spaces.fix(s)

    def unify(layouts):
        """Couples inputs of an element-wise op; returns False when they cannot be matched."""
        ref = layouts[0]
        for other in layouts[1:]:
            a, b = ref.expanded(), other.expanded()
            if len(a) != len(b) or any(la != lb for (_, la), (_, lb) in zip(a, b)):
                return False
        for other in layouts[1:]:
            for (sa, _), (sb, _) in zip(ref.expanded(), other.expanded()):
                spaces.union(sa, sb)
        return True

    # A layer called more than once has one set of weights: the channels it reads (and,
    # for a producer, writes) must be the same groups at every call.
    first_call = {}
    for fnode in graph.nodes:
        layer = fnode.layer
        in_lays = [layout[k] for k in fnode.in_keys]
        rank = len(fnode.in_shapes[0]) if fnode.in_shapes else 0
        kind = registry.lookup(layer).kind(layer, rank) if in_lays else "opaque"
        out_shape = fnode.out_shapes[0] if fnode.out_shapes else ()
        if kind in ("producer",) and len(in_lays) != 1:
            kind = "opaque"
        shared = first_call.get(id(layer))
        if shared is None:
            first_call[id(layer)] = (in_lays, kind, None)
        elif kind != "opaque" and (layer.weights or kind == "reshape"):
            first_in, first_kind, _ = shared
            if (
                first_kind != kind
                or len(first_in) != len(in_lays)
                or not all(unify([a, b]) for a, b in zip(first_in, in_lays))
            ):
                for lay in list(first_in) + in_lays:
                    fix_all(lay)
        if kind == "producer" and shared is not None and shared[2] is not None:
            out = shared[2]
        elif kind == "producer":
            n = _shape_last(out_shape)
            fixed = not registry.output_prunable(layer)  # e.g. Dense(..., activation="softmax")
            out = Layout(((spaces.new(n, origin=fnode.name, fixed=fixed), n),))
            first_call[id(layer)] = (first_call[id(layer)][0], kind, out)
        elif kind == "depthwise":
            out = in_lays[0]
        elif kind in ("channelwise", "passthrough"):
            out = in_lays[0] if in_lays[0].length == _shape_last(out_shape) else None
        elif kind == "merge":
            full = [lay for lay in in_lays if lay.length == _shape_last(out_shape)]
            out = full[0] if full and unify(full) else None
            for lay in in_lays:
                if lay not in full:
                    fix_all(lay)
        elif kind == "concat":
            axis = layer.axis % len(out_shape)
            if axis == len(out_shape) - 1:
                segs = tuple(seg for lay in in_lays for seg in lay.expanded())
                out = Layout(segs)
            else:
                out = in_lays[0] if unify(in_lays) else None
        elif kind == "reshape":
            in_shape = fnode.in_shapes[0]
            if _shape_last(out_shape) == _shape_last(in_shape) and len(out_shape) > 1:
                out = in_lays[0]
            elif len(out_shape) == 2 and None not in in_shape[1:]:
                positions = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
                out = Layout(in_lays[0].segments, in_lays[0].repeat * positions)
            else:
                out = None
        else:
            out = None
        if out is None:
            if any(
                spaces.origin[sp] is not None or not spaces.is_fixed(sp) for lay in in_lays for sp, _ in lay.segments
            ):
                stopped.append(fnode.name)
            kind = "opaque"
            for lay in in_lays:
                fix_all(lay)
            outs = [fixed_layout(shape) for shape in fnode.out_shapes]
        else:
            outs = [out]
        if fnode.name in exclude:
            for lay in outs:
                fix_all(lay)
        kinds[fnode.name] = kind
        fnode.kind = kind
        for k, lay in zip(fnode.out_keys, outs):
            layout[k] = lay

    for k in graph.output_keys:
        fix_all(layout[k])

    # Groups: roots of spaces that are not fixed, named after their first writer.
    roots = []
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if not spaces.is_fixed(r) and r not in roots:
            roots.append(r)
    group_of_root = {r: i for i, r in enumerate(roots)}
    writers = {r: [] for r in roots}
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if r in writers and spaces.origin[s]:
            writers[r].append(spaces.origin[s])
    for fnode in graph.nodes:
        if fnode.kind == "depthwise":
            for s, _ in layout[fnode.out_keys[0]].segments:
                r = spaces.find(s)
                if r in writers and fnode.name not in writers[r]:
                    writers[r].append(fnode.name)
    groups = [Group(name=writers[r][0], size=spaces.length[r], writers=writers[r]) for r in roots]

    def glayout(lay):
        segs = [(group_of_root.get(spaces.find(s)), n) for s, n in lay.segments]
        return segs, lay.repeat

    def prunable(lay):
        return any(not spaces.is_fixed(s) for s, _ in lay.segments)

    # Gate points: after every writer, following a single-consumer chain of channelwise
    # affine layers (the paper's "after BatchNormalization"), then wherever a channel-mixing
    # layer would otherwise read a pruned channel that is not exactly zero.
    consumers = {}
    producer_of = {}
    for i, fnode in enumerate(graph.nodes):
        for k in fnode.in_keys:
            consumers.setdefault(k, []).append(i)
        for k in fnode.out_keys:
            producer_of[k] = i
    outputs = set(graph.output_keys)
    gates = set()
    for fnode in graph.nodes:
        if fnode.kind not in ("producer", "depthwise"):
            continue
        k = fnode.out_keys[0]
        if not prunable(layout[k]):
            continue
        while k not in outputs and len(consumers.get(k, [])) == 1:
            nxt = graph.nodes[consumers[k][0]]
            if not isinstance(nxt.layer, keras.layers.BatchNormalization) or nxt.kind != "channelwise":
                break
            k = nxt.out_keys[0]
        gates.add(k)

    while True:
        clean = {k: True for k in graph.input_keys}
        added = False
        for fnode in graph.nodes:
            ins = [clean[k] or not prunable(layout[k]) for k in fnode.in_keys]
            if fnode.kind in ("producer",) and not ins[0]:
                gates.add(fnode.in_keys[0])
                added = True
                ins[0] = True
            out_len = _shape_last(fnode.out_shapes[0]) if fnode.out_shapes else 0
            if fnode.kind in ("passthrough", "reshape"):
                c = ins[0]
            elif fnode.kind == "merge":
                full = [ok for ok, k in zip(ins, fnode.in_keys) if layout[k].length == out_len and prunable(layout[k])]
                if isinstance(fnode.layer, keras.layers.Multiply):
                    c = any(full)
                else:
                    c = all(full)
            elif fnode.kind == "concat":
                c = all(ins)
            else:  # producer/depthwise/channelwise write non-zeros; opaque outputs are fixed
                c = False
            for k in fnode.out_keys:
                clean[k] = c or k in gates or not prunable(layout[k])
        if not added:
            break

    ordered_gates = {}
    gate_origin = {}
    for fnode in graph.nodes:
        for k in fnode.out_keys:
            if k in gates:
                ordered_gates[k] = glayout(layout[k])
                gate_origin[k] = fnode.name

    # Exact cost model.
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

    for fnode in graph.nodes:
        ctx = _CostContext(
            layer=fnode.layer,
            name=fnode.name,
            kind=fnode.kind,
            in_forms=[form(layout[k]) for k in fnode.in_keys],
            out_form=form(layout[fnode.out_keys[0]]) if fnode.out_keys else builder.one,
            out_shape=fnode.out_shapes[0] if fnode.out_shapes else (),
            in_shape=fnode.in_shapes[0] if fnode.in_shapes else (),
            first_call=fnode.first_call,
        )
        registry.lookup(fnode.layer).add_costs(builder, ctx)

    if stopped and warn:
        warnings.warn(
            "chipnet_tf: these layers cannot be seen through, so the channels feeding them and "
            f"coming out of them are not pruned: {stopped}. Register a rule with "
            "chipnet_tf.registry.register_layer to prune through them.",
            stacklevel=3,
        )
    return Analysis(
        graph=graph,
        groups=groups,
        layouts={k: glayout(v) for k, v in layout.items()},
        gates=ordered_gates,
        gate_origin=gate_origin,
        spec=builder.build(),
        kinds=kinds,
        stopped=stopped,
    )


@dataclasses.dataclass
class _CostContext:
    layer: object
    name: str
    kind: str
    in_forms: list
    out_form: int
    out_shape: tuple
    in_shape: tuple
    first_call: bool
