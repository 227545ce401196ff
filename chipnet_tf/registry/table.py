"""The rule table: layer class -> :class:`~chipnet_tf.registry.vocabulary.LayerRule`,
found through the class hierarchy (a subclass uses its nearest registered base class's
rule; a class with none is opaque). The built-in rules are installed by
:mod:`chipnet_tf.registry` from the plain dicts of :mod:`chipnet_tf.registry.builtin` and
:mod:`chipnet_tf.registry.tfops`.

A Keras 3 class with no rule of its own (nor a registered base class) resolves by name: a
class of ``keras.src.layers`` uses the rule of its tf_keras namesake (Keras 3's ``Conv2D``
the rule of tf_keras' ``Conv2D``, including a rule a user registered for it), a class of
``keras.src.ops`` (a ``keras.ops`` call) the rule of :data:`chipnet_tf.registry.keras3ops.OP_RULES`.
Keras 3 is never imported for this.

A class of an optional third-party library (keras-hub's patch embeddings) is registered by
its qualified name, ``"<module>.<class>"`` (:func:`register_named`), so that library is
never imported for its rules: a class of that name (or a subclass of it) uses the rule. A
rule registered for the class object itself comes first.
"""

import contextlib

from chipnet_tf.registry.keras3ops import OP_RULES
from chipnet_tf.registry.vocabulary import Kind, LayerRule

_OPAQUE = LayerRule(Kind.OPAQUE)
_REGISTRY = {}
# "<module>.<qualified class name>" -> rule, for classes of optional libraries.
_NAMED = {}


def _check_class(layer_class, what):
    if not isinstance(layer_class, type):
        raise TypeError(f"{what} expects a layer class. Received: {layer_class!r}")


def register_layer(layer_class, rule):
    """Registers (or replaces) the :class:`LayerRule` for ``layer_class`` and subclasses.

    The rule replaces the previous rule of ``layer_class`` (kind, costs, flops). A
    ``surgery`` or ``constant`` the new rule leaves as None is kept from the rule the class
    had (its own or inherited), so ``register_surgery`` before ``register_layer`` and a
    subclass rule that only changes the kind both keep the slicing they had.

    Raises:
        TypeError: ``layer_class`` is not a class or ``rule`` not a LayerRule.
    """
    _check_class(layer_class, "register_layer")
    if not isinstance(rule, LayerRule):
        raise TypeError(f"register_layer expects a LayerRule. Received: {rule!r}")
    had = _lookup_type(layer_class)
    kept = {
        name: getattr(had, name)
        for name in ("surgery", "constant")
        if getattr(rule, name) is None and getattr(had, name) is not None
    }
    _REGISTRY[layer_class] = rule.replace(**kept) if kept else rule


def unregister_layer(layer_class):
    """Removes ``layer_class``'s own rule (it falls back to its base classes' rule, else
    opaque), or the rule registered for a qualified class name (:func:`register_named`).
    Returns the removed rule, or None when it had none."""
    if isinstance(layer_class, str):
        return _NAMED.pop(layer_class, None)
    _check_class(layer_class, "unregister_layer")
    return _REGISTRY.pop(layer_class, None)


@contextlib.contextmanager
def registered(layer_class, rule):
    """Registers ``rule`` for ``layer_class`` inside a ``with`` block only (tests, probes).

    Example:
        >>> with chipnet_tf.registry.registered(Scale, LayerRule("passthrough")):  # doctest: +SKIP
        ...     pruned = chipnet_tf.prune_low_budget(model, 0.5)
    """
    previous = _REGISTRY.get(layer_class)
    register_layer(layer_class, rule)
    try:
        yield rule
    finally:
        if previous is None:
            _REGISTRY.pop(layer_class, None)
        else:
            _REGISTRY[layer_class] = previous


def register_surgery(layer_class, surgery):
    """Sets how to slice channels out of ``layer_class`` (and its subclasses).

    Shorthand for registering ``layer_class``'s current rule (its own, inherited, or
    opaque) with ``surgery`` replaced; ``register_layer(cls, LayerRule(kind, surgery=...))``
    does both in one call. ``surgery(ctx)`` receives a :class:`SurgeryContext` and returns
    ``(config, weights)`` for the smaller layer of the same class.

    Example::

        def scale_surgery(ctx):
            return ctx.config, [take(ctx.weights[0], ctx.out_keep, 0)]

        chipnet_tf.register_surgery(Scale, scale_surgery)
    """
    _check_class(layer_class, "register_surgery")
    if not callable(surgery):
        raise TypeError(f"register_surgery expects a callable surgery(ctx). Received: {surgery!r}")
    register_layer(layer_class, _lookup_type(layer_class).replace(surgery=surgery))


def register_named(qualified_name, rule):
    """Registers ``rule`` for the class named ``qualified_name`` (``"<module>.<class>"``,
    e.g. ``"keras_hub.src.models.vit.vit_layers.ViTPatchingAndEmbedding"``) and its
    subclasses, without importing its module. A rule registered for the class object
    (:func:`register_layer`) takes precedence.

    Raises:
        TypeError: ``qualified_name`` is not a dotted name or ``rule`` not a LayerRule.
    """
    if not isinstance(qualified_name, str) or "." not in qualified_name:
        raise TypeError(f"register_named expects '<module>.<class>'. Received: {qualified_name!r}")
    if not isinstance(rule, LayerRule):
        raise TypeError(f"register_named expects a LayerRule. Received: {rule!r}")
    _NAMED[qualified_name] = rule


def qualified_name(layer_class):
    """``"<module>.<qualified class name>"`` of ``layer_class``."""
    return f"{getattr(layer_class, '__module__', '')}.{getattr(layer_class, '__qualname__', layer_class.__name__)}"


def _lookup_type(layer_class):
    for klass in layer_class.__mro__:
        if klass in _REGISTRY:
            return _REGISTRY[klass]
        if _NAMED and qualified_name(klass) in _NAMED:
            return _NAMED[qualified_name(klass)]
    return _keras3_namesake(layer_class)


_KERAS3_LAYERS, _KERAS3_OPS = "keras.src.layers.", "keras.src.ops."


def _keras3_namesake(layer_class):
    """The rule of a Keras 3 class by name (see the module docstring), else opaque."""
    for klass in layer_class.__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(_KERAS3_LAYERS):
            for registered_class, rule in _REGISTRY.items():
                if registered_class.__name__ == klass.__name__ and registered_class.__module__.startswith("tf_keras."):
                    return rule
        elif module.startswith(_KERAS3_OPS) and klass.__name__ in OP_RULES:
            return OP_RULES[klass.__name__]
    return _OPAQUE


def lookup(layer):
    """The rule for ``layer``: its class or nearest registered base class, else opaque."""
    return _lookup_type(type(layer))


def has_rule(layer):
    """Whether ``layer``'s class or a base class has a registered rule."""
    return _lookup_type(type(layer)) is not _OPAQUE


def install(rules):
    """Registers every ``{layer class or qualified class name: LayerRule}`` of ``rules``, in order."""
    for layer_class, rule in rules.items():
        if isinstance(layer_class, str):
            register_named(layer_class, rule)
        else:
            register_layer(layer_class, rule)
