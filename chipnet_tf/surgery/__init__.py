"""Surgery: the physically smaller model (:mod:`~chipnet_tf.surgery.strip`), including
branches whose group is fully pruned (:mod:`~chipnet_tf.surgery.empty_groups`)."""

from chipnet_tf.surgery.strip import removed_layers, strip_pruning

__all__ = ["removed_layers", "strip_pruning"]
