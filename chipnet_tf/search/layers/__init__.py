"""Keras layers that chipnet_tf inserts into a model (tf_keras classes here; their Keras 3
twins in :mod:`chipnet_tf.search.layers.keras3`)."""

import types

from chipnet_tf.compat import is_keras3_object
from chipnet_tf.search.layers.channel_gate import ChannelGate
from chipnet_tf.search.layers.controller import ChipNetController
from chipnet_tf.search.layers.gated_attention import GatedMultiHeadAttention
from chipnet_tf.search.layers.gated_batch_norm import GatedBatchNormalization
from chipnet_tf.search.layers.gated_layer_norm import GatedLayerNormalization
from chipnet_tf.search.layers.keras3 import keras3_layers
from chipnet_tf.search.layers.prune_low_budget import PruneLowBudget

__all__ = [
    "ChannelGate",
    "ChipNetController",
    "GatedBatchNormalization",
    "GatedLayerNormalization",
    "GatedMultiHeadAttention",
    "PruneLowBudget",
    "classes_for",
]

_TF_KERAS = types.SimpleNamespace(
    ChipNetController=ChipNetController,
    ChannelGate=ChannelGate,
    GatedBatchNormalization=GatedBatchNormalization,
    GatedLayerNormalization=GatedLayerNormalization,
    GatedMultiHeadAttention=GatedMultiHeadAttention,
)


def classes_for(obj):
    """The gate layer classes (``ChipNetController``, ``ChannelGate``,
    ``GatedBatchNormalization``, ``GatedLayerNormalization``, ``GatedMultiHeadAttention``) of
    ``obj``'s Keras.

    Example:
        >>> classes_for(keras.layers.Dense(2)).ChannelGate is ChannelGate
        True
    """
    return keras3_layers() if is_keras3_object(obj) else _TF_KERAS
