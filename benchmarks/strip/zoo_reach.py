"""How much of each keras.applications model the analysis can prune (the smallest reachable network).

For every model (96x96 inputs, ``weights=None``, 10 classes, logits):

- **smallest reachable FLOPs fraction**: ``analyze`` + ``select_masks`` at a 0.01 FLOPs
  budget, i.e. the smallest network the channel groups allow (every group keeps one
  channel), as a fraction of the dense FLOPs;
- **stripped vs wrapped** (``--strip``): random budget-aware masks at FLOPs 0.1 are fixed on
  the wrapped model, which is stripped; the relative max difference of the logits
  (``max |small - wrapped| / max |wrapped|``), and whether ``count_params``,
  ``count_flops`` and the TF profiler's FLOPs of the stripped model equal the prediction.

Usage (from the checkout; the profiler helper lives in tests/)::

    python -m benchmarks.strip.zoo_reach                       # fractions of every model
    python -m benchmarks.strip.zoo_reach --strip --models RegNetX002 ConvNeXtTiny
    python -m benchmarks.strip.zoo_reach --strip --out benchmarks/results/zoo_reach.json
    python -m benchmarks.strip.zoo_reach --keras 3 --strip --out benchmarks/results/zoo_reach_keras3.json

``--keras 3`` builds the models with Keras 3 (``keras.applications`` and keras-hub backbones,
TensorFlow backend; see :mod:`benchmarks.strip.zoo_keras3`).
"""

import argparse
import json
import time
import warnings

import numpy as np

import chipnet_tf
from benchmarks.strip import zoo_keras3
from chipnet_tf.compat import is_keras3_object, keras
from chipnet_tf.io import atomic_write

# The models mobile users care about, then 11 more of keras.applications' families.
MODELS = (
    "RegNetX002",
    "RegNetY002",
    "RegNetX004",
    "RegNetY004",
    "RegNetX016",
    "RegNetY016",
    *zoo_keras3.APPLICATIONS,  # the same models in Keras 3, which has no RegNet
)
KERAS_CV = "keras_cv.MobileNetV3Backbone"
# Reference fractions printed as "before → now": these models' smallest reachable fraction with an
# analysis that did not yet prune through grouped convolutions (RegNet), SE blocks around them
# (RegNetY), hard-swish TF-op layers (MobileNetV3), Conv2D(groups=C) depthwise convolutions and
# LayerScale (ConvNeXt); keras-cv measured the same way at commit 04f6aaf.
BEFORE = {
    KERAS_CV: 0.289,
    "RegNetX002": 0.888,
    "RegNetY002": 0.877,
    "MobileNetV3Small": 0.261,
    "MobileNetV3Large": 0.142,
    "ConvNeXtTiny": 0.068,
}
SIZE = 96
CLASSES = 10


def build(name, size=SIZE, keras_version=2):
    """The model ``name`` (a keras.applications name, or :data:`KERAS_CV`) at ``size``;
    ``keras_version=3``: a model of :data:`benchmarks.strip.zoo_keras3.MODELS`."""
    if keras_version == 3:
        return zoo_keras3.build(name)
    keras.utils.set_random_seed(0)
    if name == KERAS_CV:
        from tests.test_strip_zoo import _keras_cv_mobilenet_v3_small

        return _keras_cv_mobilenet_v3_small((size, size, 3))
    factory = getattr(keras.applications, name)
    return factory(input_shape=(size, size, 3), weights=None, classes=CLASSES, classifier_activation=None)


