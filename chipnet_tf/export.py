"""TFLite export of stripped models, and verification in the LiteRT interpreter.

Example::

    small = chipnet_tf.strip_pruning(pruned)
    data = chipnet_tf.export.to_tflite(small, "model.tflite")                  # float32
    data = chipnet_tf.export.to_tflite(small, "model_int8.tflite", quantization="int8",
                                        representative_dataset=x_train[:200])
    print(chipnet_tf.export.verify_tflite(data, small, x_test[:100]))
"""

import dataclasses
import logging
import os

import numpy as np

from chipnet_tf import litert
from chipnet_tf.analysis.groups import check_any_model
from chipnet_tf.compat import is_keras3_object, keras, keras3, native_log_filter, non_tensorflow_backend, tf
from chipnet_tf.io import atomic_write
from chipnet_tf.search.layers.controller import controllers
from chipnet_tf.surgery.strip import strip_pruning

QUANTIZATIONS = (None, "dynamic", "float16", "int8")
IO_TYPES = ("float32", "int8")

# Default tolerances of ``to_tflite(..., verify_samples=...)`` per quantization: max abs
# output difference for float modes (times max(1, largest |output|)), top-1 agreement for the
# integer modes. float32: converting to TFLite changed outputs by 1.9e-7 to 2.5e-6 of the
# largest |output| (2 to 20 float32 epsilons, the deepest nets highest) on the models measured
# (digits CNNs, PreResNet-20, WRN-8-2, CIFAR ResNet-50 and MobileNetV2 variants,
# keras MobileNetV2; inputs in range and 100x out of range). A softmax output hides the
# logits' scale, though: logits in the thousands move probabilities by ~1.6e-4 (a 5.2e-4
# difference measured there agreed on every prediction). 1e-3 (about float16's resolution) passes those and
# still fails a model that computes something else (a wrong channel moves outputs by 1e-2 or
# more). docs/design/export-tolerances.md has the table.
DEFAULT_TOLERANCE = {None: 1e-3, "float16": 1e-2, "dynamic": 0.95, "int8": 0.95}

_log = logging.getLogger("chipnet_tf")


@dataclasses.dataclass
class VerifyReport:
    """How a TFLite model's outputs compare with the Keras model's on the same samples."""

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    max_abs_reference: float = None  # the largest |Keras output|: the scale float errors grow with

    def __str__(self):
        return (
            f"TFLite vs Keras on {self.samples} samples: max |diff| {self.max_abs_diff:.3g}, "
            f"mean |diff| {self.mean_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.2%}"
        )


def _check_model(model):
    check_any_model(model)
    backend = non_tensorflow_backend(model)
    if backend:
        raise ValueError(
            f"TFLite conversion traces the model with TensorFlow, and Keras 3 runs {model.name!r} on the "
            f"{backend} backend. Save it (model.save('small.keras')) and convert it in a "
            "process started with KERAS_BACKEND=tensorflow: "
            "chipnet_tf.export.to_tflite(keras.saving.load_model('small.keras'))."
        )
    if len(model.inputs) != 1:
        raise ValueError(f"to_tflite supports single-input models; {model.name!r} has {len(model.inputs)} inputs.")


def _representative(data, model):
    """A zero-argument generator function yielding ``[x]`` batches of one float32 sample."""
    if callable(data) and not isinstance(data, (np.ndarray, tf.data.Dataset)):
        return data
    if isinstance(data, tf.data.Dataset):
        arrays = []
        for item in data.take(1000):
            x = item[0] if isinstance(item, (tuple, list)) else item
            arrays.append(np.asarray(x))
        data = np.concatenate([a if a.ndim == len(model.inputs[0].shape) else a[None] for a in arrays])
    data = np.asarray(data, dtype=np.float32)
    want = tuple(model.inputs[0].shape[1:])
    if data.ndim != len(want) + 1 or tuple(data.shape[1:]) != tuple(d for d in want):
        raise ValueError(
            f"representative_dataset must be samples shaped (N, {', '.join(str(d) for d in want)}) like the "
            f"model input. Received shape {data.shape}."
        )

    def gen():
        for i in range(len(data)):
            yield [data[i : i + 1]]

    return gen


