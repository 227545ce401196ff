"""Training-step overhead benchmark, what is timed: the ResNet-20, its synthetic data, the
variants (plain, chipnet, tfmot and the ChipNet ablations) and the timers of one ``fit``.

The model, the compile and the timer take the Keras they are built with (tf_keras by
default; the Keras 3 mode, :mod:`benchmarks.overhead.keras3`, passes ``import keras``).

Part of ``benchmarks.overhead`` (method: benchmarks/README.md, section "Training-step overhead").
"""

import functools
import time
import types

import numpy as np

import chipnet_tf
from chipnet_tf.compat import keras, keras_of, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

MAIN_VARIANTS = ("plain", "chipnet", "tfmot")
BREAKDOWN_VARIANTS = ("chipnet_no_callback", "chipnet_no_mask_grad", "chipnet_no_gates")
DESCRIPTIONS = {
    "plain": "(a) plain tf_keras ResNet-20",
    "chipnet": "(b) chipnet_tf.prune_low_budget(flops, 0.5) + UpdatePruningStep",
    "tfmot": "(c) tfmot prune_low_magnitude(ConstantSparsity(0.5, 0)) + UpdatePruningStep",
    "chipnet_no_callback": "(b) without the UpdatePruningStep callback (schedule state set once)",
    "chipnet_no_mask_grad": "... and every ChannelGate multiplying by stop_gradient(mask) (no d loss / d mask)",
    "chipnet_no_gates": "... and every ChannelGate replaced by identity (controller still adds losses/metrics)",
}


# -- model and data -------------------------------------------------------------------
def resnet20(seed, num_classes=10, K=keras):
    """ResNet-20-size CIFAR model: 3 stages x 3 basic blocks (16/32/64), Conv-BN-ReLU, GAP, Dense.

    Down-sampling blocks use a 1x1-conv + BN projection shortcut. ~0.27M parameters. ``K``:
    the Keras to build it with (tf_keras or Keras 3, same layers and names).
    """
    K.utils.set_random_seed(seed)
    L = K.layers
    inputs = K.Input((32, 32, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            prefix = f"s{stage}b{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv1")(x)
            y = L.BatchNormalization(name=f"{prefix}_bn1")(y)
            y = L.ReLU(name=f"{prefix}_relu1")(y)
            y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
            y = L.BatchNormalization(name=f"{prefix}_bn2")(y)
            if stride != 1 or x.shape[-1] != filters:
                x = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{prefix}_proj")(x)
                x = L.BatchNormalization(name=f"{prefix}_proj_bn")(x)
            x = L.Add(name=f"{prefix}_add")([x, y])
            x = L.ReLU(name=f"{prefix}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, name="logits")(x)
    return K.Model(inputs, outputs, name="resnet20")


def synthetic_dataset(batch_size, seed, batches=8):
    rng = np.random.default_rng(seed)
    n = batch_size * batches
    x = rng.standard_normal((n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def compile_model(model):
    """SGD(0.01, momentum 0.9), cross-entropy on logits, accuracy; in the model's own Keras."""
    K = keras_of(model)
    model.compile(
        optimizer=K.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# -- variants -------------------------------------------------------------------------
def _chipnet_model(seed, K=keras):
    return chipnet_tf.prune_low_budget(resnet20(seed, K=K), budget=0.5, budget_type="flops")


def _start_schedule_without_callback(model):
    """What UpdatePruningStep.on_train_begin does, once, so the model trains without it."""
    cb = chipnet_tf.UpdatePruningStep()
    cb.set_model(model)
    # set_params is needed: on_train_begin reads self.params, which tf_keras's Callback only
    # has once set_params ran (fit calls it; a bare custom loop would get AttributeError).
    cb.set_params({"epochs": 1, "steps": None, "verbose": 0})
    cb.on_train_begin()


def _identity_gate_call(self, inputs):
    return inputs[0]


def _no_mask_grad_gate_call(self, inputs):
    return chipnet_tf.ChannelGate.call(self, [inputs[0], *[tf.stop_gradient(m) for m in inputs[1:]]])


def make_variant(name, seed, K=keras):
    """Returns ``(model, callbacks_factory)``; every variant starts from the same weights.
    ``K``: the Keras of plain and chipnet (tfmot and the ablations are tf_keras only)."""
    if name == "plain":
        return compile_model(resnet20(seed, K=K)), list
    if name == "chipnet":
        return compile_model(_chipnet_model(seed, K)), lambda: [chipnet_tf.UpdatePruningStep()]
    if K is not keras:
        raise ValueError(f"variant {name!r} is built with tf_keras only")
    if name == "tfmot":
        import tensorflow_model_optimization as tfmot

        # prune_low_magnitude wraps (shares) the given model's layers: give it its own copy.
        model = tfmot.sparsity.keras.prune_low_magnitude(
            resnet20(seed), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0)
        )
        return compile_model(model), lambda: [tfmot.sparsity.keras.UpdatePruningStep()]
    if name in BREAKDOWN_VARIANTS:
        model = _chipnet_model(seed)
        gate_call = {"chipnet_no_mask_grad": _no_mask_grad_gate_call, "chipnet_no_gates": _identity_gate_call}
        if name in gate_call:
            for layer in model.layers:
                if isinstance(layer, chipnet_tf.ChannelGate):
                    layer.call = types.MethodType(gate_call[name], layer)
        _start_schedule_without_callback(model)
        return compile_model(model), list
    raise ValueError(f"unknown variant {name!r}")


# -- timing one fit -------------------------------------------------------------------
@functools.cache
def step_timer_class(K):
    """The batch-end timer callback class of Keras ``K``.

    tf_keras hands it the step's logs as tensors (no host copy). Keras 3 dispatches batch-end
    callbacks synchronously once one overrides ``on_train_batch_end`` (this one does) and
    converts the logs to Python numbers first, so on Keras 3 every timed step ends with its
    results on the host, in the plain and the ChipNet model alike.
    """

    class StepTimer(K.callbacks.Callback):
        """Records wall and process CPU time at every batch end; must be the last user callback."""

        def __init__(self):
            super().__init__()
            self._supports_tf_logs = True  # tf_keras: do not force a numpy conversion of the logs
            self.wall = []
            self.cpu = []

        def on_train_batch_end(self, batch, logs=None):
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer


StepTimer = step_timer_class(keras)


def timed_fit(model, callbacks_factory, dataset, steps):
    """One ``fit`` of ``steps`` steps: (wall intervals, CPU intervals, fit wall time / steps)."""
    timer = step_timer_class(keras_of(model))()
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[*callbacks_factory(), timer])
    wall = time.perf_counter() - start
    if len(timer.wall) != steps:
        raise RuntimeError(f"expected {steps} batches, timed {len(timer.wall)}")
    return np.diff(timer.wall).tolist(), np.diff(timer.cpu).tolist(), wall / steps


def tracing_count(model):
    fn = getattr(model, "train_function", None)
    getter = getattr(fn, "experimental_get_tracing_count", None)
    return getter() if getter else None


def time_callback_hooks(model, iterations=2000):
    """Per-step cost of chipnet_tf.UpdatePruningStep's batch hooks, called directly."""
    cb = chipnet_tf.UpdatePruningStep()
    cb.set_model(model)
    cb.set_params({"steps": iterations, "epochs": 1, "verbose": 0})
    cb.on_train_begin()
    start = time.perf_counter()
    for i in range(iterations):
        cb.on_train_batch_begin(i)
        cb.on_train_batch_end(i)
    return (time.perf_counter() - start) / iterations
