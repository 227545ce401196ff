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

The call may take several inputs when they are its positional arguments (keras-hub's DeiT
``output(y, x)``) and return several outputs (a tuple, a dict of stage outputs as DINOv2's
encoder returns): the model's outputs are the call's, flattened. Trailing outputs that carry
no data (None, or an empty placeholder tensor: DeiT's blocks return ``(y, None)``, its encoder
empty tensors after its output) are left out of the model, and the walk goes into the call
only when nothing reads them.

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

import contextlib
import inspect
import weakref

import numpy as np

from chipnet_tf import registry
from chipnet_tf.compat import call_arguments, is_keras3_object, keras3, keras_of, tf

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
    ``num_patches``), or names a function that does not deserialize (keras-hub's CLIP
    ``Activation(quick_gelu)``), it is tried once more without those entries and with the
    layer's own functions; the first error is raised if that fails too."""
    k = keras_of(layer)
    config = dict(config)
    for key in config:
        value = getattr(layer, key, None)
        if isinstance(value, k.layers.Layer) and not value.weights:
            config[key] = value
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as error:
        functions = {key: getattr(layer, key) for key in config if inspect.isfunction(getattr(layer, key, None))}
        known = _constructor_arguments(cls)
        if not functions and (known is None or set(config) <= known):
            raise
        if known is not None:
            config = {key: value for key, value in config.items() if key in known}
        try:
            return cls.from_config({**config, **functions})
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


def composite(layer, inputs, node=None):
    """The functional model of a custom layer made of Keras layers, or None.

    Args:
        layer: the layer a node of a functional model calls (tf_keras or Keras 3).
        inputs: that call's input tensors, a flat list.
        node: the call's node; needed for a call with several inputs, which is traced
            only when they are its positional arguments, in order (``output(y, x)``).

    Returns:
        A functional model of ``layer``'s call on inputs of the same shapes, or None when
        ``layer`` is Keras' own (Keras 3's ``Identity`` is the model returning its
        input), has a registered rule, holds no layers, takes several
        inputs not all given by position, or an input of unknown size, or its trace is not
        the layer (see the module docstring). The model's outputs are the call's outputs,
        flattened; trailing outputs that carry no data (None, or a tensor with a dimension
        of 0: the empty placeholders of keras-hub's DeiT encoder) are left out.
    """
    if layer in _COMPOSITES:
        return _COMPOSITES[layer]
    k = keras_of(layer)
    model = None
    if is_keras3_object(layer) and isinstance(layer, k.layers.Identity) and len(inputs) == 1:
        model = _identity(k, tuple(inputs[0].shape))
    elif (
        inputs
        and (len(inputs) == 1 or _positional(node, inputs))
        and isinstance(layer, k.layers.Layer)
        and not isinstance(layer, k.Model)
        and not type(layer).__module__.startswith(_BUILTIN_MODULES)
        and not registry.has_rule(layer)
        and any(True for _ in layer._flatten_layers(include_self=False, recursive=False))
        and all(None not in tuple(t.shape)[1:] for t in inputs)
    ):
        model = _trace(layer, [tuple(t.shape) for t in inputs])
    _COMPOSITES[layer] = model
    return model


def _identity(k, shape):
    """Keras 3's ``Identity`` as the model of its call, its output its input: walked through,
    nothing is left to rebuild (an ``Identity`` built with a dtype policy object, as
    keras-hub's DINOv2 layers build it, has no config)."""
    x = k.Input(batch_shape=shape)
    return k.Model(x, x)


@contextlib.contextmanager
def _none_outputs_recorded(layer):
    """While ``layer``'s call is traced, a Keras 3 layer call may return None after its
    tensors (keras-hub's DeiT block returns ``(y, None)`` when no attention scores are asked
    for): its node records the tensors, which lead, as the walk and the traced model's
    calls need. Keras 3 otherwise refuses a node with a None output. tf_keras: nothing
    changes."""
    if not is_keras3_object(layer):
        yield
        return
    k = keras3()
    owner = k.src.layers.layer  # Layer.__call__ records its node with this module's Node
    original = owner.Node

    class TensorsFirst(original):
        def __init__(self, operation, call_args=None, call_kwargs=None, outputs=None):
            flat = k.tree.flatten(outputs) if outputs is not None else []
            while flat and flat[-1] is None:
                flat.pop()
            if outputs is not None and flat and None not in flat:
                outputs = flat
            super().__init__(operation, call_args, call_kwargs, outputs)

    owner.Node = TensorsFirst
    try:
        yield
    finally:
        owner.Node = original


