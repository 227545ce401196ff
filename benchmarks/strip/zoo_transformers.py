"""How much of third-party transformers the analysis can prune, one model per family, each
built small and offline from constructor arguments (random weights, never a preset):

- **plain ViT**: keras-hub's ``ViTBackbone`` under its ``ViTImageClassifier`` (Keras 3, the
  row of :mod:`benchmarks.strip.zoo_keras3`): ``MultiHeadAttention``, whose heads are groups;
- **hybrid conv-attention**: keras-cv-attention-models' (kecam) ``MobileViT`` (tf_keras):
  MobileNetV2 blocks, then MobileViT blocks that unfold the feature map into patches, attend
  over them and fold them back;
- **LeViT-like**: kecam's ``LeViT`` (tf_keras): a convolutional stem, attention with
  per-head position biases and attention-downsampling stages;
- **GPT-style decoders**: keras-hub's CLIP text encoder (Keras 3: token and position
  embeddings, pre-norm blocks of ``MultiHeadAttention(use_causal_mask=True)`` and an MLP,
  whose heads are groups) with a Dense LM head, and kecam's ``GPT2`` (tf_keras: a
  ``CausalMask`` layer adds ``-inf`` above the diagonal of the attention logits), each on a
  static 16-token input (the analysis needs the sequence length: kecam's model is rebuilt on
  a ``(16,)`` input, the CLIP encoder's layers are called on one). keras-hub's ``GPT2Backbone``
  itself cannot be traced into: see the guide;
- **windowed attention** (Swin-like): kecam's ``SwinTransformerV2`` (tf_keras): window
  partition and reverse are reshapes that fold windows into the batch axis and join a
  window's columns with the channel axis (``[-1, w, W / w, w * C]``), shifted windows a roll,
  patch merging a reshape of 2 x 2 neighbours into ``4 C`` channels, attention a cosine
  attention with a position-bias MLP (a layer of weights alone).

kecam builds attention from ``Dense``, reshapes, transposes and matmuls: the residual
stream, the MLPs and the convolutions are channel groups, the heads are not (the reshape
that splits the q/k/v projection into heads stops its columns' group), so a kecam model
keeps every head.

Each row: the channel groups, the smallest reachable FLOPs fraction (every group keeps one
channel), a strip check under random budget-aware masks at FLOPs 0.1 (relative max
difference of the stripped model's outputs from the hard-masked wrapped model's; params and
FLOPs of the stripped model equal to the prediction), ``count_flops`` of the stripped model
against the independent count of :mod:`tests.flops_oracle` (MACs of the convolution, MatMul,
BatchMatMul and Einsum ops of its frozen batch-1 graph + bias adds), and the heads of each
attention layer, dense and kept.

Usage (from the checkout)::

    python -m benchmarks.strip.zoo_transformers --out benchmarks/results/zoo_transformers.json
    python -m benchmarks.strip.zoo_transformers --models kecam.LeViT
"""

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # kecam picks tf_keras; keras-hub is Keras 3

import numpy as np  # noqa: E402

import chipnet_tf  # noqa: E402
from benchmarks.strip import zoo_keras3  # noqa: E402
from benchmarks.strip.zoo_reach import smallest_flops_fraction  # noqa: E402
from chipnet_tf.compat import is_keras3_object, keras  # noqa: E402
from chipnet_tf.io import atomic_write  # noqa: E402

CLASSES = 10
TOKENS, VOCABULARY = 16, 256


def _mobilevit():
    from keras_cv_attention_models.mobilevit import mobilevit

    return mobilevit.MobileViT(
        num_blocks=[1, 1, 2, 2, 2],  # a transform stage: a conv block, then attention
        out_channels=[16, 24, 48, 64, 80],
        attn_channels=[0, 0, 64, 80, 96],
        expand_ratio=2,
        output_num_features=320,
        input_shape=(32, 32, 3),
        num_classes=CLASSES,
        classifier_activation=None,
        pretrained=None,
        model_name="mobilevit_tiny",
    )


