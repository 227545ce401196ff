"""The one place chipnet_tf imports TensorFlow's Keras.

chipnet_tf is built on tf_keras (Keras 2), the Keras that tfmot and keras-cv 0.9 use.
TensorFlow >= 2.16 ships Keras 3 as ``tf.keras`` unless ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is imported, so this module sets it and every other module imports
``keras`` and ``tf`` from here.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf", "is_keras3_object", "register"]


def register(cls):
    """Registers ``cls`` as a Keras serialisable under the ``chipnet_tf`` package."""
    return keras.utils.register_keras_serializable(package="chipnet_tf")(cls)


def is_keras3_object(obj) -> bool:
    """True when ``obj`` is a Keras 3 layer/model (not a tf_keras one)."""
    for klass in type(obj).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module == "keras" or (module.startswith("keras.") and not module.startswith("keras_cv")):
            return True
    return False
