"""The flat view of a Keras 3 functional or Sequential model (TensorFlow backend).

It produces the same :class:`~chipnet_tf.analysis.flat_graph.FlatGraph` as
:func:`chipnet_tf.analysis.flat_graph.flatten` does for tf_keras, so the group analysis,
the layouts and the cost model are shared. Keras 3 keeps ``model._nodes_by_depth`` but
renames the node API (``node.operation``, ``node.input_tensors``,
``node.output_tensors``), and a ``keras.ops`` call between layers (``keras.ops.add(x, y)``,
``x + 3``, ``keras.ops.relu(x)``) is an ``Operation`` node of its own instead of a TF-op
layer: it becomes one :class:`FlatNode` whose ``layer`` is the Operation (its rule is in
:mod:`chipnet_tf.registry.keras3ops`). Nested functional and Sequential models are walked
into, as for tf_keras. Custom layers are not traced into (they stay one call each).

Keras 3 is imported here only when a Keras 3 model is walked (:func:`chipnet_tf.compat.keras3`).

Example:
    >>> import keras
    >>> x = keras.Input((8, 8, 3))
    >>> y = keras.ops.relu(keras.layers.Conv2D(4, 3, name="conv")(x))
    >>> graph = flatten_keras3(keras.Model(x, y))
    >>> [n.name for n in graph.nodes]
    ['conv', 'relu']
"""

from chipnet_tf.analysis.flat_graph import FlatGraph, FlatNode, UnsupportedModelError
from chipnet_tf.compat import is_keras3_object, keras3


def _functional(model):
    """The Functional that holds ``model``'s graph (a built Sequential's inner one), or None."""
    functional_class = keras3().src.models.functional.Functional
    if isinstance(model, functional_class):
        return model
    inner = getattr(model, "_functional", None) if isinstance(model, keras3().Sequential) else None
    return inner if isinstance(inner, functional_class) else None


def check_keras3_model(model):
    """Raises a clear error unless ``model`` is a built Keras 3 functional/Sequential model.

    Raises:
        UnsupportedModelError: an unbuilt Sequential or a subclassed model.
    """
    k3 = keras3()
    if not isinstance(model, k3.Model):
        raise TypeError(f"Expected a Keras model. Received: {type(model).__name__} {model!r}")
    if _functional(model) is not None:
        return
    if isinstance(model, k3.Sequential):
        raise UnsupportedModelError(
            f"Sequential model {model.name!r} is not built: give it an input shape "
            "(keras.Input(...) as its first layer) or call it on data before analysing it."
        )
    raise UnsupportedModelError(
        f"Model {model.name!r} of class {type(model).__name__} is a subclassed model: its graph "
        "cannot be analysed. Build it with the functional API or as a Sequential model."
    )


def flatten_keras3(model):
    """Walks a Keras 3 functional/Sequential model (recursing into nested ones) in call order.

    Returns:
        A :class:`FlatGraph` of :class:`FlatNode` (``node`` is the Keras 3 Node, ``layer``
        the Layer or ``keras.ops`` Operation it calls).
    """
    check_keras3_model(model)
    top = _functional(model)
    graph = FlatGraph(
        nodes=[],
        input_keys=[(0, id(t)) for t in top.inputs],
        input_tensors=list(top.inputs),
        output_keys=[],
        layer_names={},
    )
    alias, nodes, layer_names = graph.alias, graph.nodes, graph.layer_names
    used_names, called, counter = set(), set(), [0]

    def key(scope, kt):
        return graph.resolve((scope, id(kt)))

    def name_of(op, prefix):
        if id(op) not in layer_names:
            name = op.name
            if name in used_names and prefix:
                name = f"{prefix}_{op.name}"
            base, i = name, 1
            while name in used_names:
                name, i = f"{base}_{i}", i + 1
            used_names.add(name)
            layer_names[id(op)] = name
        return layer_names[id(op)]

    def walk(functional, scope, prefix):
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                op = node.operation
                in_kts, out_kts = list(node.input_tensors), list(node.output_tensors)
                sub = _functional(op) if is_keras3_object(op) else None
                if sub is not None:
                    counter[0] += 1
                    inner = counter[0]
                    for inner_in, outer_in in zip(sub.inputs, in_kts):
                        alias[(inner, id(inner_in))] = key(scope, outer_in)
                    walk(sub, inner, op.name)
                    for inner_out, outer_out in zip(_flat(sub.outputs), out_kts):
                        alias[(scope, id(outer_out))] = key(inner, inner_out)
                    continue
                nodes.append(
                    FlatNode(
                        layer=op,
                        name=name_of(op, prefix),
                        node=node,
                        scope=scope,
                        in_keys=[key(scope, t) for t in in_kts],
                        out_keys=[(scope, id(t)) for t in out_kts],
                        out_shapes=[tuple(t.shape) for t in out_kts],
                        in_shapes=[tuple(t.shape) for t in in_kts],
                        first_call=id(op) not in called,
                    )
                )
                called.add(id(op))

    walk(top, 0, "")
    graph.output_keys = [key(0, t) for t in _flat(top.outputs)]
    return graph


def _flat(tensors):
    return keras3().tree.flatten(tensors)
