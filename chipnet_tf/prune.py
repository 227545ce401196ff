"""Entry points: ``prune_low_budget`` and ``prune_scope``."""

from chipnet_tf import latency
from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.analysis.flat_graph import from_config, input_name
from chipnet_tf.analysis.keras3_graph import check_keras3_model, inputs_like
from chipnet_tf.budgets import NO_TABLE, check_budget_type
from chipnet_tf.compat import is_keras3_object, keras, keras3, keras_of, tf
from chipnet_tf.search.layers import (
    ChannelGate,
    ChipNetController,
    GatedBatchNormalization,
    GatedLayerNormalization,
    GatedMultiHeadAttention,
    PruneLowBudget,
    classes_for,
    gated_layer_norm,
)
from chipnet_tf.search.layers.controller import (
    GATE_FORWARDS,
    GATE_LOGITS,
    controllers,  # also public as chipnet_tf.prune.controllers
)
from chipnet_tf.search.layers.gated_attention import MASK_ARGUMENTS
from chipnet_tf.search.layers.gated_batch_norm import can_fold
from chipnet_tf.search.schedules import HeavisideSchedule
from chipnet_tf.validators import check_budget, check_gate_leak, check_weight


def prune_scope():
    """Scope under which saved pruned models load (kept for tfmot parity).

    Loading also works without it, because every chipnet_tf layer is registered as a Keras
    serialisable when ``chipnet_tf`` is imported.

    Example:
        >>> with chipnet_tf.prune_scope():  # doctest: +SKIP
        ...     model = keras.models.load_model("pruned.keras")
    """
    return keras.utils.custom_object_scope(
        {
            "ChipNetController": ChipNetController,
            "ChannelGate": ChannelGate,
            "GatedBatchNormalization": GatedBatchNormalization,
            "GatedLayerNormalization": GatedLayerNormalization,
            "GatedMultiHeadAttention": GatedMultiHeadAttention,
            "PruneLowBudget": PruneLowBudget,
            "HeavisideSchedule": HeavisideSchedule,
        }
    )


def paper_search():
    """The paper's search settings, as keyword arguments of :func:`prune_low_budget`.

    A per-epoch schedule (:meth:`HeavisideSchedule.paper`), soft gates in the forward pass,
    absolute logits and crispness weight 10: the reference implementation, kept to
    reproduce and compare it (on digits its soft budget never reached the target; see
    benchmarks/RESULTS.md).

    Example:
        >>> sorted(chipnet_tf.paper_search())
        ['crispness_weight', 'gate_forward', 'gate_leak', 'gate_logits', 'schedule']
        >>> pruned = chipnet_tf.prune_low_budget(model, 0.25, "flops", **chipnet_tf.paper_search())  # doctest: +SKIP
    """
    return {
        "schedule": HeavisideSchedule.paper(),
        "gate_forward": "soft",
        "gate_logits": "absolute",
        "gate_leak": 0.0,
        "crispness_weight": 10.0,
    }


def default_schedule():
    """:func:`prune_low_budget`'s schedule: :meth:`HeavisideSchedule.progress` (the paper's
    beta and rounding ramps over the whole ``fit``, the budget's target ramped down over its
    first half) with gamma held at its start, 2.

    Gamma's growth (to 256 in the paper) flattens the Heaviside's slope at every open gate
    until no gradient moves it (Adam's epsilon wins once ``gamma * exp(-gamma z_i)`` is
    tiny): on Fashion-MNIST the soft budget froze at 0.17-0.26 for a target of 0.1. Held at
    2, every gate stays movable to the end and the hard straight-through forward pass does
    the rounding that gamma's growth was for (docs/design/search-defaults.md).

    Example:
        >>> chipnet_tf.prune.default_schedule().gamma(0.9)
        2.0
    """
    return HeavisideSchedule.progress(gamma_factor=1.0)


def is_pruned(model):
    return bool(controllers(model))


def _inner_masks(analysis, fnode, masks):
    """The mask keyword arguments of a layer whose inner axes are pruned groups (an attention
    layer's ``head_mask``), or ``{}``."""
    out = {}
    for label, (segments, _) in analysis.inner.get(fnode.name, {}).items():
        group = segments[0][0]
        if group is not None:
            out[MASK_ARGUMENTS[label]] = masks[group]
    return out


