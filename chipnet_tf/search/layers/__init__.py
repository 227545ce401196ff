"""Keras layers that chipnet_tf inserts into a model."""

from chipnet_tf.search.layers.channel_gate import ChannelGate
from chipnet_tf.search.layers.controller import ChipNetController
from chipnet_tf.search.layers.gated_batch_norm import GatedBatchNormalization
from chipnet_tf.search.layers.gated_layer_norm import GatedLayerNormalization
from chipnet_tf.search.layers.prune_low_budget import PruneLowBudget

__all__ = ["ChannelGate", "ChipNetController", "GatedBatchNormalization", "GatedLayerNormalization", "PruneLowBudget"]
