"""Randomised property test of strip_pruning on seeded random functional graphs.

For each seed, :func:`tests.random_graphs.random_graph` draws a tiny model (residual
merges, concatenations, depthwise/separable convs, SE multiplies, Flatten -> Dense heads,
nested blocks, two inputs, several outputs, ...); it is pruned with random hard masks and
stripped, and we check that

* the stripped model computes what the gated model computes under the hard masks (and so
  does the mask-transfer path ``strip_pruning(dense, masks=masks)``, every 4th seed),
* every layer's output width is the kept width of its channel layout,
* its parameter count and FLOPs are exactly the ``budget_report`` prediction from the masks,
* (every 10th seed) the FLOPs counted from the stripped model's traced graph
  (:mod:`tests.flops_oracle`) equal ``count_flops``.

Two families: ``test_strip_random_graphs`` (250 seeds in 10 chunks of 25) and
``test_strip_random_graphs_shared_layers`` (graphs that also call a layer or nested model at
two places; 50 seeds). Chunks past the first 100 (resp. 25) seeds are marked ``slow``, so
``-m "not slow"`` runs 125 graphs (about 1.5 min on 2 cores) and a full run 300 (about
3.5 min). ``CHIPNET_RANDOM_GRAPHS=N`` runs N seeds of the first family (N/5 of the second)
and ``CHIPNET_RANDOM_SEED_OFFSET=K`` starts at seed K. A failure lists every failing seed of
its chunk with a one-line description of the graph and the line that reproduces it, e.g.
``.venv/bin/python -c 'from tests.test_strip_random import check_seed; check_seed(86)'``.
"""

import collections
import os
import traceback

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.compat import keras
from tests.flops_oracle import oracle_flops
from tests.random_graphs import (
    ChannelMix,
    all_layers,
    random_graph,
    random_inputs,
    random_masks,
)

CHUNK = 25
NUM_GRAPHS = int(os.environ.get("CHIPNET_RANDOM_GRAPHS", "250"))
SEED_OFFSET = int(os.environ.get("CHIPNET_RANDOM_SEED_OFFSET", "0"))
ORACLE_EVERY = 10
TRANSFER_EVERY = 4


def _chunks(count, fast, prefix=""):
    """Chunks of CHUNK seeds; those past the first ``fast`` seeds are marked slow."""
    out = []
    for start in range(SEED_OFFSET, SEED_OFFSET + count, CHUNK):
        stop = min(start + CHUNK, SEED_OFFSET + count)
        marks = pytest.mark.slow if start - SEED_OFFSET >= fast else ()
        out.append(pytest.param(range(start, stop), id=f"{prefix}seeds{start}-{stop - 1}", marks=marks))
    return out


def _as_list(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def _call(model, xs):
    return _as_list(model(xs if len(xs) > 1 else xs[0], training=False))


def _assert_close(actual, expected, what):
    assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what}: output {i} has shape {a.shape}, expected {e.shape}"
        scale = max(1.0, float(np.abs(e).max()))
        err = float(np.abs(a - e).max())
        assert err <= 1e-4 * scale, f"{what}: output {i} differs by {err:.3g} (output scale {scale:.3g})"


def check_seed(seed, shared=False, oracle=None):
    """Builds ``random_graph(seed, shared)``, prunes it with random masks, strips and checks it."""
    oracle = seed % ORACLE_EVERY == 0 if oracle is None else oracle
    dense = random_graph(seed, shared=shared)
    xs = random_inputs(dense, seed)
    analysis = chipnet_tf.analyze(dense, warn=False)
    mixing = [
        n.name
        for n, k in zip(analysis.graph.nodes, analysis.kinds)
        if isinstance(n.layer, ChannelMix) and k != "opaque"
    ]
    assert not mixing, f"channel-mixing custom layers {mixing} were not left opaque"
    rep_dense = chipnet_tf.budget_report(dense)
    assert rep_dense.totals["params"]["dense"] == dense.count_params(), "budget_report dense params != count_params"
    assert rep_dense.totals["flops"]["dense"] == chipnet_tf.count_flops(dense), (
        "budget_report dense flops != count_flops"
    )
    if not analysis.groups:  # nothing prunable: stripping is a plain rebuild
        small = chipnet_tf.strip_pruning(dense, masks={})
        _assert_close(_call(small, xs), _call(dense, xs), "strip_pruning(dense, masks={}) vs dense")
        expected_params, expected_flops = dense.count_params(), chipnet_tf.count_flops(dense)
    else:
        masks = random_masks(analysis, seed)
        rep = chipnet_tf.budget_report(dense, masks=masks)
        pruned = chipnet_tf.prune_low_budget(dense, budget=0.5, budget_type="flops")
        chipnet_tf.apply_masks(pruned, masks)
        small = chipnet_tf.strip_pruning(pruned, masks=masks)
        expected = _call(pruned, xs)
        _assert_close(_call(small, xs), expected, "strip_pruning(pruned) vs pruned under hard masks")
        if seed % TRANSFER_EVERY == 0:  # the mask-transfer path: a dense model and masks
            transferred = chipnet_tf.strip_pruning(dense, masks=masks)
            _assert_close(_call(transferred, xs), expected, "strip_pruning(dense, masks) vs pruned under hard masks")
        widths = collections.defaultdict(list)  # layer name -> output width per call, in call order
        for fnode in graph_lib.flatten(small).nodes:
            widths[fnode.name].append(int(fnode.out_shapes[0][-1]))
        calls = collections.Counter()
        for fnode in analysis.graph.nodes:  # every layer's output width is its layout's kept width
            segments, repeat = analysis.layouts[fnode.out_keys[0]]
            kept = repeat * sum(n if g is None else int(masks[analysis.groups[g].name].sum()) for g, n in segments)
            got = widths[fnode.name][calls[fnode.name]]
            calls[fnode.name] += 1
            assert got == kept, f"layer {fnode.name!r} of the stripped model has {got} output channels, expected {kept}"
        expected_params = rep.totals["params"]["kept"]
        expected_flops = rep.totals["flops"]["kept"]
    assert small.count_params() == expected_params, (
        f"stripped count_params {small.count_params()} != predicted {expected_params}"
    )
    flops = chipnet_tf.count_flops(small)
    assert flops == expected_flops, f"count_flops(stripped) {flops} != predicted {expected_flops}"
    if oracle:
        independent = oracle_flops(small)
        assert independent == flops, f"FLOPs of the traced graph's ops {independent} != count_flops(stripped) {flops}"


