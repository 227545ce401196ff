"""Fully pruned groups in :func:`chipnet_tf.strip_pruning`: what a group that keeps no
channel removes, and what its constant outputs turn into (see :func:`plan_empty_groups`)."""

import dataclasses

import numpy as np

from chipnet_tf import registry
from chipnet_tf.compat import keras
from chipnet_tf.registry import take

L = keras.layers


@dataclasses.dataclass
class _DeadPlan:
    """What a group with no kept channel removes (see :func:`plan_empty_groups`)."""

    drop: set  # layer names whose outputs have no channel left
    const: dict  # tensor key -> per-channel constant (kept channels) it is reduced to
    const_layers: set  # layer names that only compute such constants (removed)
    adds: dict  # layer name -> (live input keys, offset vector or None)
    concats: dict  # layer name -> live input keys

    @property
    def removed(self):
        return self.drop | self.const_layers


def _const_through(layer, value, keep):
    """``layer`` applied (in inference) to a per-channel constant ``value``, or None when
    its rule does not say how (see ``LayerRule(constant=...)``)."""
    constant = registry.lookup(layer).constant
    return None if constant is None else constant(layer, value, keep)


def plan_empty_groups(analysis, keeps):
    """Plans the removal of everything a fully pruned group leaves without input.

    A group whose mask keeps no channel removes the layers that write it and everything
    that only carries its channels. A producer (conv/dense) that reads nothing but removed
    channels outputs its bias, a constant; constants pass through BatchNormalization
    (inference) and elementwise activations/dropout, and must end in an ``Add``, where
    the branch input is dropped and the constant becomes a ``Rescaling`` offset (none when
    it is zero): a fully pruned residual branch disappears. Anything else reading a
    constant is an error.

    Args:
        analysis: the :func:`chipnet_tf.analysis.groups.analyze` result of the (dense view) graph.
        keeps: ``{tensor key: kept channel indices or None}``.
    """
    view = analysis.graph
    empty = {k for k, v in keeps.items() if v is not None and len(v) == 0}
    plan = _DeadPlan(set(), {}, set(), {}, {})
    if not empty:
        return plan
    for fnode, kind in zip(view.nodes, analysis.kinds):
        ins, outs = fnode.in_keys, fnode.out_keys
        if not any(k in empty or k in plan.const for k in ins) and not any(k in empty for k in outs):
            continue
        layer, name = fnode.layer, fnode.name
        if outs and all(k in empty for k in outs):
            plan.drop.add(name)
            continue
        out = outs[0]
        live = [k for k in ins if k not in empty]
        consts = [k for k in ins if k in plan.const]
        if isinstance(layer, L.Concatenate) and not consts:
            plan.concats[name] = live
        elif not live and len(ins) == 1 and kind == registry.Kind.PRODUCER:
            w = layer.get_weights()
            bias = w[-1] if getattr(layer, "use_bias", False) else np.zeros(int(fnode.out_shapes[0][-1]))
            plan.const[out] = take(bias, keeps.get(out), 0).astype(np.float64)
            plan.const_layers.add(name)
        elif (
            len(ins) == 1
            and consts
            and (value := _const_through(layer, plan.const[ins[0]], keeps.get(out))) is not None
        ):
            plan.const[out] = np.asarray(value, np.float64)
            plan.const_layers.add(name)
        elif isinstance(layer, L.Add) and consts and len(live) == len(ins):
            rest = [k for k in live if k not in plan.const]
            offset = np.sum([plan.const[k] for k in consts], axis=0)
            if rest:
                plan.adds[name] = (rest, None if not np.any(offset) else offset)
            else:
                plan.const[out] = offset
                plan.const_layers.add(name)
        else:
            raise ValueError(
                f"Layer {name!r} ({type(layer).__name__}) would be left reading only removed channels or a "
                "constant from a fully pruned group. strip_pruning removes a fully pruned branch when it ends "
                "in an Add through BatchNormalization/activation/dropout layers; keep at least one channel in "
                f"the groups feeding {name!r}."
            )
    bad = [k for k in view.output_keys if k in empty or k in plan.const]
    if bad:
        raise ValueError("A fully pruned group would leave a model output without input channels.")
    # Layers whose outputs now feed only removed layers are dead ends: removed as well
    # (e.g. the first conv of a residual branch whose second conv keeps no channel).
    consumers = {}
    for fnode in view.nodes:
        used = fnode.in_keys
        if fnode.name in plan.adds:
            used = plan.adds[fnode.name][0]
        elif fnode.name in plan.concats:
            used = plan.concats[fnode.name]
        for k in used:
            consumers.setdefault(k, []).append(fnode.name)
    outputs = set(view.output_keys)
    for fnode in reversed(view.nodes):
        if fnode.name in plan.removed:
            continue
        if all(k not in outputs and all(c in plan.removed for c in consumers.get(k, [])) for k in fnode.out_keys):
            plan.drop.add(fnode.name)
    return plan
