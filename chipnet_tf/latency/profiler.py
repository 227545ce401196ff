"""Measuring a :class:`chipnet_tf.latency.LatencyTable` with the LiteRT interpreter (the
one-op conversion and timing tools are :mod:`chipnet_tf.latency.timing`).

Every timed layer call (see :mod:`chipnet_tf.latency`) is rebuilt as a one-op model at a
grid of kept input/output widths, converted to TFLite (float32, or int8 with int8 inputs
and outputs so no (de)quantize op is timed) and timed with XNNPACK on ``threads`` threads;
the grid points' models are timed interleaved, smallest round median, minus the
per-invoke overhead of a trivial model. Identical layer configurations are measured once.
The whole dense model and a small network (2 channels per group, else one tile) are timed and the
table calibrated on them (:func:`calibrate`): its lookups scaled, the rest a fixed cost.

Widths are sampled where the runtime's cost changes: XNNPACK computes output channels in
tiles (16 wide for float32 on AVX-512, 8 on ARM NEON), so a width costs like the next
multiple of the tile. A probe of one-op models (a 1x1 conv and a 3x3 depthwise conv with 1..48
channels, :func:`probe_tiles`) finds the tiles; the grids are multiples of them (at most
``max_points`` per axis, evenly spread), and a lookup at hard counts rounds widths up to the
tile. Results are cached per layer configuration, runtime, threads and quantization under
``cache_dir`` (default ``$CHIPNET_TF_CACHE`` or ``~/.cache/chipnet_tf/latency``), and per
whole model, so profiling the same model again costs nothing.

A Keras 3 model (TensorFlow backend) is profiled the same way: its one-op models are built
with Keras 3 from its own layer configs (:func:`chipnet_tf.compat.keras_of`), since a Keras 3
config carries keys tf_keras does not accept. The tile probe and the per-invoke overhead
measure the runtime, not the model, and use tf_keras one-op models for either Keras.
"""

import hashlib
import json
import os
import time
import warnings

import numpy as np

from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.compat import keras, keras_of, non_tensorflow_backend
from chipnet_tf.io import write_json
from chipnet_tf.latency import table as latency_table
from chipnet_tf.latency.timing import (
    invoke_overhead,
    one_op_model,
    probe_tiles,
    ready_interpreter,
    runtime_meta,
    time_interleaved,
)
from chipnet_tf.litert import convert_traced
from chipnet_tf.surgery.strip import strip_pruning

CACHE_VERSION = 1  # of the cached one-op timings
TABLE_VERSION = 5  # of how a table is made from them (5: calibrated at 2 channels per group, no negative fixed cost)


