"""The ChipNet paper's architectures, and a small vision transformer, as plain tf_keras
functional models, by name (:func:`get`, :func:`build`).

Every model is channels-last and built only from built-in Keras layers (no ``Lambda``, no
TF ops on symbolic tensors, no custom layers), so the graph analysis in ``chipnet_tf.analysis.groups``
can walk it and ``keras.models.clone_model`` can rebuild it. Layer names are deterministic
(``stage2_block1_conv2`` and so on), which keeps masks and reports stable across runs.
The convolutional networks are in :mod:`~chipnet_tf.architectures.cnn`, the ViT in
:mod:`~chipnet_tf.architectures.vit`.

Example:

    from chipnet_tf import architectures

    model = architectures.get("wrn26_12", num_classes=100)
"""

from chipnet_tf.architectures.cnn import mobilenet_v2_cifar, preresnet, resnet50_cifar, small_cnn, wrn
from chipnet_tf.architectures.vit import vit
from chipnet_tf.compat import keras

__all__ = ["NAMES", "build", "get", "mobilenet_v2_cifar", "preresnet", "resnet50_cifar", "small_cnn", "vit", "wrn"]


_BUILDERS = {
    "wrn": wrn,
    "wrn26_12": lambda **kwargs: wrn(26, 12, **kwargs),
    "preresnet": preresnet,
    "preresnet164": lambda **kwargs: preresnet(164, **kwargs),
    "resnet50_cifar": resnet50_cifar,
    "mobilenet_v2_cifar": mobilenet_v2_cifar,
    "small_cnn": small_cnn,
    "vit": vit,
}
NAMES = tuple(_BUILDERS)


def get(name, **kwargs):
    """Builds an architecture by name.

    Args:
      name: one of ``NAMES``. ``"wrn26_12"`` is ``wrn(26, 12)`` and ``"preresnet164"`` is
        ``preresnet(164)``.
      **kwargs: forwarded to the builder (e.g. ``num_classes``, ``input_shape``).

    Returns:
      A ``keras.Model``.

    Raises:
      ValueError: if ``name`` is not in ``NAMES``.

    Example:

        model = get("preresnet164", num_classes=100)
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown architecture. Expected one of {', '.join(NAMES)}. Received: name={name!r}")
    return _BUILDERS[name](**kwargs)


def build(name, **kwargs):
    """Builds a model by name: one of ``NAMES`` or a ``keras.applications`` function.

    The one builder behind the recipes' ``--model`` and ``chipnet-tf --model``. Every model
    it returns outputs logits: this module's architectures end in a plain ``Dense``, and a
    ``keras.applications`` model gets ``classifier_activation=None``, ``weights=None`` (no
    download) and ``classes`` from ``num_classes`` unless ``kwargs`` say otherwise.

    Args:
      name: an architecture name (``NAMES``) or a ``keras.applications`` name such as
        ``"MobileNetV2"``.
      **kwargs: forwarded to the builder (``num_classes``, ``input_shape``, ...).

    Returns:
      A ``keras.Model``.

    Raises:
      ValueError: an unknown name.
    """
    if name in _BUILDERS:
        return get(name, **kwargs)
    factory = getattr(keras.applications, name, None)
    if not isinstance(name, str) or name.startswith("_") or not callable(factory):
        raise ValueError(
            f"Unknown model {name!r}. Accepted: {', '.join(NAMES)} or a keras.applications name such as MobileNetV2."
        )
    if "num_classes" in kwargs:
        kwargs.setdefault("classes", kwargs.pop("num_classes"))
    kwargs.setdefault("weights", None)
    kwargs.setdefault("classifier_activation", None)
    return factory(**kwargs)