def _clone_layer(layer, name, classes=None, inner_masks=None):
    """A copy of ``layer`` (own weights, named ``name``) made from its config; the gated
    class of an attention layer whose heads are pruned (``inner_masks``).

    Raises:
        ValueError: the config does not round-trip. Reusing the dense model's layer
            instead would make the pruned model silently share (and train) its weights.
    """
    cls = classes.GatedMultiHeadAttention if inner_masks else layer.__class__
    try:
        return from_config(cls, {**layer.get_config(), "name": name}, layer)
    except Exception as e:  # noqa: BLE001 - re-raised with the layer's name and the fix
        raise ValueError(
            f"prune_low_budget cannot copy layer {name!r} ({type(layer).__name__}): "
            f"{type(layer).__name__}.from_config(layer.get_config()) failed with {type(e).__name__}: {e}. "
            "Give the layer a get_config() that returns its constructor arguments (see Keras' "
            '"Making new layers and models via subclassing" guide).'
        ) from e


def prune_low_budget(
    to_prune,
    budget,
    budget_type="flops",
    *,
    budget_weight=30.0,
    crispness_weight=0.0,
    schedule=None,
    gate_forward="hard",
    gate_logits="relative",
    gate_leak=0.01,
    exclude=None,
    latency_table=None,
):
    """Adds ChipNet channel gates and budget/crispness penalties to a Keras model.

    The dense model is left untouched: the returned model has copies of its layers (with
    the same weights), a gate after every channel group's writers and one
    :class:`ChipNetController` owning the mask logits. A gate that follows a
    BatchNormalization is folded into it (:class:`GatedBatchNormalization` scales BN's
    gamma and beta by the mask, which is exact and cheap); elsewhere it is a
    :class:`ChannelGate` multiply. Train it with plain ``compile``/``fit`` and the
    :class:`chipnet_tf.UpdatePruningStep` callback.

    Example:
        >>> pruned = chipnet_tf.prune_low_budget(model, budget=0.25, budget_type="flops")  # doctest: +SKIP
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> pruned.fit(x, y, epochs=20, callbacks=[chipnet_tf.UpdatePruningStep()])  # doctest: +SKIP
        >>> masks = chipnet_tf.get_masks(pruned)  # doctest: +SKIP

    Args:
        to_prune: a tf_keras functional or Sequential model (nested models are flattened),
            or a single Conv/Dense layer (returns a :class:`PruneLowBudget` wrapper).
        budget: fraction of the dense resource to keep, in (0, 1].
        budget_type: ``"channels"``, ``"volume"``, ``"params"``, ``"flops"`` or
            ``"latency"`` (needs ``latency_table``).
        budget_weight: weight of the budget loss ``(V - budget)^2`` (paper: 30).
        crispness_weight: weight of the crispness loss (default 0; paper: 10). With a
            ramped budget target it applies once the target has reached the budget. Hard
            gates already train the rounded network, and with relative logits an open gate
            cannot be crisp (its logistic is at most 1/2), so the default has none.
        schedule: a :class:`chipnet_tf.HeavisideSchedule`; None for
            :func:`default_schedule`: the paper's ramps over the whole ``fit`` (whatever its
            steps per epoch), the logits scaled to the search's length, the budget's target
            ramped down over its first half and gamma held at 2.
        gate_forward: ``"hard"`` (default: channels are multiplied by the gate rounded to
            0/1 and the gradient passes straight through, so the network trained is the one
            the soft budget counts) or ``"soft"`` (the paper: by the soft gate).
        gate_logits: ``"relative"`` (default: each group's logits are measured from its
            largest, so a group cannot meet the budget by shrinking all its gates together,
            which a following BatchNormalization undoes; see
            :meth:`ChipNetController.logits`) or ``"absolute"`` (the paper).
        gate_leak: with hard gates, the factor a closed channel passes forward (default
            0.01; 0 removes it as the stripped model will). Without it a closed channel
            feeds exactly 0 into the ReLU after it and never hears the task loss again, so
            the search cannot undo a cut; see notes on the search in benchmarks/RESULTS.md.
            :func:`paper_search` gives the paper's settings:
            ``prune_low_budget(model, 0.25, **chipnet_tf.paper_search())``.
        exclude: names of layers whose output channels are never pruned. The model's
            outputs (the classifier) are never pruned.
        latency_table: a :class:`chipnet_tf.latency.LatencyTable` of this model (or its
            JSON path), from :func:`chipnet_tf.latency.profile` on the target device:
            required by ``budget_type="latency"``, and with any budget type it adds the
            predicted latency to reports. It is saved inside the model's config.

    Returns:
        A new functional ``keras.Model`` (or a ``PruneLowBudget`` layer).

    Raises:
        ValueError: budget outside (0, 1] or NaN, unknown budget_type, an already pruned or
            subclassed model, nothing prunable, or ``exclude`` naming unknown layers.
        TypeError: a Keras 3 model or something that is not a Keras model/layer.
    """
    _check_model_or_layer(to_prune)
    budget = check_budget(budget)
    check_budget_type(budget_type)
    if budget_type == "latency" and latency_table is None:
        raise ValueError(NO_TABLE)
    latency_table = None if latency_table is None else latency.as_table(latency_table)
    budget_weight = check_weight("budget_weight", budget_weight)
    crispness_weight = check_weight("crispness_weight", crispness_weight)
    if schedule is not None and not isinstance(schedule, HeavisideSchedule):
        raise TypeError(f"schedule must be a chipnet_tf.HeavisideSchedule or None. Received: {schedule!r}")
    if exclude is not None and (isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude)):
        raise TypeError(f"exclude must be a list of layer names. Received: exclude={exclude!r}")
    if gate_forward not in GATE_FORWARDS:
        raise ValueError(f"gate_forward must be one of {GATE_FORWARDS}. Received: gate_forward={gate_forward!r}")
    if gate_logits not in GATE_LOGITS:
        raise ValueError(f"gate_logits must be one of {GATE_LOGITS}. Received: gate_logits={gate_logits!r}")
    gate_leak = check_gate_leak(gate_leak)
    kwargs = dict(
        budget_weight=budget_weight,
        crispness_weight=crispness_weight,
        schedule=default_schedule() if schedule is None else schedule,
        gate_forward=gate_forward,
        gate_logits=gate_logits,
        gate_leak=gate_leak,
    )
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(to_prune, keras.Model):
        if isinstance(
            to_prune, (PruneLowBudget, ChannelGate, GatedBatchNormalization, GatedLayerNormalization, ChipNetController)
        ):
            raise ValueError(f"Layer {to_prune.name!r} is already pruned by chipnet_tf.")
        return PruneLowBudget(to_prune, budget=budget, budget_type=budget_type, **kwargs)
    if is_pruned(to_prune):
        raise ValueError(
            f"Model {to_prune.name!r} is already wrapped by chipnet_tf.prune_low_budget. Wrap the dense "
            "model, or use chipnet_tf.strip_pruning to get a plain model first."
        )
    analysis = graph_lib.analyze(to_prune, exclude=exclude)
    if latency_table is not None or budget_type == "latency":
        analysis.spec = latency.attach(analysis, latency_table)
    if not analysis.groups:
        raise ValueError(
            f"Model {to_prune.name!r} has nothing to prune: no Conv/Dense output channels outside the "
            "model outputs and excluded layers"
            + (f" (layers that stop groups: {analysis.stopped})" if analysis.stopped else "")
            + "."
        )
    return build_pruned_model(to_prune, analysis, budget, budget_type, **kwargs)


