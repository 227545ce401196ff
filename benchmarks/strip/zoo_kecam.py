"""How much of third-party CNNs the analysis can prune: convolutional models of
keras-cv-attention-models ("kecam", ``pip install keras-cv-attention-models==1.4.3``), built
offline under tf_keras.

The same measures as :mod:`benchmarks.strip.zoo_reach` (64x64 inputs, random init with
``pretrained=None``, 10 classes, logits): the smallest reachable FLOPs fraction (every
group keeps one channel), the number of channel groups, the layers that still stop groups
with the reason :func:`chipnet_tf.registry.probe.explain` gives, and (``--strip``) a strip
check under random masks at FLOPs 0.1: stripped vs hard-masked wrapped model (relative max
difference of the logits) and whether ``count_params``/``count_flops``/the TF profiler of
the stripped model equal the prediction. The profiler does not count ``tf.linalg.matmul``
attention (EdgeNeXt), so its column may say NO where ``count_flops`` is exact.

kecam picks tf_keras when ``TF_USE_LEGACY_KERAS=1`` (it sets it itself for TensorFlow >=
2.16 when unset, which must happen before TensorFlow is imported: this module sets it).

Usage (from the checkout)::

    python -m benchmarks.strip.zoo_kecam                       # fractions of every model
    python -m benchmarks.strip.zoo_kecam --strip --out benchmarks/results/zoo_reach_kecam.json
    python -m benchmarks.strip.zoo_kecam --strip --models GhostNetV2_100 FasterNetT0
"""

import argparse
import importlib
import json
import os
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from benchmarks.strip.zoo_reach import smallest_flops_fraction, strip_check  # noqa: E402
from chipnet_tf.compat import keras  # noqa: E402
from chipnet_tf.io import atomic_write  # noqa: E402
from chipnet_tf.registry import inherited, probe, probe_calls  # noqa: E402

# model -> kecam module; one or two models per family, convolutional or conv-first hybrids.
MODELS = {
    "GhostNet_050": "ghostnet",
    "GhostNetV2_100": "ghostnet",
    "MobileNetV3Small075": "mobilenetv3_family",
    "LCNet050": "mobilenetv3_family",
    "FasterNetT0": "fasternet",
    "InceptionNeXtTiny": "inceptionnext",
    "MogaNetXtiny": "moganet",
    "CSPNeXtTiny": "cspnext",
    "EdgeNeXt_XX_Small": "edgenext",
    "ResNest50": "resnest",
    "RegNetZB16": "resnet_family",
    "EfficientNetV2B0": "efficientnet",
    "RepViT_M09": "repvit",
    "VanillaNet5": "vanillanet",
    "ConvNeXtV2Atto": "convnext",
    "NFNetL0": "nfnets",
}
# Smallest reachable FLOPs fraction of each model with the analysis before the probe became the
# path for function layers and element-wise merges aligned differently cut inputs (commit 4485ff3).
BEFORE = {
    "GhostNet_050": 0.4539,
    "GhostNetV2_100": 0.724,
    "MobileNetV3Small075": 0.222,
    "LCNet050": 0.0565,
    "FasterNetT0": 0.1129,
    "InceptionNeXtTiny": 0.0484,
    "MogaNetXtiny": 0.0544,
    "CSPNeXtTiny": 0.0148,
    "EdgeNeXt_XX_Small": 0.1676,
    "ResNest50": 0.0094,
    "RegNetZB16": 0.0098,
    "EfficientNetV2B0": 0.0094,
    "RepViT_M09": 0.0096,
    "VanillaNet5": 0.0099,
    "ConvNeXtV2Atto": 0.0141,
    "NFNetL0": 0.0097,
}
# How many layers stopped groups then (analysis.stopped), and NFNetL0's strip check then: its
# weight-standardized convs were pruned as plain Conv2D and stripped 7.2 (relative) off.
BEFORE_STOPPED = {
    "GhostNet_050": 30,
    "GhostNetV2_100": 51,
    "MobileNetV3Small075": 9,
    "LCNet050": 2,
    "FasterNetT0": 13,
    "InceptionNeXtTiny": 18,
    "MogaNetXtiny": 18,
    "CSPNeXtTiny": 8,
    "EdgeNeXt_XX_Small": 18,
    "ResNest50": 64,
    "ConvNeXtV2Atto": 36,
}
SIZE = 64
CLASSES = 10


