"""Custom layers made of Keras layers, seen as the functional model of their call (either Keras).

A layer with no registered rule that holds layers of its own (keras-cv's
``SqueezeAndExcite2D``, keras-hub's MobileNetV3 ``InvertedResidualBlock``: convs, batch
norms, activations, a squeeze-and-excite and a residual add) is walked into like a nested
functional model: its ``call`` is traced on a Keras input of the Keras it was built with,
so its sublayers and ops (TF ops in tf_keras, ``keras.ops`` calls in Keras 3) become
nodes the analysis sees, and ``prune_low_budget`` and ``strip_pruning`` rebuild them as
plain layers. The trace is kept only when it computes what the layer computes on random
inputs and every layer it calls can be rebuilt (its config round-trips, or it is itself
such a composite: a block holding a squeeze-and-excite layer) and counted: a Keras layer
with weights and no rule (``MultiHeadAttention``) costs nothing as a call of its own, while
the custom layer around it is counted from its traced graph, so a layer holding one stays
whole. Traced once per layer object.

Example:
    >>> class Block(keras.layers.Layer):  # doctest: +SKIP
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.conv = keras.layers.Conv2D(8, 1)
    ...     def call(self, x):
    ...         return x + self.conv(x)
    >>> composite(Block(name="block"), [keras.Input((4, 4, 8))]).name  # doctest: +SKIP
    'block_traced'
"""

import inspect
import weakref

import numpy as np

from chipnet_tf import registry
from chipnet_tf.compat import is_keras3_object, keras3, keras_of, tf

# Per custom layer: the functional model of its call (or None when it is not one).
_COMPOSITES = weakref.WeakKeyDictionary()
# Keras' own layers and models (either Keras) and chipnet_tf's are never traced into.
_BUILTIN_MODULES = (
    "tf_keras.src.layers.",
    "tf_keras.src.engine.",
    "keras.src.layers.",
    "keras.src.models.",
    "keras.src.ops.",
    "chipnet_tf.",
)


def from_config(cls, config, layer):
    """``cls.from_config(config)``, where a config entry that is a weightless layer object on
    ``layer`` (a keras-cv conv's ``activation=HardSigmoidActivation()``, whose own config
    does not round-trip) is passed as that object.

    When that fails and the config has entries no constructor of ``cls`` names (values
    derived from the others, as keras-hub's ``ViTPatchingAndEmbedding`` writes
    ``num_patches``), it is tried once more without them; the first error is raised if
    that fails too."""
    k = keras_of(layer)
    config = dict(config)
    for key in config:
        value = getattr(layer, key, None)
        if isinstance(value, k.layers.Layer) and not value.weights:
            config[key] = value
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as error:
        known = _constructor_arguments(cls)
        if known is None or set(config) <= known:
            raise
        try:
            return cls.from_config({key: value for key, value in config.items() if key in known})
        except Exception:  # noqa: BLE001 - the first error says what is wrong
            raise error from None


def _constructor_arguments(cls):
    """The named arguments of every ``__init__`` in ``cls``' hierarchy, or None when one
    cannot be read."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    return names - {"self"}


def composite(layer, inputs):
    """The functional model of a custom layer made of Keras layers, or None.

    Args:
        layer: the layer a node of a functional model calls (tf_keras or Keras 3).
        inputs: that call's input tensors, a flat list.

    Returns:
        A functional model of ``layer``'s call on one input of the same shape, or None when
        ``layer`` is Keras' own, has a registered rule, holds no layers, takes several inputs
        or an input of unknown size, or its trace is not the layer (see the module docstring).
    """
    if layer in _COMPOSITES:
        return _COMPOSITES[layer]
    k = keras_of(layer)
    model = None
    if (
        len(inputs) == 1
        and isinstance(layer, k.layers.Layer)
        and not isinstance(layer, k.Model)
        and not type(layer).__module__.startswith(_BUILTIN_MODULES)
        and not registry.has_rule(layer)
        and any(True for _ in layer._flatten_layers(include_self=False, recursive=False))
        and None not in tuple(inputs[0].shape)[1:]
    ):
        model = _trace(layer, tuple(inputs[0].shape))
    _COMPOSITES[layer] = model
    return model


def _trace(layer, shape):
    k = keras_of(layer)
    try:
        x = k.Input(batch_shape=shape, dtype=layer.dtype or "float32")
        model = k.Model(x, layer.call(x), name=f"{layer.name}_traced")
        if not all(_rebuildable(sub, sub_inputs) and not _uncounted(sub) for sub, sub_inputs in _calls(model)):
            return None
        data = np.random.default_rng(0).normal(size=(2, *shape[1:])).astype("float32")
        expected = _numpy_call(layer, data)
        got = _numpy_call(model, data)
    except Exception:  # noqa: BLE001 - a layer that cannot be traced stays one (opaque) layer
        return None
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
        return None
    return model


def _calls(model):
    """``(layer, its input tensors)`` of every layer call in ``model`` (``keras.ops`` calls
    of a Keras 3 trace are re-run as they are, so they need no rebuilding)."""
    keras3_model = is_keras3_object(model)
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input:
                continue
            if keras3_model:
                if isinstance(node.operation, keras3().layers.Layer):
                    yield node.operation, list(node.input_tensors)
            else:
                yield node.layer, tf.nest.flatten(node.keras_inputs)


def _rebuildable(layer, inputs):
    """Whether ``layer``'s config round-trips, or it is a composite itself."""
    try:
        from_config(type(layer), layer.get_config(), layer)
        return True
    except Exception:  # noqa: BLE001 - a config that does not round-trip
        return composite(layer, inputs) is not None


def _uncounted(layer):
    """Whether ``layer`` is one of Keras' own layers with weights that no rule describes
    (``MultiHeadAttention``, ``EinsumDense``): the cost model would count it as nothing."""
    return type(layer).__module__.startswith(_BUILTIN_MODULES) and bool(layer.weights) and not registry.has_rule(layer)


def _numpy_call(layer, x):
    """``layer`` on the numpy array ``x`` (inference mode), as a numpy array, in either Keras
    and on any Keras 3 backend."""
    if is_keras3_object(layer):
        ops = keras3().ops
        return np.asarray(ops.convert_to_numpy(layer(ops.convert_to_tensor(x), training=False)))
    return np.asarray(layer(tf.constant(x), training=False))
