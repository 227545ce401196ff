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

The analysis works on a *flat* view of the model (:mod:`chipnet_tf.analysis.flat_graph`: nested
functional models are walked into), so the same code serves wrapping, stripping and
budget reports.
"""

import dataclasses
import warnings

from chipnet_tf import registry
from chipnet_tf.analysis.flat_graph import (  # re-exported: groups.flatten etc. are used across the package
    FlatGraph,
    FlatNode,
    UnsupportedModelError,
    call_arguments,
    check_model,
    flatten,
)
from chipnet_tf.analysis.keras3_graph import check_keras3_model, flatten_keras3
from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import is_instance, is_keras3_object, keras
from chipnet_tf.registry import Kind, probe
from chipnet_tf.registry.layouts import DEFAULT_LAYOUT, Layout, LayoutContext, Spaces, shape_last


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
    rules: list = dataclasses.field(default_factory=list)  # the LayerRule of each call in graph.nodes
    inferred: dict = dataclasses.field(default_factory=dict)  # layer name -> class name, rule inferred by a probe
    # layer name -> {label: group layout} of the axes inside a layer pruned as groups (LayerRule(inner=...))
    inner: dict = dataclasses.field(default_factory=dict)

    @property
    def group_names(self):
        return [g.name for g in self.groups]


def flatten_any(model):
    """The :class:`FlatGraph` of a tf_keras model (:func:`flatten`) or of a Keras 3 model
    (:func:`chipnet_tf.analysis.keras3_graph.flatten_keras3`), by the model's own Keras.

    Example:
        >>> [n.name for n in flatten_any(model).nodes]  # doctest: +SKIP
        ['conv', 'bn', 'relu', 'gap', 'dense']
    """
    return flatten_keras3(model) if is_keras3_object(model) else flatten(model)


def check_any_model(model):
    """Raises a clear error unless ``model`` is a built functional/Sequential model of either
    Keras (see :func:`check_model` and :func:`chipnet_tf.analysis.keras3_graph.check_keras3_model`)."""
    if is_keras3_object(model):
        check_keras3_model(model)
    else:
        check_model(model)


def analyze(model_or_graph, exclude=None, warn=True):
    """Finds the channel groups, the gate points and the exact cost model of a model.

    A Keras 3 functional/Sequential model (TensorFlow backend, ``import keras``) gives the
    same groups, layouts and :class:`chipnet_tf.CostSpec` as the same architecture built with
    tf_keras; only tf_keras models can be pruned so far.

    Example:
        >>> analysis = chipnet_tf.analyze(model)  # doctest: +SKIP
        >>> [(g.name, g.size) for g in analysis.groups], analysis.spec.dense("flops")  # doctest: +SKIP

    Args:
        model_or_graph: a tf_keras or Keras 3 functional/Sequential model, or a :class:`FlatGraph`.
        exclude: layer names whose output channels are never pruned.
        warn: emit a warning naming layers that stop groups, and one naming the custom
            layers whose rule was inferred by a numerical probe (:mod:`chipnet_tf.registry.probe`).

    Returns:
        An :class:`Analysis`.

    Raises:
        ValueError: ``exclude`` names a layer that is not in the model.
    """
    graph = model_or_graph if isinstance(model_or_graph, FlatGraph) else flatten_any(model_or_graph)
    names = {n.name for n in graph.nodes}
    exclude = list(exclude or [])
    unknown = [e for e in exclude if e not in names]
    if unknown:
        raise ValueError(f"exclude names layers that are not in the model: {unknown}. Layers: {sorted(names)}")

    rules, inferred = probe.rules_of(graph)
    spaces = Spaces()
    layout, kinds, stopped, inner = _propagate(graph, spaces, exclude, rules)
    for k in graph.output_keys:
        spaces.fix_all(layout[k])
    groups, group_of_root = _groups(graph, spaces, layout, kinds)
    glayouts = {k: _group_layout(spaces, groups, group_of_root, v) for k, v in layout.items()}
    ginner = {
        name: {label: _group_layout(spaces, groups, group_of_root, lay) for label, lay in axes.items()}
        for name, axes in inner.items()
    }
    gate_origin = _gate_points(graph, spaces, layout, kinds)
    spec = _cost_spec(graph, glayouts, kinds, groups, rules, ginner)
    inferred = {name: cls for name, cls in inferred.items() if name not in stopped}
    if warn:
        _warn(stopped, inferred, graph, rules)
    return Analysis(
        graph=graph,
        groups=groups,
        layouts=glayouts,
        gates={k: glayouts[k] for k in gate_origin},
        gate_origin=gate_origin,
        spec=spec,
        kinds=kinds,
        stopped=stopped,
        rules=rules,
        inferred=inferred,
        inner=ginner,
    )


def _warn(stopped, inferred, graph, rules):
    if stopped:
        why = "; ".join(f"{name!r} {reason}" for name, reason in _stop_reasons(stopped, graph, rules).items())
        warnings.warn(
            "chipnet_tf: these layers cannot be seen through, so the channels feeding them and "
            f"coming out of them are not pruned: {stopped}" + (f" (why: {why})" if why else "") + ". Register a "
            "rule with chipnet_tf.register_layer to prune through them.",
            stacklevel=4,
        )
    for name, class_name in inferred.items():
        warnings.warn(probe.inferred_message(name, class_name), stacklevel=4)


def _stop_reasons(stopped, graph, rules):
    """``{layer name: why it is opaque}`` (:func:`chipnet_tf.registry.probe.explain`) for the
    layers that stopped groups, at their first call."""
    reasons = {}
    for fnode, rule in zip(graph.nodes, rules):
        if fnode.name in stopped and fnode.name not in reasons:
            reasons[fnode.name] = probe.explain(fnode, rule)
    return {name: reason for name, reason in reasons.items() if reason}


def _group_layout(spaces, groups, group_of_root, lay):
    """``(segments, repeat)`` with segments ``(group index or None, length)``; a periodic
    group's mask is listed once per period."""
    segs = []
    for leaf, n in spaces.expand(Layout(lay.segments)):
        g = group_of_root.get(leaf)
        if g is None:
            segs.append((None, n))
        else:
            segs.extend([(g, groups[g].size)] * (n // groups[g].size))
    return segs, lay.repeat


def _propagate(graph, spaces, exclude, rules):
    """Layouts of every tensor and the kind of every call, coupling channel spaces.

    Returns ``(layout, kinds, stopped, inner)``: ``{tensor key: Layout}``, one Kind per node,
    the names of the opaque layers that stopped groups, and ``{layer name: {label: Layout}}``
    of the axes inside layers that are pruned as groups (``LayerRule(inner=...)``, one set
    per layer, made at its first call).
    """
    layout = {key: spaces.fixed_layout(tuple(kt.shape)) for key, kt in zip(graph.input_keys, graph.input_tensors)}
    kinds, stopped, inner = [], [], {}
    # A layer called more than once has one set of weights: the channels it reads (and,
    # for a producer, writes) must be the same groups at every call.
    first_call = {}
    for fnode, rule in zip(graph.nodes, rules):
        in_lays = [layout[k] for k in fnode.in_keys]
        rank = len(fnode.in_shapes[0]) if fnode.in_shapes else 0
        kind = rule.kind(fnode.layer, rank) if in_lays else Kind.OPAQUE
        if kind == Kind.PRODUCER and len(in_lays) != 1 and not rule.multi_input:
            kind = Kind.OPAQUE
        _couple_shared_call(spaces, first_call, fnode, in_lays, kind, rule)
        outs = _out_layouts(spaces, rule, kind, fnode, in_lays, first_call)
        if outs is None:
            if any(
                spaces.origin[sp] is not None or not spaces.is_fixed(sp) for lay in in_lays for sp, _ in lay.segments
            ):
                stopped.append(fnode.name)
            if kind == Kind.PRODUCER and first_call[id(fnode.layer)][2] is not None:
                spaces.fix_all(first_call[id(fnode.layer)][2])  # the space its handler refused
            kind = Kind.OPAQUE
            for lay in in_lays:
                spaces.fix_all(lay)
            outs = [spaces.fixed_layout(shape) for shape in fnode.out_shapes]
        if rule.inner is not None and kind != Kind.OPAQUE and fnode.first_call:
            inner[fnode.name] = {
                label: Layout(((spaces.new(n, origin=f"{fnode.name}/{label}"), int(n)),))
                for label, n in rule.inner(fnode.layer)
            }
        if fnode.name in exclude:
            for lay in outs + list(inner.get(fnode.name, {}).values()):
                spaces.fix_all(lay)
        kinds.append(kind)
        for k, lay in zip(fnode.out_keys, outs):
            layout[k] = lay
    return layout, kinds, stopped, inner


def _couple_shared_call(spaces, first_call, fnode, in_lays, kind, rule):
    """Records a layer's first call; couples a later call's inputs with the first's when
    the stripped layer is one for all calls (weights, or a surgery that renumbers its
    constants: a tf.split's sizes)."""
    layer = fnode.layer
    shared = first_call.get(id(layer))
    if shared is None:
        first_call[id(layer)] = [in_lays, kind, None]
    elif kind != Kind.OPAQUE and (layer.weights or kind == Kind.RESHAPE or rule.surgery is not None):
        first_in, first_kind, _ = shared
        if (
            first_kind != kind
            or len(first_in) != len(in_lays)
            or not all(spaces.unify([a, b]) for a, b in zip(first_in, in_lays))
        ):
            for lay in list(first_in) + in_lays:
                spaces.fix_all(lay)


def _out_layouts(spaces, rule, kind, fnode, in_lays, first_call):
    """The output layouts of one call (its kind's default, then the rule's own handler),
    or None when it cannot be seen through."""
    if kind == Kind.OPAQUE:
        return None
    if kind == Kind.PRODUCER:
        shared = first_call[id(fnode.layer)]
        if shared[2] is None:  # a shared producer writes the same space at every call
            n = shape_last(fnode.out_shapes[0] if fnode.out_shapes else ())
            fixed = not registry.output_prunable(fnode.layer)  # e.g. Dense(..., activation="softmax")
            shared[2] = Layout(((spaces.new(n, origin=fnode.name, fixed=fixed), n),))
        out = shared[2]
    else:
        out = DEFAULT_LAYOUT[kind](LayoutContext(spaces, fnode, in_lays, kind))
    if rule.layout is not None:
        out = rule.layout(LayoutContext(spaces, fnode, in_lays, kind, out))
    if out is None:
        return None
    outs = out if isinstance(out, list) else [out]
    return outs if len(outs) == len(fnode.out_keys) else None


def _groups(graph, spaces, layout, kinds):
    """Groups: uncut root spaces that are not fixed, named after their first writer. A
    space whose period is 1 (every channel tied to every other) is fixed.

    Returns ``(groups, {root space: group index})``.
    """
    roots = []
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if spaces.children[r] is None and spaces.period[r] == 1:
            spaces.fixed[r] = True
        if spaces.children[r] is None and not spaces.fixed[r] and r not in roots:
            roots.append(r)
    writers = {r: [] for r in roots}
    for s in range(len(spaces.parent)):
        r = spaces.find(s)
        if r in writers and spaces.origin[s]:
            writers[r].append(spaces.origin[s])
    for fnode, kind in zip(graph.nodes, kinds):
        if kind == Kind.DEPTHWISE:
            for r, _ in spaces.expand(layout[fnode.out_keys[0]]):
                if r in writers and fnode.name not in writers[r]:
                    writers[r].append(fnode.name)
    groups = [Group(name=writers[r][0], size=spaces.period[r], writers=writers[r]) for r in roots]
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
            if not is_instance(graph.nodes[i].layer, keras.layers.BatchNormalization) or kinds[i] != Kind.CHANNELWISE:
                break
            k = graph.nodes[i].out_keys[0]
        gates.add(k)

    while True:
        clean = {k: True for k in graph.input_keys}
        added = False
        for fnode, kind in zip(graph.nodes, kinds):
            ins = [clean[k] or not spaces.prunable(layout[k]) for k in fnode.in_keys]
            if kind == Kind.PRODUCER:  # a producer reads every input (an attention layer several)
                for j, k in enumerate(fnode.in_keys):
                    if not ins[j]:
                        gates.add(k)
                        added = True
                        ins = [ok or key == k for ok, key in zip(ins, fnode.in_keys)]
            out_len = shape_last(fnode.out_shapes[0]) if fnode.out_shapes else 0
            if kind in (Kind.PASSTHROUGH, Kind.RESHAPE):
                c = ins[0]
            elif kind == Kind.MERGE:
                full = [
                    ok
                    for ok, k in zip(ins, fnode.in_keys)
                    if layout[k].length == out_len and spaces.prunable(layout[k])
                ]
                c = any(full) if is_instance(fnode.layer, keras.layers.Multiply) else all(full)
            elif kind == Kind.CONCAT:
                c = all(ins)
            else:  # producer/depthwise/channelwise write non-zeros; opaque outputs are fixed
                c = False
            for k in fnode.out_keys:
                clean[k] = c or k in gates or not spaces.prunable(layout[k])
        if not added:
            break
    return {k: fnode.name for fnode in graph.nodes for k in fnode.out_keys if k in gates}


def _cost_spec(graph, glayouts, kinds, groups, rules, ginner):
    """The exact :class:`chipnet_tf.budgets.CostSpec`: every rule's cost terms."""
    builder = CostSpecBuilder([g.name for g in groups], [g.size for g in groups])

    def form(glay):
        segments, repeat = glay
        const = 0
        coeffs = {}
        for g, n in segments:
            if g is None:
                const += n * repeat
            else:
                coeffs[g] = coeffs.get(g, 0) + repeat
        return builder.form(const, coeffs)

    for fnode, kind, rule in zip(graph.nodes, kinds, rules):
        ctx = registry.CostContext(
            layer=fnode.layer,
            name=fnode.name,
            kind=kind,
            in_forms=[form(glayouts[k]) for k in fnode.in_keys],
            out_form=form(glayouts[fnode.out_keys[0]]) if fnode.out_keys else builder.one,
            out_shape=fnode.out_shapes[0] if fnode.out_shapes else (),
            in_shape=fnode.in_shapes[0] if fnode.in_shapes else (),
            first_call=fnode.first_call,
            in_shapes=list(fnode.in_shapes),
            # a shared layer's calls share one name, and its inner groups
            inner_forms={label: form(glay) for label, glay in ginner.get(fnode.name, {}).items()},
            call_args=tuple(call_arguments(fnode.node)[0]),
            call_kwargs=dict(call_arguments(fnode.node)[1]),
        )
        registry.add_costs(rule, builder, ctx, rows=fnode.batch)
        # What a latency lookup reads: the input and output widths; for a layer with inner
        # groups (an attention layer) the first inner group (its heads) instead of the input.
        first_in = next(iter(ctx.inner_forms.values()), ctx.in_forms[0] if ctx.in_forms else builder.one)
        builder.call_forms[call_name(fnode, builder.call_forms)] = (first_in, ctx.out_form)
    return builder.build()


def call_name(fnode, seen):
    """A layer call's name: the layer's flat name, ``name#k`` for its k-th later call."""
    name, k = fnode.name, 1
    while name in seen:
        name, k = f"{fnode.name}#{k}", k + 1
    return name


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
    "flatten_any",
]
