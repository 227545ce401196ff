"""The chipnet_tf layers for Keras 3 models: the same logic as the tf_keras layers, with the
math in ``keras.ops``.

Keras 3 is imported only when a Keras 3 model is pruned or loaded, never when chipnet_tf is
imported: :func:`keras3_layers` builds the classes on first use and registers them as Keras 3
serialisables under the ``chipnet_tf`` package, so a pruned Keras 3 model saved as ``.keras``
loads with ``keras.saving.load_model`` once chipnet_tf is imported and a Keras 3 model has
been pruned or :func:`keras3_layers` called.

The controller reports ``budget`` and ``crispness`` through two ``keras.metrics.Mean`` it
owns (Keras 3 has no ``Layer.add_metric``); ``fit`` logs them under those names, as with
tf_keras. On JAX, where a layer's metric cannot be updated inside the stateless train step,
:class:`chipnet_tf.UpdatePruningStep` logs their values at each epoch's end instead, and
writes the schedule's variables back into the model (``jax_state_sync``) before it sets them.

Example:
    >>> import keras
    >>> layers = keras3_layers()
    >>> gate = layers.ChannelGate(segments=[["conv1", 2], [None, 1]])
    >>> keras.ops.convert_to_numpy(gate([keras.ops.ones((1, 3)), keras.ops.array([0.0, 1.0])])).tolist()
    [[0.0, 1.0, 1.0]]
"""

import functools
import types

from chipnet_tf.compat import keras3, tf
from chipnet_tf.search.layers.channel_gate import ChannelGateLogic
from chipnet_tf.search.layers.controller import _NO_CALLBACK, ControllerLogic
from chipnet_tf.search.layers.gated_attention import GatedAttentionLogic
from chipnet_tf.search.layers.gated_batch_norm import GatedBatchNormLogic
from chipnet_tf.search.layers.gated_layer_norm import GatedLayerNormLogic

NAMES = (
    "ChipNetController",
    "ChannelGate",
    "GatedBatchNormalization",
    "GatedLayerNormalization",
    "GatedMultiHeadAttention",
)


@functools.cache
def keras3_layers():
    """The Keras 3 classes of chipnet_tf's layers (built and registered once).

    Returns:
        A namespace with ``ChipNetController``, ``ChannelGate``,
        ``GatedBatchNormalization``, ``GatedLayerNormalization`` and
        ``GatedMultiHeadAttention``.
    """
    k3 = keras3()
    register = k3.saving.register_keras_serializable(package="chipnet_tf")

    class ChipNetController(ControllerLogic, k3.layers.Layer):
        __doc__ = "Keras 3 twin of :class:`chipnet_tf.ChipNetController`."
        _ops = k3.ops
        _keras = k3
        _int_dtype = "int32"  # JAX has no int64 unless x64 is enabled
        _to_numpy = staticmethod(k3.ops.convert_to_numpy)  # torch: also detached from autograd

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # On JAX a layer's metric cannot be updated inside the stateless train step:
            # UpdatePruningStep logs the values at each epoch's end there instead.
            self._metrics_in_step = k3.backend.backend() == "tensorflow"
            if self._metrics_in_step:
                self.budget_tracker = k3.metrics.Mean(name="budget")
                self.crispness_tracker = k3.metrics.Mean(name="crispness")

        def _check_started(self):
            if k3.backend.backend() == "tensorflow":
                tf.debugging.assert_non_negative(self.pruning_step.value, message=_NO_CALLBACK)

        def _report(self, budget, crispness):
            if self._metrics_in_step:
                self.budget_tracker.update_state(budget)
                self.crispness_tracker.update_state(crispness)

        def compute_output_shape(self, input_shape):
            return [(s,) for s in self.sizes]

    class ChannelGate(ChannelGateLogic, k3.layers.Layer):
        __doc__ = "Keras 3 twin of :class:`chipnet_tf.ChannelGate`."
        _ops = k3.ops

        def __init__(self, segments, repeat=1, **kwargs):
            super().__init__(segments, repeat, autocast=False, **kwargs)

    class GatedBatchNormalization(GatedBatchNormLogic, k3.layers.BatchNormalization):
        __doc__ = "Keras 3 twin of :class:`chipnet_tf.GatedBatchNormalization`."
        _ops = k3.ops

    class GatedLayerNormalization(GatedLayerNormLogic, k3.layers.LayerNormalization):
        __doc__ = "Keras 3 twin of :class:`chipnet_tf.GatedLayerNormalization`."
        _ops = k3.ops

    class GatedMultiHeadAttention(GatedAttentionLogic, k3.layers.MultiHeadAttention):
        __doc__ = "Keras 3 twin of :class:`chipnet_tf.search.layers.GatedMultiHeadAttention`."
        _ops = k3.ops

        def compute_output_spec(self, query, value, key=None, head_mask=None, **kwargs):
            return super().compute_output_spec(query, value, key=key, **kwargs)

    classes = [
        ChipNetController,
        ChannelGate,
        GatedBatchNormalization,
        GatedLayerNormalization,
        GatedMultiHeadAttention,
    ]
    for cls in classes:
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
        register(cls)
    return types.SimpleNamespace(**{cls.__name__: cls for cls in classes})
