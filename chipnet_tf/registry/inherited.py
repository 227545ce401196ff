"""Rules inherited by a user's subclass of a Keras layer: they hold only when it computes and
holds what its Keras base class does.

A subclass of ``Conv2D`` finds ``Conv2D``'s rule in the class hierarchy, but it may compute
something else: a weight-standardized conv (NFNets) normalizes its kernel over its input
channels, so removing input channels changes every kept output. The analysis checks an
inherited rule once per class, config and input shape: the layer's weights must have the
shapes its Keras base class would give them (a weight the rule does not know is neither
sliced nor counted), and the copy the rule's surgery strips, on random kept channels, must
compute the layer's kept outputs with the other input channels zeroed (what the wrapped
model computes). Otherwise the layer is opaque, with the reason.
"""

import inspect
import json

import numpy as np

from chipnet_tf.compat import tf
from chipnet_tf.registry.behaviour import probe_inputs
from chipnet_tf.registry.table import _lookup_type, lookup
from chipnet_tf.registry.vocabulary import Kind, LayerRule, SurgeryContext

_KERAS = ("tf_keras.", "keras.", "chipnet_tf.")
_CACHE = {}  # (class, config, input shape) -> None, or the reason the inherited rule does not hold
_OPAQUE = LayerRule(Kind.OPAQUE)
EXTRA_WEIGHTS = "its weights differ from its Keras base class's (a weight the rule neither slices nor counts)"
STRIPS_DIFFERENTLY = "its stripped copy differs on the kept channels (it computes more than its Keras base class)"


def keras_base(layer):
    """The Keras class whose rule a user's subclass inherits, or None (a Keras layer, or a
    class with a rule of its own)."""
    cls = type(layer)
    if cls.__module__.startswith(_KERAS) or lookup(layer) is _OPAQUE:
        return None
    for klass in cls.__mro__[1:]:
        if klass.__module__.startswith(_KERAS) and _lookup_type(klass) is lookup(layer):
            return klass
    return None


def checked_rule(fnode, rule):
    """``rule``, or an opaque rule when the subclass ``fnode.layer`` does not follow it."""
    return rule if reason(fnode, rule) is None else _OPAQUE


def reason(fnode, rule):
    """None when the rule a layer inherits holds for it (or it inherits none), else why not."""
    layer = fnode.layer
    base = keras_base(layer)
    if base is None or not layer.built or len(fnode.in_keys) != 1 or not fnode.in_shapes:
        return None
    shape = tuple(fnode.in_shapes[0])
    kind = rule.kind(layer, len(shape))
    if kind == Kind.OPAQUE or None in shape[1:]:
        return None
    key = (type(layer), _config_key(layer), shape[1:])
    if key not in _CACHE:
        _CACHE[key] = _check(layer, base, rule, kind, tuple(int(d) for d in shape[1:]))
    return _CACHE[key]


def _config_key(layer):
    try:
        return json.dumps({k: v for k, v in layer.get_config().items() if k != "name"}, sort_keys=True, default=repr)
    except (NotImplementedError, TypeError):
        return f"id{id(layer)}"


def _check(layer, base, rule, kind, shape):
    if _weight_shapes(layer) != _base_weight_shapes(layer, base, shape):
        return EXTRA_WEIGHTS
    if rule.surgery is None:
        return None
    rng = np.random.default_rng(0)
    x = probe_inputs(shape, rng)
    channels = shape[-1]
    in_keep = np.sort(rng.permutation(channels)[: max(1, channels // 2)])
    out_channels = int(np.asarray(layer(tf.constant(x[:1]), training=False)).shape[-1])
    out_keep = np.sort(rng.permutation(out_channels)[: max(1, out_channels // 2)]) if kind == Kind.PRODUCER else in_keep
    zeroed = np.zeros_like(x)
    zeroed[..., in_keep] = x[..., in_keep]
    expected = np.asarray(layer(tf.constant(zeroed), training=False))[..., out_keep]
    try:
        ctx = SurgeryContext(layer, dict(layer.get_config()), layer.get_weights(), [in_keep], out_keep)
        ctx.in_channels = [channels]
        config, weights = rule.surgery(ctx)
        small = type(layer).from_config(config)
        small(tf.constant(x[:1, ..., in_keep]))
        small.set_weights(weights)
        got = np.asarray(small(tf.constant(x[..., in_keep]), training=False))
    except Exception:  # noqa: BLE001 - a surgery that does not fit the subclass
        return STRIPS_DIFFERENTLY
    ok = got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4 * (1.0 + np.abs(expected).max())
    return None if ok else STRIPS_DIFFERENTLY


def _weight_shapes(layer):
    return sorted(tuple(int(d) for d in w.shape) for w in layer.weights)


def _base_weight_shapes(layer, base, shape):
    """The weight shapes of ``base`` built from the arguments of ``layer``'s config it takes."""
    params = inspect.signature(base.__init__).parameters
    config = layer.get_config()
    kwargs = {k: v for k, v in config.items() if k in params or k in ("name", "trainable", "dtype")}
    try:
        copy = base.from_config(kwargs)
        copy.build((None, *shape))
    except Exception:  # noqa: BLE001 - the base class cannot be built from these arguments
        return None
    return _weight_shapes(copy)