def _check_model_or_layer(obj):
    """Raises a clear error unless ``obj`` is a tf_keras layer, or a functional/Sequential
    model of either Keras."""
    if not is_keras3_object(obj):
        if not (isinstance(obj, keras.layers.Layer) and not isinstance(obj, keras.Model)):
            graph_lib.check_model(obj)
        return
    if not isinstance(obj, keras3().Model):
        raise TypeError(
            f"prune_low_budget wraps single layers of tf_keras models only; received the Keras 3 layer "
            f"{getattr(obj, 'name', obj)!r} ({type(obj).__name__}). Prune the Keras 3 functional or Sequential "
            "model that contains it."
        )
    check_keras3_model(obj)


def _flat(model, structure):
    return keras3().tree.flatten(structure) if is_keras3_object(model) else tf.nest.flatten(structure)


def build_pruned_model(model, analysis, budget, budget_type, **search):
    """Rebuilds ``model``'s flat graph with gates and a controller (see prune_low_budget)."""
    graph = analysis.graph
    k, classes = keras_of(model), classes_for(model)
    controller = classes.ChipNetController(
        [[g.name, g.size] for g in analysis.groups],
        analysis.spec,
        budget=budget,
        budget_type=budget_type,
        **search,
    )
    tensors = {}
    new_inputs = []
    for key, kt in zip(graph.input_keys, graph.input_tensors):
        sparse = bool(getattr(kt, "sparse", False))
        new = k.Input(batch_shape=tuple(kt.shape), dtype=kt.dtype, name=input_name(kt), sparse=sparse)
        tensors[key] = new
        new_inputs.append(new)
    masks = controller(new_inputs[0])
    if not isinstance(masks, (list, tuple)):
        masks = [masks]

    def gated(layout):
        """``(segments named by group, repeat, the masks of its pruned segments)``."""
        segments, repeat = layout
        named = [[None if g is None else analysis.groups[g].name, n] for g, n in segments]
        return named, repeat, [masks[g] for g, _ in segments if g is not None]

    folded, layer_norms = _gated_layer_calls(analysis)
    clones = {}
    gate_names = set()
    for i, fnode in enumerate(graph.nodes):
        layer = fnode.layer
        args, kwargs = graph.resolve_args(fnode, tensors)
        if i in folded or i in layer_norms:
            # A gate right after a BatchNormalization (the usual case) is folded into it
            # (GatedBatchNormalization multiplies BN's per-channel scale and offset by the
            # mask: exact, and no multiply over the whole activation); a LayerNormalization
            # over channels takes its statistics over the kept channels only.
            cls = classes.GatedBatchNormalization if i in folded else classes.GatedLayerNormalization
            layout = analysis.gates[fnode.out_keys[0]] if i in folded else analysis.layouts[fnode.in_keys[0]]
            named, repeat, layout_masks = gated(layout)
            new_layer = cls(named, repeat, **{**layer.get_config(), "name": fnode.name})
            kwargs = {k: v for k, v in kwargs.items() if k == "training"} if i in folded else {}
            outputs = new_layer([args[0]] + layout_masks, **kwargs)
            new_layer.set_weights(layer.get_weights())
            if i in folded:  # the gate is inside: the output needs no other
                tensors[fnode.out_keys[0]] = outputs
                continue
        else:
            inner_masks = _inner_masks(analysis, fnode, masks)
            if id(layer) not in clones:
                # A Keras 3 ``keras.ops`` call (an Operation, not a Layer) has no weights: it is
                # called again on the new tensors.
                is_layer = isinstance(layer, k.layers.Layer)
                clones[id(layer)] = _clone_layer(layer, fnode.name, classes, inner_masks) if is_layer else layer
            new_layer = clones[id(layer)]
            outputs = new_layer(*args, **kwargs, **inner_masks)
            if fnode.first_call and getattr(layer, "weights", None):
                new_layer.set_weights(layer.get_weights())
        for key, out in zip(fnode.out_keys, _flat(model, outputs)):
            if key in analysis.gates:
                named, repeat, layout_masks = gated(analysis.gates[key])
                name = f"{analysis.gate_origin[key]}_gate"
                while name in gate_names:
                    name += "_"
                gate_names.add(name)
                out = classes.ChannelGate(named, repeat, name=name)([out] + layout_masks)
            tensors[key] = out
    outputs = tf.nest.pack_sequence_as(model.outputs, [tensors[key] for key in graph.output_keys])
    return k.Model(inputs_like(model, new_inputs), outputs, name=model.name)


def _gated_layer_calls(analysis):
    """Node indices of the calls replaced by gated layers: ``(folded, layer_norms)``.

    ``folded``: BatchNormalizations whose output is a gate point (the gate is folded in);
    ``layer_norms``: LayerNormalizations over channels of a pruned layout. Only layers
    called once (a shared layer keeps one set of weights).
    """
    graph = analysis.graph
    calls = {}
    for fnode in graph.nodes:
        calls[id(fnode.layer)] = calls.get(id(fnode.layer), 0) + 1
    folded, layer_norms = set(), set()
    for i, fnode in enumerate(graph.nodes):
        if calls[id(fnode.layer)] != 1:
            continue
        if (
            len(fnode.out_keys) == 1
            and fnode.out_keys[0] in analysis.gates
            and can_fold(fnode.layer, len(fnode.out_shapes[0]) if fnode.out_shapes else None)
        ):
            folded.add(i)
        elif (
            fnode.in_shapes
            and gated_layer_norm.can_gate(fnode.layer, len(fnode.in_shapes[0]))
            and any(g is not None for g, _ in analysis.layouts[fnode.in_keys[0]][0])
        ):
            layer_norms.add(i)
    return folded, layer_norms
