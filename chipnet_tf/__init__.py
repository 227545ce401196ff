"""chipnet_tf: ChipNet budget-aware structured pruning for tf_keras.

Example:
    >>> import chipnet_tf
    >>> pruned = chipnet_tf.prune_low_budget(model, budget=0.25, budget_type="flops")  # doctest: +SKIP
"""

from chipnet_tf import (
    compat,  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    export,
    latency,
    registry,
)
from chipnet_tf.analysis import analyze
from chipnet_tf.budgets import ALL_BUDGET_TYPES, BUDGET_TYPES, CostSpec
from chipnet_tf.prune import paper_search, prune_low_budget, prune_scope
from chipnet_tf.registry import register_layer, register_surgery
from chipnet_tf.report import BudgetReport, budget_report, count_flops
from chipnet_tf.search import (
    BestHardMasks,
    ChannelGate,
    ChipNetController,
    GatedBatchNormalization,
    GatedLayerNormalization,
    GatedMultiHeadAttention,
    HeavisideSchedule,
    PruneLowBudget,
    PruningSummaries,
    UpdatePruningStep,
    apply_masks,
    get_masks,
    load_masks,
    recalibrate_batch_norm,
    restore_batch_norm,
    save_masks,
    search_optimizer,
    select_masks,
)
from chipnet_tf.surgery import strip_pruning

__version__ = "0.1.0"

__all__ = [
    "ALL_BUDGET_TYPES",
    "BUDGET_TYPES",
    "BestHardMasks",
    "BudgetReport",
    "ChannelGate",
    "ChipNetController",
    "CostSpec",
    "GatedBatchNormalization",
    "GatedLayerNormalization",
    "GatedMultiHeadAttention",
    "HeavisideSchedule",
    "PruneLowBudget",
    "PruningSummaries",
    "UpdatePruningStep",
    "__version__",
    "analyze",
    "apply_masks",
    "budget_report",
    "count_flops",
    "export",
    "get_masks",
    "latency",
    "load_masks",
    "paper_search",
    "prune_low_budget",
    "prune_scope",
    "recalibrate_batch_norm",
    "register_layer",
    "register_surgery",
    "registry",
    "restore_batch_norm",
    "save_masks",
    "search_optimizer",
    "select_masks",
    "strip_pruning",
]
