"""The flat view of a Keras 3 functional or Sequential model (TensorFlow backend).

It produces the same :class:`~chipnet_tf.analysis.flat_graph.FlatGraph` as
:func:`chipnet_tf.analysis.flat_graph.flatten` does for tf_keras, so the group analysis,
the layouts and the cost model are shared. Keras 3 keeps ``model._nodes_by_depth`` but
renames the node API (``node.operation``, ``node.input_tensors``,
``node.output_tensors``), and a ``keras.ops`` call between layers (``keras.ops.add(x, y)``,
``x + 3``, ``keras.ops.relu(x)``) is an ``Operation`` node of its own instead of a TF-op
layer: it becomes one :class:`FlatNode` whose ``layer`` is the Operation (its rule is in
:mod:`chipnet_tf.registry.keras3ops`). Nested functional and Sequential models are walked
into, and so are custom layers made of Keras layers (keras-hub's MobileNetV3 blocks), traced
as for tf_keras (:mod:`chipnet_tf.analysis.composite`).

Keras 3 is imported here only when a Keras 3 model is walked (:func:`chipnet_tf.compat.keras3`).

Example:
    >>> import keras
    >>> x = keras.Input((8, 8, 3))
    >>> y = keras.ops.relu(keras.layers.Conv2D(4, 3, name="conv")(x))
    >>> graph = flatten_keras3(keras.Model(x, y))
    >>> [n.name for n in graph.nodes]
    ['conv', 'relu']
"""

from chipnet_tf.analysis.composite import composite
from chipnet_tf.analysis.flat_graph import UnsupportedModelError, walk_functional
from chipnet_tf.compat import is_keras3_object, keras3


def functional_of(model):
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
    if functional_of(model) is not None:
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

    def call_of(node):
        if node.is_input:
            return None
        return node.operation, list(node.input_tensors), list(node.output_tensors)

    def nested_of(op, node):
        if not is_keras3_object(op):
            return None
        return functional_of(op) or composite(op, list(node.input_tensors), node)

    return walk_functional(functional_of(model), call_of, nested_of, _flat)


def _flat(tensors):
    return keras3().tree.flatten(tensors)


def inputs_like(model, new_inputs):
    """``new_inputs`` (a flat list) in the structure of ``model``'s inputs: a Keras 3 model
    built on one input tensor warns when it is called with a list. tf_keras: as given."""
    if not is_keras3_object(model):
        return new_inputs
    return keras3().tree.pack_sequence_as(functional_of(model)._inputs_struct, new_inputs)
