"""The flat view of a functional model: every layer call in call order, nested functional
models (and custom layers made of Keras layers, see :mod:`chipnet_tf.analysis.composite`) walked into, each
tensor named by a key ``(scope, id(tensor))``.
"""

import dataclasses
import math

from chipnet_tf.analysis.composite import composite
from chipnet_tf.analysis.composite import from_config as from_config  # used with the graph by prune and strip
from chipnet_tf.compat import call_arguments, keras, reject_keras3, tf


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
    # Rows of the batch this call runs on per example of the model's batch: a reshape that
    # folds patches or windows into the batch axis (MobileViT's unfold, Swin's window
    # partition) makes the calls after it run on ``k`` rows per example, until a reshape
    # unfolds them. Costs counted from a call's shapes (per row) are multiplied by it.
    batch: int = 1


@dataclasses.dataclass
class FlatGraph:
    nodes: list
    input_keys: list
    input_tensors: list
    output_keys: list
    layer_names: dict  # id(layer) -> flat name
    # tensor key -> the key it stands for: a nested model's inputs/outputs are its caller's
    # tensors; in strip's dense view, a gate's output is its input.
    alias: dict = dataclasses.field(default_factory=dict)

    def resolve(self, key):
        """The key ``key`` stands for, following :attr:`alias`."""
        while key in self.alias:
            key = self.alias[key]
        return key

    def resolve_args(self, fnode, tensors, constants=None):
        """``(args, kwargs)`` of ``fnode``'s call with its input tensors from ``tensors``.

        ``constants``: optional ``(args, kwargs)`` of the same structure whose non-tensor
        values replace the call's (a surgery's sliced constants)."""

        def sub(x, c):
            if hasattr(x, "_keras_history"):
                return tensors[self.resolve((fnode.scope, id(x)))]
            return c

        args, kwargs = call_arguments(fnode.node)
        new_args, new_kwargs = (args, kwargs) if constants is None else constants
        return tf.nest.map_structure(sub, args, new_args), tf.nest.map_structure(sub, kwargs, new_kwargs)


def input_name(kt):
    """The name of the Input layer that made the model input ``kt`` (either Keras)."""
    history = kt._keras_history
    return history.operation.name if hasattr(history, "operation") else history.layer.name


def _is_functional(layer):
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def check_model(model):
    """Raises a clear error unless ``model`` is a built tf_keras functional/Sequential model
    (a Keras 3 model: the TypeError of :func:`chipnet_tf.compat.reject_keras3`)."""
    reject_keras3(model)
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

    def call_of(node):
        if node.is_input:
            return None
        return node.layer, tf.nest.flatten(node.keras_inputs), tf.nest.flatten(node.outputs)

    def nested_of(layer, node):
        return layer if _is_functional(layer) else composite(layer, tf.nest.flatten(node.keras_inputs), node)

    return walk_functional(model, call_of, nested_of, tf.nest.flatten)


def _reads_dropped(model, call_of, flat, dropped):
    """Whether a call in ``model`` or its outputs read one of the ``dropped`` tensors."""
    if not dropped:
        return False
    ids = {id(t) for t in dropped}
    if any(id(t) in ids for t in flat(model.outputs)):
        return True
    calls = (call_of(node) for nodes in model._nodes_by_depth.values() for node in nodes)
    return any(id(t) in ids for call in calls if call is not None for t in call[1])


def _is_reshape(layer):
    """A reshape of either Keras: the ``Reshape`` layer, Keras 3's ``keras.ops.reshape``
    operation, a TF-op layer of ``tf.reshape``."""
    function = getattr(layer, "function", None)
    return type(layer).__name__ == "Reshape" or getattr(function, "__name__", None) == "reshape"


def _rows_after(layer, rows, in_shapes, out_shapes):
    """Rows per example after a call on ``rows`` rows per example: a reshape keeps the
    elements, so one whose per-row size changes moves the factor into (or out of) the batch
    axis; any other call keeps it."""
    if not _is_reshape(layer) or len(in_shapes) != 1 or len(out_shapes) != 1:
        return rows
    sizes = [in_shapes[0][1:], out_shapes[0][1:]]
    if any(d is None for shape in sizes for d in shape):
        return rows
    before, after = (math.prod(int(d) for d in shape) for shape in sizes)
    if after == 0 or (rows * before) % after:
        return rows
    return rows * before // after


def walk_functional(top, call_of, nested_of, flat):
    """The :class:`FlatGraph` of a functional model of either Keras, walked in call order.

    Args:
        top: the functional model (it has ``inputs``, ``outputs`` and ``_nodes_by_depth``).
        call_of: ``node -> (layer, input tensors, output tensors)``, None for an input node.
        nested_of: ``(layer, node) -> the functional model to walk into, or None``.
        flat: flattens a nest of tensors into a list.
    """
    inputs = list(flat(top.inputs))
    graph = FlatGraph(
        nodes=[],
        input_keys=[(0, id(t)) for t in inputs],
        input_tensors=inputs,
        output_keys=[],
        layer_names={},
    )
    alias, nodes, layer_names = graph.alias, graph.nodes, graph.layer_names
    rows = {}  # tensor key -> rows per example (see FlatNode.batch), 1 when absent
    used_names = set()
    called = set()
    counter = [0]

    def key(scope, kt):
        return graph.resolve((scope, id(kt)))

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
                call = call_of(node)
                if call is None:
                    continue
                layer, in_kts, out_kts = call
                sub = nested_of(layer, node)
                if sub is not None and _reads_dropped(m, call_of, flat, out_kts[len(flat(sub.outputs)) :]):
                    sub = None  # a traced call leaves out placeholder outputs: none may be read
                if sub is not None:
                    counter[0] += 1
                    inner = counter[0]
                    for inner_in, outer_in in zip(flat(sub.inputs), in_kts):
                        alias[(inner, id(inner_in))] = key(scope, outer_in)
                    walk(sub, inner, layer.name)
                    for inner_out, outer_out in zip(flat(sub.outputs), out_kts):
                        alias[(scope, id(outer_out))] = key(inner, inner_out)
                    continue
                in_keys = [key(scope, t) for t in in_kts]
                batch = max((rows.get(k, 1) for k in in_keys), default=1)
                in_shapes, out_shapes = [tuple(t.shape) for t in in_kts], [tuple(t.shape) for t in out_kts]
                nodes.append(
                    FlatNode(
                        layer=layer,
                        name=name_of(layer, prefix),
                        node=node,
                        scope=scope,
                        in_keys=in_keys,
                        out_keys=[(scope, id(t)) for t in out_kts],
                        out_shapes=out_shapes,
                        in_shapes=in_shapes,
                        first_call=id(layer) not in called,
                        batch=batch,
                    )
                )
                out_rows = _rows_after(layer, batch, in_shapes, out_shapes)
                rows.update((k, out_rows) for k in nodes[-1].out_keys if out_rows != 1)
                called.add(id(layer))

    walk(top, 0, "")
    graph.output_keys = [key(0, t) for t in flat(top.outputs)]
    return graph
