"""The search: gate layers (:mod:`~chipnet_tf.search.layers`), the continuous Heaviside
(:mod:`~chipnet_tf.search.heaviside`), the schedules, the training callbacks and the hard
masks (:mod:`~chipnet_tf.search.masks`)."""

from chipnet_tf.search.batch_norm import recalibrate_batch_norm, restore_batch_norm
from chipnet_tf.search.callbacks import BestHardMasks, PruningSummaries, UpdatePruningStep
from chipnet_tf.search.layers import (
    ChannelGate,
    ChipNetController,
    GatedBatchNormalization,
    GatedLayerNormalization,
    GatedMultiHeadAttention,
    PruneLowBudget,
)
from chipnet_tf.search.masks import apply_masks, get_masks, load_masks, save_masks, select_masks
from chipnet_tf.search.optimizer import search_optimizer
from chipnet_tf.search.schedules import HeavisideSchedule

__all__ = [
    "BestHardMasks",
    "ChannelGate",
    "ChipNetController",
    "GatedBatchNormalization",
    "GatedLayerNormalization",
    "GatedMultiHeadAttention",
    "HeavisideSchedule",
    "PruneLowBudget",
    "PruningSummaries",
    "UpdatePruningStep",
    "apply_masks",
    "get_masks",
    "load_masks",
    "recalibrate_batch_norm",
    "restore_batch_norm",
    "save_masks",
    "search_optimizer",
    "select_masks",
]