def to_tflite(
    model,
    path=None,
    quantization=None,
    representative_dataset=None,
    io_type="float32",
    verify_samples=None,
    tolerance=None,
):
    """Converts a (stripped) Keras model to a TFLite flatbuffer, optionally written to ``path``.

    Args:
        model: a plain tf_keras model, typically from :func:`chipnet_tf.strip_pruning`. A
            model wrapped by ``prune_low_budget`` is stripped first with its hard masks
            (logged).
        path: when given, the file is written atomically (never half-written).
        quantization: ``None`` (float32), ``"dynamic"`` (int8 weights, float activations),
            ``"float16"`` (float16 weights) or ``"int8"`` (full integer; needs
            ``representative_dataset``).
        representative_dataset: calibration samples for ``"int8"``: an array ``(N, ...)``,
            a ``tf.data.Dataset`` of samples or ``(x, y)`` batches, or a generator function
            yielding ``[x]`` lists.
        io_type: ``"float32"`` or ``"int8"`` inputs/outputs for ``"int8"`` models.
        verify_samples: when given (an array of inputs), the converted model is run in the
            LiteRT interpreter and compared with Keras; above ``tolerance`` it raises.
        tolerance: max abs difference (float32/float16; multiplied by the largest |Keras
            output| when that exceeds 1, since float rounding grows with magnitude) or minimum
            top-1 agreement (dynamic/int8); defaults in ``DEFAULT_TOLERANCE``.

    Returns:
        The TFLite model as bytes.

    Raises:
        ValueError: unknown quantization/io_type, int8 without data, a failed verification.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}. Accepted: {', '.join(map(repr, QUANTIZATIONS))}.")
    if io_type not in IO_TYPES:
        raise ValueError(f"Unknown io_type {io_type!r}. Accepted: {', '.join(map(repr, IO_TYPES))}.")
    if io_type == "int8" and quantization != "int8":
        raise ValueError(f'io_type="int8" needs quantization="int8". Received quantization={quantization!r}.')
    if quantization == "int8" and representative_dataset is None:
        raise ValueError('quantization="int8" needs a representative_dataset (calibration samples).')
    _check_model(model)
    if controllers(model):
        _log.warning("to_tflite: %r is a wrapped ChipNet model; stripping it with its hard masks first.", model.name)
        model = strip_pruning(model)
    with litert.keras_converter(model) as converter:
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = _representative(representative_dataset, model)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io_type == "int8":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        with native_log_filter():  # the converter's INFO/WARNING lines (and its "fully_quantize:" line)
            data = converter.convert()
    if verify_samples is not None:
        report = verify_tflite(data, model, verify_samples)
        tol = DEFAULT_TOLERANCE[quantization] if tolerance is None else float(tolerance)
        if quantization in (None, "float16"):
            # Float rounding grows with the outputs' magnitude: the tolerance is absolute for
            # outputs up to 1 and relative to the largest |output| above that.
            limit = tol * max(1.0, report.max_abs_reference)
            if not report.max_abs_diff <= limit:
                raise ValueError(
                    f"TFLite verification failed: max |diff| {report.max_abs_diff:.3g} > {limit:.3g} "
                    f"({tol:g} x max(1, largest |Keras output| {report.max_abs_reference:.3g})), top-1 agreement "
                    f"{report.top1_agreement:.2%}. If that is float rounding, raise the tolerance: "
                    "tolerance=... (chipnet-tf export --tolerance=...)."
                )
        elif not report.top1_agreement >= tol:
            raise ValueError(
                f"TFLite verification failed: top-1 agreement {report.top1_agreement:.2%} < {tol:.2%}. "
                "To accept it: tolerance=... (chipnet-tf export --tolerance=...)."
            )
        _log.info("%s", report)
    if path is not None:
        atomic_write(os.fspath(path), lambda f: f.write(data))
    return data


def interpreter(tflite, num_threads=1):
    """A LiteRT interpreter for TFLite bytes or a file path (:func:`chipnet_tf.litert.interpreter`)."""
    return litert.interpreter(tflite, num_threads)


def run_tflite(tflite, samples, num_threads=1):
    """Runs ``samples`` (N, ...) one by one through a TFLite model; returns float32 outputs."""
    interp = tflite if hasattr(tflite, "invoke") else litert.interpreter(tflite, num_threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for x in np.asarray(samples, dtype=np.float32):
        x = x[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[0])
    return np.stack(results).astype(np.float32)


def verify_tflite(tflite, keras_model, samples):
    """Compares a TFLite model (bytes or path) with ``keras_model`` on ``samples``.

    Returns:
        A :class:`VerifyReport` with max/mean absolute output differences and the top-1
        agreement (fraction of samples whose argmax matches).
    """
    if not isinstance(keras_model, keras3().Model if is_keras3_object(keras_model) else keras.Model):
        raise TypeError(f"verify_tflite expects a Keras Model. Received: {type(keras_model).__name__}")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim < 2 or len(samples) == 0:
        raise ValueError(f"samples must be a non-empty batch (N, ...). Received shape {samples.shape}.")
    lite = run_tflite(tflite, samples)
    ref = keras_model.predict(samples, verbose=0).astype(np.float32)
    diff = np.abs(lite.reshape(ref.shape) - ref)
    agree = float(np.mean(lite.reshape(len(ref), -1).argmax(-1) == ref.reshape(len(ref), -1).argmax(-1)))
    return VerifyReport(len(samples), float(diff.max()), float(diff.mean()), agree, float(np.abs(ref).max()))


def quantize_model(model, **kwargs):
    """``tfmot.quantization.keras.quantize_model`` for stripped models, with clear errors.

    Quantization-aware training works on the *stripped* model (plain Keras layers). tfmot
    rejects a wrapped ChipNet model with a generic "layer is not supported" error; this
    function says what to do instead.

    Example:
        >>> qat = chipnet_tf.export.quantize_model(chipnet_tf.strip_pruning(pruned))  # doctest: +SKIP
        >>> qat.compile(...); qat.fit(...)  # doctest: +SKIP
        >>> chipnet_tf.export.to_tflite(qat, "qat.tflite", quantization="dynamic")  # doctest: +SKIP
    """
    # Lazy: importing tfmot costs seconds and only this function needs it.
    import tensorflow_model_optimization as tfmot

    if is_keras3_object(model):
        raise TypeError(
            f"tfmot quantizes tf_keras models only; {getattr(model, 'name', model)!r} is a Keras 3 model. Use "
            "post-training quantization instead: to_tflite(model, quantization='int8', representative_dataset=...)."
        )
    _check_model(model)
    if controllers(model):
        raise ValueError(
            f"{model.name!r} is a wrapped ChipNet model (gates and a controller layer), which tfmot cannot "
            "quantize. Strip it first: quantize_model(chipnet_tf.strip_pruning(model))."
        )
    multiply = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Multiply)]
    if multiply:
        raise ValueError(
            f"tfmot's quantize_model does not support Multiply layers (squeeze-excite blocks): {multiply}. "
            "Use post-training quantization instead: to_tflite(model, quantization='int8', ...)."
        )
    return tfmot.quantization.keras.quantize_model(model, **kwargs)