def smallest_flops_fraction(model):
    """``(fraction, analysis)``: FLOPs of the smallest network the groups allow / dense."""
    analysis = chipnet_tf.analyze(model, warn=False)
    if not analysis.groups:  # nothing prunable: the dense model is the smallest
        return 1.0, analysis
    scores = {g.name: np.ones(g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, 0.01, "flops")
    counts = [int(masks[g.name].sum()) for g in analysis.groups]
    return analysis.spec.fraction(counts, "flops"), analysis


def strip_check(model, analysis, budget=0.1, seed=0):
    """Strips ``model`` under random masks at a FLOPs ``budget``; the row's check values."""
    from tests.flops_oracle import profiler_flops

    keras3 = is_keras3_object(model)
    rng = np.random.default_rng(seed)
    if keras3:
        zoo_keras3.perturb_batchnorm(model, rng)
    for layer in [] if keras3 else model.submodules:  # BatchNorm statistics far from the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    scores = {g.name: rng.normal(size=g.size) for g in analysis.groups}
    masks = chipnet_tf.select_masks(analysis.spec, scores, budget, "flops")
    pruned = chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    x = rng.uniform(0, 255, size=(2, *tuple(model.inputs[0].shape[1:]))).astype("float32")
    wrapped = np.asarray(pruned(x, training=False))
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    report = chipnet_tf.budget_report(model, masks=masks).totals
    flops = chipnet_tf.count_flops(small)
    out = {
        "rel_max_diff": float(np.abs(np.asarray(small(x, training=False)) - wrapped).max() / np.abs(wrapped).max()),
        "params_exact": small.count_params() == report["params"]["kept"],
        "flops_exact": flops == report["flops"]["kept"],
    }
    if keras3:  # the independent count from the graph's ops (the profiler does not see Einsum ops)
        counts = zoo_keras3.independent_counts(small)
        out.update(profiler_exact=counts["total"] == flops, count_flops=flops, independent=counts)
    else:
        out["profiler_exact"] = profiler_flops(small) == flops
    out["flops_fraction"] = report["flops"]["fraction"]
    return out


def row(name, strip=False, keras_version=2):
    start = time.perf_counter()
    model = build(name, keras_version=keras_version)
    fraction, analysis = smallest_flops_fraction(model)
    out = {"model": name, "smallest_flops_fraction": round(fraction, 4), "groups": len(analysis.groups)}
    out["stopped"] = list(analysis.stopped)
    out["inferred"] = sorted(set(analysis.inferred.values()))
    if strip and analysis.groups:
        out.update(strip_check(model, analysis))
    elif strip and keras_version == 3:  # nothing to strip: the dense model's counts
        counts = zoo_keras3.independent_counts(model)
        flops = chipnet_tf.count_flops(model)
        out.update(profiler_exact=counts["total"] == flops, count_flops=flops, independent=counts)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def markdown(rows, keras_version=2):
    """The rows as a Markdown table (Keras 3: the independent count's parts where it differs)."""
    last = "params / FLOPs / profiler = predicted" if keras_version == 2 else "params / FLOPs / independent count exact"
    lines = [
        f"| model | smallest reachable FLOPs fraction{' (before → now)' if keras_version == 2 else ''} "
        f"| stripped vs wrapped, rel. max diff | {last} |",
        "|---|---|---|---|",
    ]
    for r in rows:
        before = BEFORE.get(r["model"]) if keras_version == 2 else None
        reach = (
            f"{before:.3f} → {r['smallest_flops_fraction']:.3f}" if before else f"{r['smallest_flops_fraction']:.3f}"
        )
        if not r["groups"]:
            reach += " (no channel group)"
        diff = f"{r['rel_max_diff']:.1e}" if "rel_max_diff" in r else "—"
        exact = "—"
        if "profiler_exact" in r:
            exact = " / ".join(
                ("yes" if r[k] else "NO") if k in r else "—" for k in ("params_exact", "flops_exact", "profiler_exact")
            )
        if "independent" in r and not r["profiler_exact"]:
            parts = r["independent"]
            exact += (
                f" (count_flops {r['count_flops']:,}; independent {parts['total']:,} = weighted MACs "
                f"{parts['weighted']:,} + attention MACs {parts['activations']:,} + biases {parts['bias']:,})"
            )
        lines.append(f"| {r['model']} | {reach} | {diff} | {exact} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="default: every model of the --keras table")
    parser.add_argument(
        "--keras", type=int, choices=(2, 3), default=2, help="2: tf_keras (default); 3: Keras 3 and keras-hub"
    )
    parser.add_argument("--strip", action="store_true", help="also strip at FLOPs 0.1 and check the counts")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.models is None:
        args.models = list(zoo_keras3.MODELS) if args.keras == 3 else list(MODELS) + [KERAS_CV]
    rows = []
    for name in args.models:
        keras.backend.clear_session()
        rows.append(row(name, strip=args.strip, keras_version=args.keras))
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows, args.keras))
    if args.out:
        head = {"size": SIZE, "budget_for_strip_check": 0.1}
        if args.keras == 3:
            head.update(zoo_keras3.HEADER)
        text = json.dumps({**head, "rows": rows}, indent=1) + "\n"
        atomic_write(args.out, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
