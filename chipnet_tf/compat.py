"""The one place chipnet_tf imports TensorFlow's Keras.

chipnet_tf is built on tf_keras (Keras 2), the Keras that tfmot and keras-cv 0.9 use.
TensorFlow >= 2.16 ships Keras 3 as ``tf.keras`` unless ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is imported, so this module sets it and every other module imports
``keras`` and ``tf`` from here.
"""

import contextlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# absl's C++ log line: severity letter, date, time, thread, file:line].
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _min_log_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _is_noise(line, level):
    match = _NATIVE_LINE.match(line)
    if match:
        # No GPU is not an error on a CPU machine (tensorflow-cpu still tries cuInit).
        return _SEVERITY[match.group(1)] < level or "failed call to cuInit" in line
    if level >= 1:  # absl's banner before its own INFO lines, LiteRT's INFO lines, the quantizer's settings
        return line.startswith(("WARNING: All log messages before absl::InitializeLog()", "INFO: ", "fully_quantize: "))
    return False


@contextlib.contextmanager
def native_log_filter():
    """Holds back native (C++) log lines below ``TF_CPP_MIN_LOG_LEVEL`` written inside the block.

    TensorFlow 2.21's libraries log INFO lines at import (before ``absl::InitializeLog``)
    and LiteRT logs "INFO: Created ... delegate" whatever ``TF_CPP_MIN_LOG_LEVEL`` says.
    File descriptor 2 goes to a temporary file inside the block; afterwards every line at
    or above the level (and all Python output) is written to stderr, in order.
    ``TF_CPP_MIN_LOG_LEVEL=0`` shows everything as it is written: use it when a native
    crash inside the block (an abort before the lines are written back) needs its message.
    """
    level = _min_log_level()
    try:
        saved = os.dup(2) if level >= 1 else None
    except OSError:  # no usable fd 2 (some embedded interpreters): nothing to hold back
        saved = None
    if saved is None:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _is_noise(line, level))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


with native_log_filter():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

    tf.config.list_physical_devices()  # CUDA's probe logs here, inside the filter

__all__ = [
    "KERAS3_NOT_YET",
    "call_arguments",
    "keras",
    "keras3",
    "tf",
    "is_instance",
    "is_keras3_object",
    "keras_of",
    "native_log_filter",
    "non_tensorflow_backend",
    "register",
    "reject_keras3",
]


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


def is_instance(obj, classes):
    """``isinstance(obj, classes)`` for tf_keras ``classes``, and for a Keras 3 layer or
    ``keras.ops`` call whether one of its own classes has the name of one of ``classes``
    (Keras 3's ``Conv2DTranspose`` and ``keras.ops.multiply``'s ``Multiply`` are the
    namesakes of tf_keras' classes).

    Example:
        >>> is_instance(keras.layers.Multiply(), keras.layers.Multiply)
        True
    """
    if isinstance(obj, classes):
        return True
    names = {c.__name__ for c in (classes if isinstance(classes, tuple) else (classes,))}
    return is_keras3_object(obj) and any(k.__name__ in names for k in type(obj).__mro__)


def keras3():
    """The Keras 3 package (``import keras``), imported on first use only.

    chipnet_tf never imports Keras 3 at import time: it is imported when a Keras 3 model
    is handed to chipnet_tf (analysed, counted, pruned, stripped), at which point the
    user's process has already imported it.

    Example:
        >>> chipnet_tf.compat.keras3().__version__  # doctest: +SKIP
        '3.15.1'
    """
    import keras as keras3_module  # lazy: never at chipnet_tf import time

    return keras3_module


def keras_of(obj):
    """The Keras package ``obj`` (a model or layer) was built with: tf_keras or Keras 3.

    Example:
        >>> keras_of(keras.layers.Dense(2)) is keras
        True
    """
    return keras3() if is_keras3_object(obj) else keras


def non_tensorflow_backend(obj):
    """The Keras 3 backend ``obj`` runs on when it is a Keras 3 object and that backend is not
    TensorFlow (``"jax"``, ``"torch"``); None otherwise (what TFLite conversion needs).

    Example:
        >>> non_tensorflow_backend(keras.layers.Dense(2)) is None
        True
    """
    if not is_keras3_object(obj):
        return None
    backend = keras3().backend.backend()
    return None if backend == "tensorflow" else backend


KERAS3_NOT_YET = (
    "chipnet_tf prunes, trains, strips, exports and profiles the latency of Keras 3 models, and its command "
    "line reads their .keras files, but tfmot quantization, the single-layer wrapper and the tf_keras graph "
    "functions (chipnet_tf.analysis.check_model/flatten) need a tf_keras (Keras 2) model; this one received a "
    "Keras 3 object of type {type}. Build the model with `import tf_keras as keras` (pip install tf-keras) for "
    "those."
)


def reject_keras3(obj):
    """Raises the one-line TypeError of :data:`KERAS3_NOT_YET` when ``obj`` is a Keras 3
    layer or model (the tf_keras-only entry points call it: the tf_keras graph walk).

    Example:
        >>> import keras  # doctest: +SKIP
        >>> reject_keras3(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        TypeError: chipnet_tf prunes, trains, strips, exports and profiles the latency of Keras 3 models, ...
    """
    if is_keras3_object(obj):
        klass = type(obj)
        raise TypeError(KERAS3_NOT_YET.format(type=f"{klass.__module__}.{klass.__name__}"))


def call_arguments(node):
    """``(args, kwargs)`` of a node's call, tensors included: tf_keras' ``call_args`` and
    ``call_kwargs``, Keras 3's ``node.arguments``."""
    arguments = getattr(node, "arguments", None)
    if arguments is not None and not hasattr(node, "call_args"):
        return tuple(arguments.args), dict(arguments.kwargs)
    return node.call_args, node.call_kwargs