# -- grids ----------------------------------------------------------------------------------
def grid(lo, hi, tile, max_points):
    """Widths to measure between ``lo`` and ``hi``: multiples of ``tile`` (the first one
    at or above ``lo``) and ``hi``, at most ``max_points`` of them, spread geometrically.

    Geometric, not even: a layer's latency is convex in its width at small widths (its data
    leaves the faster caches as it grows) and the interpolation between grid points is
    linear, so the points are closest together where the curve bends most.
    """
    lo, hi = max(1, int(round(lo))), int(round(hi))
    if hi <= lo:
        return [hi]
    first = min(hi, -(-lo // tile) * tile)
    points = list(range(first, hi, tile)) + [hi]
    if len(points) > max_points:
        wanted = np.geomspace(first, hi, max_points)
        picked = {min(points, key=lambda p, w=w: abs(p - w)) for w in wanted}
        points = sorted(picked | {first, hi})
    return points


# -- cache ----------------------------------------------------------------------------------
def default_cache_dir():
    return os.environ.get("CHIPNET_TF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "chipnet_tf", "latency"
    )


def _key(*parts):
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cache_read(cache_dir, key):
    if not cache_dir:
        return None
    path = os.path.join(cache_dir, key + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _cache_write(cache_dir, key, value):
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        write_json(os.path.join(cache_dir, key + ".json"), value)


# -- profile --------------------------------------------------------------------------------
def _measure_entry(signature, in_grid, out_grid, threads, quantization, overhead_s, rounds, keras_module=None):
    interps = []
    for ci in in_grid:
        for co in out_grid:
            model, shapes = one_op_model(signature, ci, co, keras_module)
            interps.append(ready_interpreter(convert_traced(model, shapes, quantization), threads))
    seconds = time_interleaved(interps, rounds=rounds)
    ms = np.maximum(np.asarray(seconds) - overhead_s, 0.0).reshape(len(in_grid), len(out_grid)) * 1e3
    # More channels never cost less; a timing that says so is noise. A monotone table also
    # keeps the hard cut's search (more channels kept -> never less latency) exact.
    ms = np.maximum.accumulate(np.maximum.accumulate(ms, axis=0), axis=1)
    return ms.tolist()


def _whole_model_ms(model, analysis, threads, quantization, representative_dataset, rounds, tile):
    """``(dense ms, small ms, small width)``: the dense model and a small network, timed
    interleaved (their ratio does not move with the machine's load). The small network keeps
    2 channels per group, or one ``tile`` per group when XNNPACK cannot prepare that (a
    degenerate int8 network), or is None when neither runs.

    Not 1 channel per group: XNNPACK runs 1-channel convolutions on a slower path (a 1x1
    conv 1 -> 1 channel of MobileNetV2-CIFAR took 4.4 us, its 1 -> 16 channel version 1.5 us),
    so the 1-channel network is 1.4-1.6x what the table says, where 2, 4, 8, 16 and 32
    channels per group measure within 3 % of it. Calibrated on the 1-channel network, that
    excess became a fixed cost that over-predicted every small network (by 15 % at FLOPs
    0.05; docs/design/latency-predictor.md). The 1-channel network itself is predicted too fast.
    """
    shapes = [tuple(t.shape[1:]) for t in model.inputs]

    def run(m):
        return ready_interpreter(
            convert_traced(m, shapes, quantization, representative_dataset, int8_io=False), threads
        )

    interps, width, errors = [run(model)], None, []
    for w in (2, tile):
        try:
            interps.append(run(strip_pruning(model, masks=small_masks(analysis, w))))
            width = w
            break
        except RuntimeError as e:
            errors.append(str(e).splitlines()[0])
    if width is None:
        warnings.warn(
            f"chipnet_tf: the latency table is not calibrated: LiteRT could not run a small network ({errors[-1]})",
            stacklevel=3,
        )
    times = time_interleaved(interps, rounds=max(rounds, 5), target_s=2e-2)
    return times[0] * 1e3, (times[1] * 1e3 if width else None), width


def small_masks(analysis, width):
    """``width`` channels (at most the group's) per group: the small calibration point."""
    return {g.name: np.arange(g.size) < max(1, min(width, g.size)) for g in analysis.groups}


def calibrate(analysis, entries, dense_ms, small_ms, width):
    """``(scale, fixed_ms)`` with ``scale * lookups + fixed_ms`` equal to the measured dense
    and small networks (``width`` channels per group; ``small_ms`` None: not calibrated).

    One-op models run with their weights and activations in cache; inside the whole model a
    layer's data competes with the others', so the whole model is slower than the sum of its
    one-op timings, by a part that shrinks with the network (MobileNetV2-CIFAR: 7% at dense
    widths). An additive fixed cost put that part into every pruned prediction (the smallest
    networks were predicted 40-60% slower than measured); a scale on the lookups plus the
    truly fixed rest (pooling, padding, invoke) fits both ends.
    """
    table = latency_table.LatencyTable(model="", meta={}, entries=entries, fixed_ms=0.0, dense_ms=0.0)
    spec = latency_table.attach(analysis, table)
    at_dense = spec.value(spec.group_sizes, "latency")
    at_small = spec.value(np.minimum(spec.group_sizes, max(1, width)), "latency")
    if small_ms is not None and at_dense - at_small > 1e-9 * max(at_dense, 1e-12) and dense_ms > small_ms:
        scale = (dense_ms - small_ms) / (at_dense - at_small)
        fixed = dense_ms - scale * at_dense
        if fixed >= 0:
            return scale, fixed
    # The two ends do not determine a positive scale and fixed cost (or there is no small
    # network): scale the lookups to the dense network, no fixed cost. A fixed cost of
    # dense - lookups put 12% of the dense latency into every prediction of ResNet-50-CIFAR
    # int8, whose one-op timings sum to more than its 16-channel network takes: its smallest
    # networks were predicted up to 2.4x too slow (docs/design/latency-predictor.md).
    return dense_ms / at_dense, 0.0


def _measure_entries(
    calls, analysis, tiles, meta, overhead_s, max_points, rounds, cache_dir, progress, keras_module=keras
):
    """Each timed call's grid and values, identical configurations measured once (or read
    from the cache); returns ``(entries, values per configuration, measured keys, cache hits)``.
    The one-op models are built with ``keras_module``, the Keras of the profiled model."""
    threads, quantization = meta["threads"], meta["quantization"]
    # A Keras 3 signature is a Keras 3 layer config: keyed apart from tf_keras' (whose keys stay as they were).
    flavour = () if keras_module is keras else ("keras3",)
    entries, measured, hits, done = {}, {}, 0, {}
    bar = keras.utils.Progbar(len(calls), unit_name="layer") if progress else None
    for i, c in enumerate(calls):
        sig = c["signature"]
        tile_in = int(tiles["conv_in"]) if c["kind"] == "producer" else 1
        tile_out = {"producer": tiles["conv_out"], "attention": tiles["conv_out"], "depthwise": tiles["depthwise"]}.get(
            c["kind"], 1
        )
        in_grid = grid(*latency_table.form_range(analysis.spec, c["f_in"]), tile_in, max_points[0])
        out_grid = grid(*latency_table.form_range(analysis.spec, c["f_out"]), int(tile_out), max_points[1])
        key = _key("entry", meta, sig, in_grid, out_grid, rounds, *flavour)
        if key in done:
            values = done[key]
        else:
            values = _cache_read(cache_dir, key)
            if values is None:
                values = _measure_entry(sig, in_grid, out_grid, threads, quantization, overhead_s, rounds, keras_module)
                _cache_write(cache_dir, key, values)
                measured[key] = True
            else:
                hits += 1
            done[key] = values
        entries[c["name"]] = {
            "kind": c["kind"],
            "signature": sig,
            "in_grid": in_grid,
            "out_grid": out_grid,
            "values": values,
            "tile_in": tile_in,
            "tile_out": int(tile_out),
        }
        if bar is not None:
            bar.update(i + 1)
    return entries, done, measured, hits


def _check_backend(model):
    """A Keras 3 model is profiled on the TensorFlow backend: its one-op models and the whole
    model are converted to TFLite by tracing them with TensorFlow."""
    backend = non_tensorflow_backend(model)
    if backend:
        raise ValueError(
            f"chipnet_tf.latency.profile converts the model to TFLite with TensorFlow, and Keras 3 runs "
            f"{model.name!r} on the {backend} backend: profile it in a process started with "
            "KERAS_BACKEND=tensorflow (model.save('dense.keras'), then chipnet_tf.latency.profile("
            "keras.saving.load_model('dense.keras')).save('table.json')) and load the table here with "
            "chipnet_tf.latency.LatencyTable.load('table.json')."
        )


def profile(
    model,
    threads=1,
    quantization=None,
    representative_dataset=None,
    *,
    exclude=None,
    max_points=(3, 6),
    rounds=5,
    tiles=None,
    cache_dir=None,
    progress=True,
):
    """Measures a :class:`chipnet_tf.latency.LatencyTable` of ``model`` on this machine.

    Args:
        model: the dense model (single input, fixed input shape): tf_keras, or Keras 3 on
            the TensorFlow backend (its one-op models are built with Keras 3 too). A table
            is JSON: profile a JAX or PyTorch model's twin in a process started with
            ``KERAS_BACKEND=tensorflow`` (or its ``.keras`` file there), save the table and
            load it where the model trains.
        threads: LiteRT interpreter threads, as deployed.
        quantization: None (float32) or ``"int8"`` (full-integer post-training
            quantization, as :func:`chipnet_tf.export.to_tflite` makes it).
        representative_dataset: for int8, calibration inputs (N, ...) of the dense model;
            None uses random normal inputs (latency does not depend on calibration).
        exclude: layers excluded from pruning, as given to ``prune_low_budget``.
        max_points: ``(input widths, output widths)`` measured per layer at most.
        rounds: interleaved timing rounds per layer.
        tiles: ``{"conv_out", "conv_in", "depthwise"}`` channel tiles; None measures them
            (:func:`probe_tiles`, about 10 s, cached).
        cache_dir: cache directory; None for the default, False for no cache.
        progress: show a progress bar.

    Returns:
        A :class:`chipnet_tf.latency.LatencyTable`.

    Raises:
        ValueError: unknown quantization, threads < 1, a model without timed layers, or a
            Keras 3 model on another backend than TensorFlow.
    """
    t0 = time.perf_counter()
    _check_backend(model)
    latency_table.check_quantization(quantization)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer. Received: threads={threads!r}")
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    meta = runtime_meta(threads, quantization)
    analysis = graph_lib.analyze(model, exclude=exclude, warn=False)
    calls = latency_table.timed_calls(analysis)
    if not calls:
        raise ValueError(f"Model {model.name!r} has no layer whose latency depends on pruned channels.")
    model_key = _key("model", TABLE_VERSION, meta, model.to_json(), exclude, list(max_points), rounds, tiles)
    cached = _cache_read(cache_dir, model_key)
    if cached is not None:
        table = latency_table.LatencyTable.from_dict(cached)
        table.stats = {**table.stats, "cache_hit": True, "profile_s": time.perf_counter() - t0}
        return table

    if tiles is None:
        tiles_key = _key("tiles", meta)
        tiles = _cache_read(cache_dir, tiles_key) or probe_tiles(threads, quantization)
        _cache_write(cache_dir, tiles_key, tiles)
    overhead_s = invoke_overhead(threads, quantization)
    entries, done, measured, hits = _measure_entries(
        calls, analysis, tiles, meta, overhead_s, max_points, rounds, cache_dir, progress, keras_of(model)
    )
    # Calibrated on the model's own groups: strip_pruning(model, masks) knows no exclude list.
    whole = graph_lib.analyze(model, warn=False) if exclude else analysis
    dense_ms, small_ms, width = _whole_model_ms(
        model, whole, threads, quantization, representative_dataset, rounds, int(tiles["conv_out"])
    )
    scale, fixed_ms = calibrate(whole, entries, dense_ms, small_ms, width or 1)
    for e in entries.values():
        e["values"] = (np.asarray(e["values"]) * scale).tolist()
    stats = {
        "profile_s": time.perf_counter() - t0,
        "timed_calls": len(calls),
        "unique_configurations": len(done),
        "measured": len(measured),
        "cache_hits": hits,
        "one_op_models": sum(np.size(v) for v in done.values()),  # one per grid point of a configuration
        "lookup_points": sum(len(e["in_grid"]) * len(e["out_grid"]) for e in entries.values()),
        "cache_hit": False,
        "max_points": list(max_points),
        "rounds": rounds,
        "calibration": {
            "scale": scale,
            "fixed_ms": fixed_ms,
            "dense_ms": dense_ms,
            "small_ms": small_ms,
            "small_width": width,
        },
    }
    table = latency_table.LatencyTable(
        model=model.name,
        meta={**meta, "tiles": dict(tiles), "invoke_overhead_ms": overhead_s * 1e3},
        entries=entries,
        fixed_ms=fixed_ms,
        dense_ms=dense_ms,
        stats=stats,
    )
    _cache_write(cache_dir, model_key, table.to_dict())
    return table
