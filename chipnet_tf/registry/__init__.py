"""Layer type -> one :class:`LayerRule`: how channels flow through it, what it costs and
how to slice channels out of it.

Submodules, bottom to top: :mod:`~chipnet_tf.registry.vocabulary` (the kinds, rule and
context classes; imports nothing of chipnet_tf), :mod:`~chipnet_tf.registry.contractions`
(FLOPs of einsums, matmuls and ``EinsumDense``), :mod:`~chipnet_tf.registry.heads` (the rule of
``MultiHeadAttention``: its heads a group), :mod:`~chipnet_tf.registry.table` (class -> rule),
:mod:`~chipnet_tf.registry.flops`, :mod:`~chipnet_tf.registry.layouts` (channel spaces), the
built-in rules (:mod:`~chipnet_tf.registry.builtin`, :mod:`~chipnet_tf.registry.tfops`) and
:mod:`~chipnet_tf.registry.probe` (rules inferred from a layer's behaviour) and
:mod:`~chipnet_tf.registry.hub` (keras-hub layers, by qualified class name). Importing this
package installs the built-in rules, here and nowhere else.

Example: a custom per-channel scale ``y = x * w``::

    chipnet_tf.register_layer(
        Scale,
        chipnet_tf.registry.LayerRule(
            "passthrough",
            surgery=lambda ctx: (ctx.config, [chipnet_tf.registry.take(ctx.weights[0], ctx.out_keep, 0)]),
        ),
    )
"""

from chipnet_tf.registry.builtin import BUILTIN_RULES
from chipnet_tf.registry.flops import add_costs, layer_flops
from chipnet_tf.registry.hub import HUB_RULES
from chipnet_tf.registry.probe import channel_local_rule
from chipnet_tf.registry.table import (
    has_rule,
    install,
    lookup,
    register_layer,
    register_named,
    register_surgery,
    registered,
    unregister_layer,
)
from chipnet_tf.registry.tfops import tfop_rules
from chipnet_tf.registry.vocabulary import (
    CHANNELWISE_ACTIVATIONS,
    KINDS,
    ZERO_PRESERVING_ACTIVATIONS,
    CostContext,
    Kind,
    LayerRule,
    SurgeryContext,
    activation_name,
    as_kind,
    channels_last,
    elementwise_activation,
    output_prunable,
    prod,
    take,
)

install(BUILTIN_RULES)
install(tfop_rules())
install(HUB_RULES)

__all__ = [
    "CHANNELWISE_ACTIVATIONS",
    "KINDS",
    "ZERO_PRESERVING_ACTIVATIONS",
    "CostContext",
    "Kind",
    "LayerRule",
    "SurgeryContext",
    "activation_name",
    "add_costs",
    "as_kind",
    "channel_local_rule",
    "channels_last",
    "elementwise_activation",
    "has_rule",
    "layer_flops",
    "lookup",
    "output_prunable",
    "prod",
    "register_layer",
    "register_named",
    "register_surgery",
    "registered",
    "take",
    "unregister_layer",
]
