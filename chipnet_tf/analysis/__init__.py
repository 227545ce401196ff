"""The graph analysis: a model's flat call graph (:mod:`~chipnet_tf.analysis.flat_graph`,
:mod:`~chipnet_tf.analysis.keras3_graph`; custom layers made of Keras layers traced by
:mod:`~chipnet_tf.analysis.composite`) and its channel groups, gate points and costs
(:mod:`~chipnet_tf.analysis.groups`)."""

from chipnet_tf.analysis.flat_graph import UnsupportedModelError, check_model, flatten
from chipnet_tf.analysis.groups import Analysis, Group, analyze

__all__ = ["Analysis", "Group", "UnsupportedModelError", "analyze", "check_model", "flatten"]