def describe(model):
    """A one-line summary of a random graph, to tell failing seeds apart at a glance."""
    flat = graph_lib.flatten(model)
    calls = collections.Counter(id(n.layer) for n in flat.nodes)
    types = collections.Counter(type(layer).__name__ for layer in all_layers(model))
    tags = []
    if any(c > 1 for c in calls.values()):
        tags.append("shared layer: " + ", ".join(sorted({n.name for n in flat.nodes if calls[id(n.layer)] > 1})))
    softmax = [
        layer.name
        for layer in all_layers(model)
        if not isinstance(layer, keras.layers.Activation)
        and getattr(getattr(layer, "activation", None), "__name__", None) == "softmax"
        and layer.name not in {n.name for n in flat.nodes if n.out_keys[0] in flat.output_keys}
    ]
    if softmax:
        tags.append("producer with inline softmax: " + ", ".join(softmax))
    if any(isinstance(layer, keras.Model) for layer in model.layers):
        tags.append("nested")
    tags.append(f"{len(model.inputs)} input(s), {len(model.outputs)} output(s)")
    tags.append(", ".join(f"{k}x{v}" for k, v in sorted(types.items()) if k != "InputLayer"))
    return "; ".join(tags)


def _run(seeds, shared):
    failures = []
    for seed in seeds:
        keras.backend.clear_session()  # the global Keras graph otherwise grows with every model
        try:
            check_seed(seed, shared=shared)
        except Exception as e:  # noqa: BLE001 - every failing seed of the chunk is reported
            frames = traceback.extract_tb(e.__traceback__)
            ours = [f for f in frames if "/chipnet_tf/" in f.filename or "/tests/" in f.filename]
            where = (ours or frames)[-1]
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            try:
                summary = describe(random_graph(seed, shared=shared))
            except Exception as d:  # noqa: BLE001
                summary = f"(cannot describe: {d})"
            args = f"{seed}, shared=True" if shared else f"{seed}"
            failures.append(
                f"seed {seed}: {type(e).__name__}: {message}\n"
                f"    raised at {os.path.relpath(where.filename)}:{where.lineno} ({where.name})\n"
                f"    graph: {summary}\n"
                "    reproduce (from the checkout): .venv/bin/python -c "
                f"'from tests.test_strip_random import check_seed; check_seed({args})'"
                f"  (model: tests.random_graphs.random_graph({args}))"
            )
    family = "shared-layer graphs" if shared else "random graphs"
    assert not failures, f"{len(failures)} of {len(seeds)} {family} failed:\n" + "\n".join(failures)


_QUIET = pytest.mark.filterwarnings(
    "ignore:chipnet_tf. these layers cannot be seen through:UserWarning",
    "ignore:chipnet_tf. layer .* has no registered rule:UserWarning",
)


@_QUIET
@pytest.mark.parametrize("seeds", _chunks(NUM_GRAPHS, fast=100))
def test_strip_random_graphs(seeds):
    _run(seeds, shared=False)


@_QUIET
@pytest.mark.parametrize("seeds", _chunks(max(1, NUM_GRAPHS // 5), fast=25, prefix="shared-"))
def test_strip_random_graphs_shared_layers(seeds):
    _run(seeds, shared=True)
