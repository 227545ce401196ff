"""The models the LiteRT latency benchmark times and how each becomes a LiteRT interpreter.

The dense models (random weights, randomised BatchNormalization statistics), their L1-norm
channel scores, tfmot magnitude pruning, TFLite conversion and the 1-thread interpreters.
Part of ``benchmarks.latency`` (method: benchmarks/README.md, section "LiteRT latency").
"""

import numpy as np

import chipnet_tf
from benchmarks import common
from chipnet_tf import architectures
from chipnet_tf.compat import keras, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

INPUT_SHAPE = (32, 32, 3)


def build_dense(name, args):
    """The dense model with random weights and randomised BatchNormalization statistics."""
    keras.utils.set_random_seed(args.seed)
    if name == "resnet50":
        model = architectures.resnet50_cifar(width=args.resnet_width)
    elif name == "mobilenet_v2":
        model = architectures.mobilenet_v2_cifar(alpha=args.mobilenet_alpha)
    elif name == "mobilenet_v3_small":  # hard-swish/hard-sigmoid as TF-op layers, pruned through
        model = keras.applications.MobileNetV3Small(
            input_shape=INPUT_SHAPE, weights=None, classes=10, classifier_activation=None
        )
    else:
        raise ValueError(f"unknown model {name!r}")
    return randomise_batch_norm(model, args.seed)


def randomise_batch_norm(model, seed):
    """Random BatchNormalization scales and statistics (weights=None models are timed as if trained)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    return model


def model_description(name, args):
    if name == "resnet50":
        return f"chipnet_tf.architectures.resnet50_cifar(width={args.resnet_width:g}), input {INPUT_SHAPE}, 10 classes"
    if name == "mobilenet_v3_small":
        return f"keras.applications.MobileNetV3Small(weights=None), input {INPUT_SHAPE}, 10 classes"
    return (
        f"chipnet_tf.architectures.mobilenet_v2_cifar(alpha={args.mobilenet_alpha:g}), input {INPUT_SHAPE}, 10 classes"
    )


def _channel_l1(layer, size):
    """Per-output-channel L1 norm of a layer's kernel, or None when it has no matching kernel."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = np.abs(layer.depthwise_kernel.numpy())  # (kh, kw, channels, multiplier)
        norms = k.sum(axis=(0, 1, 3)) if k.shape[3] == 1 else None
    elif getattr(layer, "kernel", None) is not None:
        k = np.abs(layer.kernel.numpy())
        norms = k.reshape(-1, k.shape[-1]).sum(axis=0)
    else:
        norms = None
    return norms if norms is not None and norms.shape[0] == size else None


def channel_scores(dense, analysis, seed):
    """``{group: scores}``: mean over the group's writers of their mean-normalised L1 norms.

    A mean, not a sum: every group's scores are then on one scale (about 1), as ChipNet's
    per-channel gate logits are. Summing over writers made groups with many writers (the
    residual stages: 4-7 convs each) score 4-7x higher, so at small budgets the selection
    kept every residual channel and cut the bottlenecks to 1-3 channels, leaving full-width
    projection shortcuts with 82% of the MACs - a mask no trained ChipNet model produces.
    """
    rng = np.random.default_rng(seed)
    scores, fallback = {}, []
    for g in analysis.groups:
        total = np.zeros(g.size)
        found = 0
        for writer in g.writers:
            try:
                norms = _channel_l1(dense.get_layer(writer), g.size)
            except ValueError:
                norms = None
            if norms is not None and norms.mean() > 0:
                total += norms / norms.mean()
                found += 1
        if not found:
            total = rng.random(g.size)
            fallback.append(g.name)
        scores[g.name] = total / max(found, 1)
    return scores, fallback


def prunable_kernel_params(model):
    """Parameters tfmot's prune_low_magnitude prunes here: Conv2D and Dense kernels."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not isinstance(
            layer, keras.layers.DepthwiseConv2D
        ):
            total += int(np.prod(layer.kernel.shape))
    return total


def nonzero_params(model):
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def tfmot_stripped(dense, sparsity):
    """tfmot magnitude pruning at constant ``sparsity`` on a copy of ``dense``, masks applied, stripped."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)

    def wrap(layer):  # layers tfmot does not know (Rescaling, TF-op layers) are kept as they are
        if not PruneRegistry.supports(layer):
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    clone = keras.models.clone_model(dense)
    clone.set_weights(dense.get_weights())
    pruned = keras.models.clone_model(clone, clone_function=wrap)
    # What UpdatePruningStep + one training step do, without training: step 0, mask update
    # (ConstantSparsity prunes at begin_step), then weights *= mask.
    for layer in pruning_wrapper.collect_prunable_layers(pruned):
        layer.pruning_step.assign(0)
        layer.pruning_obj.conditional_mask_update()
        layer.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(pruned)


def convert(model, converter, sparse=False, input_shape=INPUT_SHAPE):
    """Float32 TFLite bytes of ``model`` (``concrete``: traced at batch 1 x ``input_shape``)."""
    if converter == "keras" and not sparse:
        return chipnet_tf.export.to_tflite(model)
    if converter == "keras":
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((1, *input_shape), tf.float32)
        )
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if sparse:
        conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    with common.quiet("absl"):
        return conv.convert()


def make_interpreter(data, x, resolver=None):
    """A 1-thread LiteRT interpreter for ``data`` with ``x`` (batch 1) set as its input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if resolver is None else resolver
    interp = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    if tuple(inp["shape"]) != x.shape:
        raise RuntimeError(f"unexpected TFLite input shape {inp['shape']}")
    interp.set_tensor(inp["index"], x)
    return interp


def interpreter_info(interp):
    ops = interp._get_ops_details()
    names = [o["op_name"] for o in ops]
    sparse_tensors = sum(1 for t in interp.get_tensor_details() if t.get("sparsity_parameters"))
    return {
        "delegate_nodes": names.count("DELEGATE"),
        "op_counts": {n: names.count(n) for n in sorted(set(names))},
        "sparse_weight_tensors": sparse_tensors,
    }


def tflite_output(interp):
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])