def _positional(node, inputs):
    """Whether a call's tensors are exactly its positional arguments, in order."""
    if node is None:
        return False
    args, kwargs = call_arguments(node)
    tensors = [a for a in tf.nest.flatten(kwargs) if hasattr(a, "_keras_history")]
    return not tensors and len(args) == len(inputs) and all(a is t for a, t in zip(args, inputs))


def _data_outputs(outputs, flat):
    """The leading symbolic outputs of a traced call, or None when an output after them
    carries data (only None and empty placeholders may follow)."""
    flat_outputs = flat(outputs)
    symbolic = 0
    while symbolic < len(flat_outputs) and hasattr(flat_outputs[symbolic], "_keras_history"):
        symbolic += 1
    placeholders = flat_outputs[symbolic:]
    if not symbolic or any(t is not None and 0 not in tuple(getattr(t, "shape", (1,))) for t in placeholders):
        return None
    return flat_outputs[:symbolic]


def _trace(layer, shapes):
    k = keras_of(layer)
    flat = keras3().tree.flatten if is_keras3_object(layer) else tf.nest.flatten
    try:
        xs = [k.Input(batch_shape=shape, dtype=layer.dtype or "float32") for shape in shapes]
        with _none_outputs_recorded(layer):
            outputs = _data_outputs(layer.call(*xs), flat)
        if outputs is None:
            return None
        model = k.Model(
            xs[0] if len(xs) == 1 else xs, outputs[0] if len(outputs) == 1 else outputs, name=f"{layer.name}_traced"
        )
        if not all(_rebuildable(*call) and not _uncounted(call[0]) for call in _calls(model)):
            return None
        rng = np.random.default_rng(0)
        data = [rng.normal(size=(2, *shape[1:])).astype("float32") for shape in shapes]
        expected = _numpy_call(layer, data, flat)[: len(outputs)]
        got = _numpy_call(model, data, flat)
    except Exception:  # noqa: BLE001 - a layer that cannot be traced stays one (opaque) layer
        return None
    if len(got) != len(expected):
        return None
    for a, b in zip(got, expected):
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-5):
            return None
    return model


def _calls(model):
    """``(layer, its input tensors, node)`` of every layer call in ``model`` (``keras.ops``
    calls of a Keras 3 trace are re-run as they are, so they need no rebuilding)."""
    keras3_model = is_keras3_object(model)
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input:
                continue
            if keras3_model:
                if isinstance(node.operation, keras3().layers.Layer):
                    yield node.operation, list(node.input_tensors), node
            else:
                yield node.layer, tf.nest.flatten(node.keras_inputs), node


def _rebuildable(layer, inputs, node):
    """Whether ``layer``'s config round-trips, or it is a composite itself."""
    try:
        from_config(type(layer), layer.get_config(), layer)
        return True
    except Exception:  # noqa: BLE001 - a config that does not round-trip
        return composite(layer, inputs, node) is not None


def _uncounted(layer):
    """Whether ``layer`` is one of Keras' own layers with weights that no rule describes
    (``MultiHeadAttention``, ``EinsumDense``): the cost model would count it as nothing."""
    return type(layer).__module__.startswith(_BUILTIN_MODULES) and bool(layer.weights) and not registry.has_rule(layer)


def _numpy_call(layer, data, flat):
    """``layer`` on the numpy arrays ``data`` (one per input, inference mode): its flattened
    outputs as numpy arrays, in either Keras and on any Keras 3 backend."""
    if is_keras3_object(layer):
        ops = keras3().ops
        xs = [ops.convert_to_tensor(x) for x in data]
        convert = ops.convert_to_numpy
    else:
        xs = [tf.constant(x) for x in data]
        convert = np.asarray
    if isinstance(layer, keras_of(layer).Model):
        outputs = layer(xs[0] if len(xs) == 1 else xs, training=False)
    else:
        outputs = layer(*xs, training=False)
    return [np.asarray(convert(t)) for t in flat(outputs) if t is not None]