def _levit():
    from keras_cv_attention_models.levit import levit

    return levit.LeViT(
        patch_channel=64,
        out_channels=[128, 128],  # 64 -> attention-downsampled to 128 -> 128
        num_heads=[2, 3],
        depthes=[1, 1],
        key_dims=[16, 16],
        attn_ratios=[2, 2],
        mlp_ratios=[2, 2],
        strides=[2, 0],
        input_shape=(64, 64, 3),
        num_classes=CLASSES,
        pretrained=None,
        model_name="levit_tiny",
    )


def _gpt2():
    from keras_cv_attention_models.gpt2 import gpt2

    model = gpt2.GPT2(
        num_blocks=2, embedding_size=64, num_heads=2, vocab_size=VOCABULARY, max_block_size=TOKENS, pretrained=None
    )
    return keras.models.clone_model(model, input_tensors=keras.Input((TOKENS,), dtype="int64", name="tokens"))


def _clip_text():
    """keras-hub's CLIP text encoder (causal self-attention: ``MultiHeadAttention`` with
    ``use_causal_mask=True``) on a static 16-token input, with a Dense LM head: its layers
    are called as its functional model calls them."""
    import keras as keras3
    import keras_hub

    keras3.utils.set_random_seed(0)
    encoder = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=VOCABULARY,
        embedding_dim=64,
        hidden_dim=64,
        num_layers=2,
        num_heads=2,
        intermediate_dim=128,
        max_sequence_length=TOKENS,
    )
    tokens = keras3.Input((TOKENS,), dtype="int32", name="token_ids")
    x = encoder.embedding(tokens)
    for block in encoder.encoder_layers:
        x = block(x)
    x = encoder.layer_norm(x)
    return keras3.Model(tokens, keras3.layers.Dense(VOCABULARY, name="lm_head")(x))


def _swin_v2():
    from keras_cv_attention_models.swin_transformer_v2 import swin_transformer_v2

    return swin_transformer_v2.SwinTransformerV2(
        num_blocks=[1, 1],
        embed_dim=64,
        num_heads=[2, 4],
        window_size=4,
        stem_patch_size=2,
        input_shape=(32, 32, 3),
        num_classes=CLASSES,
        classifier_activation=None,
        pretrained=None,
        model_name="swin_v2_tiny",
    )


# name -> (library, family, builder, heads of each attention layer in the dense model)
MODELS = {
    "hub.ViT": ("keras-hub", "plain ViT", lambda: zoo_keras3.build("hub.ViT"), None),
    "kecam.MobileViT": ("kecam", "hybrid conv-attention (MobileViT)", _mobilevit, [4, 4, 4]),
    "kecam.LeViT": ("kecam", "LeViT", _levit, [2, 4, 3]),
    "kecam.GPT2": ("kecam", "GPT-style causal decoder", _gpt2, [2, 2]),
    "hub.CLIPText": ("keras-hub", "GPT-style causal decoder (CLIP text encoder)", _clip_text, None),
    "kecam.SwinTransformerV2": ("kecam", "windowed attention (Swin V2)", _swin_v2, [2, 4]),
}
# What stays whole in each model, beyond kecam's heads (see the module docstring).
NOTES = {
    "kecam.SwinTransformerV2": "cosine attention l2-normalises q and k per head, so their channels stay whole; "
    "the stream (through window partition, shifted windows and patch merging) and the MLPs are groups",
}


INDEPENDENT = (
    "MACs of the Conv/MatMul/BatchMatMul/Einsum ops of the stripped model's frozen batch-1 graph (grouped "
    "convs traced inline; an Einsum's from its equation) + bias adds (BiasAdd, and AddV2 of a constant onto such "
    "an op): 'weighted' (a weight operand), 'activations' (two computed operands: attention), 'bias'; "
    "independent_exact: count_flops == their total"
)


def _random_input(model, rng):
    spec = model.inputs[0]
    shape = (2, *tuple(spec.shape[1:]))
    if "int" in str(spec.dtype):
        return rng.integers(0, VOCABULARY, size=shape).astype("int64")
    return rng.uniform(0, 255, size=shape).astype("float32")


