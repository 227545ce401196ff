"""The one adapter to LiteRT (``ai_edge_litert``) and the TFLite converter.

:func:`keras_converter` converts a whole Keras model (export), :func:`convert_traced` a
function or model traced at batch 1 (the latency profiler's one-op models), and
:func:`interpreter` loads TFLite bytes or a file for both.
"""

import contextlib
import logging
import os
import shutil
import tempfile

import numpy as np

from chipnet_tf.compat import is_keras3_object, native_log_filter, tf

_log = logging.getLogger("chipnet_tf")


@contextlib.contextmanager
def keras_converter(model):
    """A TFLiteConverter for ``model``, equivalent to ``from_keras_model``'s.

    ``from_keras_model`` exports the Keras model as a SavedModel first, which traces every
    layer for Keras' own serialisation (32 s for DenseNet121). This exports only what TFLite
    needs: the model's variables and one ``serving_default`` function returning
    ``{output layer name: tensor}``. The TFLite file has the same signature, tensor names
    and output order, and converts 3-4x faster (DenseNet121: 9 s).
    """
    module = tf.Module()
    # A Keras 3 variable (TensorFlow backend) holds its tf.Variable in ``value``; that is what
    # the traced function reads and what the SavedModel must track.
    module.model_variables = [getattr(v, "value", v) if is_keras3_object(v) else v for v in model.variables]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    names = list(model.output_names)

    @tf.function(input_signature=specs)
    @tf.autograph.experimental.do_not_convert  # no Python control flow; autograph only warns here
    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(names, outputs))

    tmp = tempfile.mkdtemp(prefix="chipnet_tflite_")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve.get_concrete_function()})
        yield tf.lite.TFLiteConverter.from_saved_model(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_traced(fn_or_model, input_shapes, quantization=None, representative_dataset=None, int8_io=True):
    """TFLite bytes of a model traced at batch 1 (``input_shapes`` without the batch)."""
    specs = [tf.TensorSpec((1, *s), tf.float32) for s in input_shapes]
    if len(specs) == 1:
        fn = tf.function(lambda x: fn_or_model(x, training=False)).get_concrete_function(specs[0])
    else:
        fn = tf.function(lambda *xs: fn_or_model(list(xs), training=False)).get_concrete_function(*specs)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])  # a trackable object here costs 5x
    if quantization == "int8":
        rng = np.random.default_rng(0)
        data = representative_dataset

        def gen():
            if data is not None:
                for x in data[:100]:
                    yield [np.asarray(x, np.float32)[None]]
                return
            for _ in range(4):
                yield [rng.standard_normal((1, *s)).astype(np.float32) for s in input_shapes]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = conv.inference_output_type = tf.int8
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)  # "consider providing the trackable_obj": 5x slower with it
    try:
        with native_log_filter():
            return conv.convert()
    finally:
        absl_log.setLevel(level)


def interpreter(tflite, num_threads=1, fallback=True):
    """A LiteRT interpreter (``ai_edge_litert``) for TFLite bytes or a file path, tensors allocated.

    With ``fallback`` a model that XNNPACK refuses runs on the built-in kernels (verification);
    without it the error is raised (timing must not measure other kernels than it asks for).
    """
    try:  # lazy: ai-edge-litert is the optional "export" extra
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("Running TFLite models needs ai-edge-litert: pip install 'chipnet_tf[export]'.") from e
    if isinstance(tflite, (bytes, bytearray)):
        source = {"model_content": bytes(tflite)}
    else:
        path = os.fspath(tflite)
        if not os.path.isfile(path):
            raise ValueError(f"TFLite file not found: {path!r}")
        source = {"model_path": path}
    try:
        with native_log_filter():  # LiteRT's "INFO: Created ... XNNPACK delegate" line
            interp = Interpreter(**source, num_threads=num_threads)
            interp.allocate_tensors()
    except RuntimeError as e:
        if not fallback or "XNNPACK" not in str(e):
            raise
        # XNNPACK refuses some degenerate quantised tensors (e.g. a constant activation's
        # zero range); the built-in kernels run them, so verification still means something.
        _log.warning("LiteRT: XNNPACK could not prepare this model (%s); using the built-in kernels.", e)
        interp = Interpreter(
            **source,
            num_threads=num_threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interp.allocate_tensors()
    return interp
