"""Rules of keras-hub layers the composite trace cannot see through, keyed by qualified
class name (:func:`chipnet_tf.registry.table.register_named`): keras-hub is an optional
library and is never imported for them.

**Patch embeddings** of the vision transformers (``ViTPatchingAndEmbedding``,
``DeiTEmbeddings``, ``DINOV2Embedding``) own raw weights next to their patch ``Conv2D``:
class (and distillation, register, mask) tokens concatenated in front of the patches and a
position table added to every token, all ``hidden_dim`` wide. Each is a **producer** of the
residual stream: its output channel ``c`` is written by the conv's filter ``c``, the tokens'
entry ``c`` and the position table's column ``c``, so a pruned stream channel takes all of
them with it (every weight whose last axis is ``hidden_dim`` is sliced along it, and
``hidden_dim`` shrinks in the config). Costs, with ``P`` patches, kernel ``k x k``, ``C``
image channels and ``o`` kept channels: parameters ``(k k C + 1) o`` for the conv plus the
tokens' and positions' rows times ``o``; FLOPs ``P k k C o + P o`` (the conv and its bias;
concatenating tokens and adding positions are not multiply-accumulates).

**DINOv2's layer scale** (``DINOV2LayerScale``, ``x * lambda``) is channel-local: the rule
:func:`chipnet_tf.registry.probe.channel_local_rule` would infer, pinned so it is neither
probed nor warned about.
"""

from chipnet_tf.registry.probe import channel_local_rule
from chipnet_tf.registry.vocabulary import Kind, LayerRule, channels_last, prod, take

_HUB = "keras_hub.src.models."


def _patch_conv(layer):
    """The patch embedding's convolution: its one sublayer with a kernel size."""
    convs = [s for s in layer._flatten_layers(include_self=False) if hasattr(s, "kernel_size")]
    return convs[0] if len(convs) == 1 else None


def _width(layer):
    return int(layer.hidden_dim)


def _embedding_kind(layer, rank):
    conv = _patch_conv(layer)
    if conv is None or not channels_last(layer) or not channels_last(conv) or int(conv.filters) != _width(layer):
        return Kind.OPAQUE
    return Kind.PRODUCER


def _embedding_costs(builder, ctx):
    """See the module docstring."""
    layer, fo = ctx.layer, ctx.out_form
    conv = _patch_conv(layer)
    width = _width(layer)
    k = prod(conv.kernel_size)
    patches = prod(conv.compute_output_shape(tuple(ctx.in_shape))[1:-1])
    bias = 1 if conv.use_bias else 0
    if ctx.first_call:
        conv_weights = {id(w) for w in conv.weights}
        builder.add("params", ctx.name, k, ctx.in_forms[0], fo)
        builder.add("params", ctx.name, bias, fo)
        for w in layer.weights:
            if id(w) in conv_weights:
                continue
            shape = tuple(int(d) for d in w.shape)
            if shape and shape[-1] == width:
                builder.add("params", ctx.name, prod(shape[:-1]), fo)
            else:
                builder.add("params", ctx.name, prod(shape), builder.one)
    builder.add("flops", ctx.name, patches * k, ctx.in_forms[0], fo)
    builder.add("flops", ctx.name, patches * bias, fo)
    builder.add("channels", ctx.name, 1, fo)
    builder.add("volume", ctx.name, prod(ctx.out_shape[1:-1]), fo)


def _embedding_surgery(ctx):
    """Slices every weight whose last axis is the stream (conv filters and bias, tokens,
    position tables) and sets ``hidden_dim`` to the kept width."""
    width = _width(ctx.layer)
    weights = [take(w, ctx.out_keep, w.ndim - 1) if w.ndim and w.shape[-1] == width else w for w in ctx.weights]
    if ctx.out_keep is not None:
        ctx.config["hidden_dim"] = len(ctx.out_keep)
    return ctx.config, weights


PATCH_EMBEDDING = LayerRule(_embedding_kind, _embedding_costs, _embedding_surgery, flops=True)

HUB_RULES = {
    _HUB + "vit.vit_layers.ViTPatchingAndEmbedding": PATCH_EMBEDDING,
    _HUB + "deit.deit_layers.DeiTEmbeddings": PATCH_EMBEDDING,
    _HUB + "dinov2.dinov2_layers.DINOV2Embedding": PATCH_EMBEDDING,
    _HUB + "dinov2.dinov2_layers.DINOV2LayerScale": channel_local_rule(),
}
