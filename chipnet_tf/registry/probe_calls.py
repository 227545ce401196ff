"""Function layers for the numerical probe: ``Activation`` (any function, a user-registered
hard-swish included), ``Lambda`` and TF-op calls (``tf.image.resize(x, size)``, ...) that
no exact rule sees through.

Such a layer is one function of its input and of the call's other arguments, so the
probe runs the call itself on numpy inputs: the channel tensor (the call's first tensor)
is replaced by the probe's input and every other tensor argument by its static value
(``tf.shape(x)[1:-1]`` is known when the model is built: tf_keras keeps it as the Keras
tensor's inferred value). A call with another tensor argument whose value is not static
is not probed. :mod:`chipnet_tf.registry.probe` decides from the outputs.
"""

import json

import numpy as np

from chipnet_tf.compat import call_arguments, is_keras3_object, keras3, tf

_FUNCTION_LAYERS = ("Activation", "Lambda", "TFOpLambda", "SlicingOpLambda")
_KERAS_MODULES = ("tf_keras.", "keras.")


def is_function_layer(layer):
    """An Activation, Lambda or TF-op layer of either Keras (not a subclass of a user's)."""
    cls = type(layer)
    return cls.__name__ in _FUNCTION_LAYERS and cls.__module__.startswith(_KERAS_MODULES)


def describe(layer):
    """``"Activation(hard_sigmoid_torch)"``, ``"TFOpLambda(image.resize)"``, ``"Lambda"``."""
    name = type(layer).__name__
    if hasattr(layer, "symbol"):
        return f"{name}({layer.symbol})"
    if name == "Activation":
        fn = layer.activation
        return f"{name}({fn if isinstance(fn, str) else getattr(fn, '__name__', repr(fn))})"
    return name


def _is_tensor(value):
    return hasattr(value, "_keras_history") or (is_keras3_object(value) and hasattr(value, "shape"))


def _static_value(kt):
    """The value of a shape-like Keras tensor known when the model was built, or None."""
    value = getattr(kt, "_inferred_value", None)
    if value is None or any(v is None for v in np.ravel(np.asarray(value, dtype=object))):
        return None
    return np.asarray(value, dtype=kt.dtype.as_numpy_dtype if hasattr(kt.dtype, "as_numpy_dtype") else None)


def numpy_function(layer, node):
    """``(fn, key)``: ``fn(x)`` runs the call of ``layer`` at ``node`` on ``x`` (a numpy array
    or a tensor; inference mode) and returns a tensor; ``key`` names what it computes (None when
    it cannot be named, e.g. a Lambda's closure). None when the call cannot be run alone."""
    if not hasattr(layer, "symbol"):
        name = describe(layer)
        key = None if name == "Lambda" else (name, json.dumps(_config(layer), sort_keys=True, default=repr))
        return (lambda x: call_layer(layer, x, as_numpy=False)), key
    args, kwargs = call_arguments(node)
    tensors = [v for v in tf.nest.flatten((args, kwargs)) if _is_tensor(v)]
    if not tensors:
        return None
    first, rest = tensors[0], tensors[1:]
    values = {id(t): _static_value(t) for t in rest}
    if any(v is None for v in values.values()):
        return None

    def fn(x):
        def sub(v):
            if v is first:
                return tf.convert_to_tensor(x)
            return tf.constant(values[id(v)]) if id(v) in values else v

        return layer.function(*tf.nest.map_structure(sub, args), **tf.nest.map_structure(sub, kwargs))

    def name(v):
        if v is first:
            return "x"
        return values[id(v)].tolist() if id(v) in values else v

    key = (layer.symbol, json.dumps(tf.nest.map_structure(name, (list(args), kwargs)), sort_keys=True, default=repr))
    return fn, key


def _config(layer):
    try:
        return {k: v for k, v in layer.get_config().items() if k != "name"}
    except (NotImplementedError, TypeError):
        return {"id": id(layer)}


def call_layer(layer, x, as_numpy=True):
    """``layer`` on ``x`` (inference mode), as a numpy array (or as the layer's tensor)."""
    if is_keras3_object(layer):  # any Keras 3 backend
        ops = keras3().ops
        out = layer(ops.convert_to_tensor(x), training=False)
        return np.asarray(ops.convert_to_numpy(out)) if as_numpy else out
    out = layer(tf.convert_to_tensor(x), training=False)
    return np.asarray(out) if as_numpy else out