def _heads(model):
    """Heads of each ``MultiHeadAttention`` of ``model`` (nested models included), in order."""
    layers = model._flatten_layers(include_self=False) if is_keras3_object(model) else model.submodules
    return [int(layer._num_heads) for layer in layers if hasattr(layer, "_num_heads") and hasattr(layer, "_key_dim")]


def _randomize(model, rng):
    """BatchNormalization statistics far from the identity, and random values in the weights
    a model initialises to zeros (LeViT's zero-initialised BatchNorm scales and head):
    a strip check on an output that is zero whatever the masks would check nothing."""
    layers = model._flatten_layers(include_self=False) if is_keras3_object(model) else model.submodules
    for layer in layers:
        weights = layer.get_weights() if hasattr(layer, "get_weights") and not isinstance(layer, keras.Model) else []
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in weights])
        elif weights and any(w.size and not w.any() and w.dtype.kind == "f" for w in weights):
            layer.set_weights([rng.normal(0, 0.1, w.shape).astype(w.dtype) if not w.any() else w for w in weights])


def strip_check(model, analysis, budget=0.1, seed=0, keep=None):
    """The strip check of the module docstring under random masks at a FLOPs ``budget``
    (``keep``: a list the stripped model is appended to)."""
    rng = np.random.default_rng(seed)
    _randomize(model, rng)
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, budget, "flops")
    pruned = chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    x = _random_input(model, rng)
    wrapped = np.asarray(pruned(x, training=False))
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    report = chipnet_tf.budget_report(model, masks=masks).totals
    flops = chipnet_tf.count_flops(small)
    counts = zoo_keras3.independent_counts(small)
    if keep is not None:
        keep.append(small)
    return {
        "rel_max_diff": float(np.abs(np.asarray(small(x, training=False)) - wrapped).max() / np.abs(wrapped).max()),
        "params_exact": small.count_params() == report["params"]["kept"],
        "flops_exact": flops == report["flops"]["kept"],
        "flops_fraction": report["flops"]["fraction"],
        "count_flops": flops,
        "independent": counts,
        "independent_exact": counts["total"] == flops,
        "heads_kept": _heads(small),
    }


def row(name, keep=None):
    """The row of ``name`` (a key of :data:`MODELS`; ``keep``: a list the stripped model is
    appended to)."""
    library, family, build, heads = MODELS[name]
    start = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build()
    fraction, analysis = smallest_flops_fraction(model)
    out = {"model": name, "library": library, "family": family, "groups": len(analysis.groups)}
    out["head_groups"] = sum(1 for g in analysis.groups if g.name.endswith("/heads"))
    out["smallest_flops_fraction"] = round(fraction, 4)
    out["stopped"] = len(analysis.stopped)
    out["heads_dense"] = _heads(model) or heads
    out.update(strip_check(model, analysis, keep=keep))
    if not out["heads_kept"]:  # heads live in reshapes, not in a layer: every head is kept
        out["heads_kept"] = out["heads_dense"]
    if name in NOTES:
        out["note"] = NOTES[name]
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def markdown(rows):
    lines = [
        "| model | family | groups | smallest FLOPs fraction | rel. max diff at FLOPs 0.1 "
        "| params / FLOPs / independent count exact | heads dense → kept at FLOPs 0.1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        exact = " / ".join("yes" if r[k] else "NO" for k in ("params_exact", "flops_exact", "independent_exact"))
        heads = f"{r['heads_dense']} → {r['heads_kept']}"
        lines.append(
            f"| {r['model']} | {r['family']} | {r['groups']} | {r['smallest_flops_fraction']:.4f} "
            f"| {r['rel_max_diff']:.1e} | {exact} | {heads} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = []
    for name in args.models:
        rows.append(row(name))
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))
    if args.out:
        head = {"budget_for_strip_check": 0.1, "independent_count": INDEPENDENT}
        text = json.dumps({**head, "rows": rows}, indent=1) + "\n"
        atomic_write(args.out, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