def build(name, size=SIZE):
    """The kecam model ``name`` at ``size`` x ``size``, random weights (no download)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Known: {', '.join(MODELS)}")
    keras.utils.set_random_seed(0)
    module = importlib.import_module(f"keras_cv_attention_models.{MODELS[name]}")
    factory = getattr(module, name)
    return factory(input_shape=(size, size, 3), num_classes=CLASSES, pretrained=None, classifier_activation=None)


def stop_reasons(analysis):
    """``{reason: [layer, ...]}`` of the layers that stop groups, and of the subclassed
    layers whose inherited rule does not hold (opaque producers stop no group: their own
    channels are never pruned)."""
    nodes = {fnode.name: (fnode, rule) for fnode, rule in zip(analysis.graph.nodes, analysis.rules)}
    refused = [
        fnode.name
        for fnode, rule in nodes.values()
        if inherited.keras_base(fnode.layer) and rule.kind(fnode.layer, len(fnode.in_shapes[0])) == "opaque"
    ]
    out = {}
    for name in list(analysis.stopped) + [n for n in refused if n not in analysis.stopped]:
        fnode, rule = nodes[name]
        what = probe_calls.describe(fnode.layer)
        out.setdefault(f"{what}: {probe.explain(fnode, rule)}", []).append(name)
    return out


def row(name, strip=False):
    start = time.perf_counter()
    model = build(name)
    fraction, analysis = smallest_flops_fraction(model)
    out = {"model": name, "smallest_flops_fraction": round(fraction, 4), "groups": len(analysis.groups)}
    out["stopped"] = list(analysis.stopped)
    out["stop_reasons"] = {reason: len(names) for reason, names in stop_reasons(analysis).items()}
    out["inferred"] = sorted(set(analysis.inferred.values()))
    if strip and analysis.groups:
        out.update(strip_check(model, analysis))
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def markdown(rows):
    """The rows as a Markdown table."""
    lines = [
        "| model | smallest reachable FLOPs fraction (before → now) | groups | layers stopping groups (before → now) "
        "| stripped vs wrapped, rel. max diff | params / FLOPs / profiler = predicted |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        before = BEFORE.get(r["model"])
        reach = f"{r['smallest_flops_fraction']:.3f}"
        if before is not None:
            reach = f"{before:.3f} → {reach}"
        stops = "; ".join(f"{n} × {reason}" for reason, n in r["stop_reasons"].items())
        stops = f"{BEFORE_STOPPED.get(r['model'], 0)} → {len(r['stopped'])}" + (f": {stops}" if stops else "")
        diff = f"{r['rel_max_diff']:.1e}" if "rel_max_diff" in r else "—"
        exact = "—"
        if "flops_exact" in r:
            exact = " / ".join("yes" if r[k] else "NO" for k in ("params_exact", "flops_exact", "profiler_exact"))
        lines.append(f"| {r['model']} | {reach} | {r['groups']} | {stops} | {diff} | {exact} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="default: every model of MODELS")
    parser.add_argument("--strip", action="store_true", help="also strip at FLOPs 0.1 and check the counts")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = []
    for name in args.models or list(MODELS):
        keras.backend.clear_session()
        rows.append(row(name, strip=args.strip))
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))
    if args.out:
        import keras_cv_attention_models

        head = {"size": SIZE, "budget_for_strip_check": 0.1, "kecam": keras_cv_attention_models.__version__}
        text = json.dumps({**head, "rows": rows}, indent=1) + "\n"
        atomic_write(args.out, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
