"""Timing one-op TFLite models in the LiteRT interpreter (XNNPACK): conversion, interleaved
timing, the channel-tile probe and the per-invoke overhead. What :mod:`chipnet_tf.latency.profiler`
builds a latency table from, and what the latency benchmark (``python -m benchmarks.latency``) times with."""

import gc
import statistics
import time
from importlib import metadata

import numpy as np

from chipnet_tf import litert
from chipnet_tf.compat import keras as tf_keras
from chipnet_tf.litert import convert_traced

PROBE_WIDTHS = tuple(range(1, 49))
PROBE_INPUT = (16, 16, 64)


# -- one-op models ------------------------------------------------------------------------
def ready_interpreter(data, threads):
    """A LiteRT interpreter (default delegates: XNNPACK) with random inputs set."""
    interp = litert.interpreter(data, num_threads=threads, fallback=False)
    rng = np.random.default_rng(1)
    for inp in interp.get_input_details():
        dtype = inp["dtype"]
        if np.issubdtype(dtype, np.integer):
            x = rng.integers(-100, 100, size=inp["shape"]).astype(dtype)
        else:
            x = rng.standard_normal(inp["shape"]).astype(dtype)
        interp.set_tensor(inp["index"], x)
    return interp


def time_invocations(interp, n):
    """``n`` timings (seconds) of ``interp.invoke()``, each timed alone."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        interp.invoke()
        out.append(time.perf_counter() - t0)
    return out


def time_interleaved(interps, rounds=3, target_s=2e-3, max_invocations=30):
    """Seconds per invocation of each interpreter: the smallest of its round medians, timed
    in interleaved rounds (each round times every interpreter; invocations per round sized
    to about ``target_s``).

    The smallest round, not the median: on a machine shared with other work a round that
    ran beside another process is slower, never faster, so the fastest round estimates
    the op's own cost. A table measured under a load of 5-10 on 2 cores with medians had
    some layers at 2-6x their unloaded cost (docs/design/latency-predictor.md).
    """
    counts = []
    for it in interps:
        first = time_invocations(it, 2)[-1]
        counts.append(int(np.clip(round(target_s / max(first, 1e-6)), 3, max_invocations)))
    medians = [[] for _ in interps]
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for i, it in enumerate(interps):
                medians[i].append(statistics.median(time_invocations(it, counts[i])))
    finally:
        gc.enable()
    return [min(m) for m in medians]


def one_op_model(signature, c_in, c_out, keras_module=None):
    """A model of one layer call of ``signature`` at ``c_in`` input / ``c_out`` output channels
    (an attention layer: ``c_in`` heads).

    ``keras_module`` is the Keras the profiled model was built with (tf_keras when None):
    the signature's config is that Keras' layer config, and the one-op model is built
    from it with the same Keras (Keras 3's configs carry keys tf_keras does not accept).
    """
    keras = keras_module or tf_keras
    cls = getattr(keras.layers, signature["class"])
    config = dict(signature["config"])
    kind = signature["kind"]
    if kind == "attention":
        return _one_attention_model(keras, cls, signature, config, c_in, c_out)
    if kind == "producer":
        key = "units" if "units" in config else "filters"
        config[key] = int(c_out)
        shapes = [(*signature["in_shapes"][0][:-1], int(c_in))]
    else:
        shapes = [(*s[:-1], int(c_out)) for s in signature["in_shapes"]]
    layer = cls.from_config(config)
    inputs = [keras.Input(s, batch_size=1) for s in shapes]
    out = layer(inputs if kind == "merge" else inputs[0])
    return keras.Model(inputs, out), shapes


def _one_attention_model(keras, cls, signature, config, heads, width):
    """An attention layer with ``heads`` heads writing ``width`` channels. Inputs as wide as
    the dense layer's output are the stream it reads and writes (a transformer's
    self-attention): they take ``width`` channels too; other inputs keep their widths."""
    dense_out = signature["out_shape"][-1]
    shapes = [(*s[:-1], int(width) if s[-1] == dense_out else s[-1]) for s in signature["in_shapes"]]
    for key in ("query_shape", "key_shape", "value_shape"):  # tf_keras builds from these: built by the call
        if key in config:
            config[key] = None
    config.update(num_heads=int(heads), output_shape=int(width))
    layer = cls.from_config(config)
    inputs = [keras.Input(s, batch_size=1) for s in shapes]
    out = layer(inputs[0], inputs[1] if len(inputs) > 1 else inputs[0], *inputs[2:3])
    return keras.Model(inputs, out), shapes


def channel_step(widths, latencies, jump=1.4, span=3):
    """The channel tile a latency-vs-width staircase shows, or None when it shows none.

    The first width w after which latency jumps by more than ``jump``x and stays up: the
    median of the next ``span`` widths exceeds ``jump`` x the median of w and the ``span - 1``
    widths before it (with a tile of w channels, w + 1 channels take two tiles). One noisy
    timing does not make a step, and neither does a level shift of the machine's load: where
    the widths reach 2w, a tile must step there too (by half of ``jump``'s excess, as three
    tiles cost 1.5x two). Under a load of ~3 on 2 cores, an int8 depthwise probe once read a
    tile of 2 where the idle machine shows 16 (docs/design/latency-predictor.md).
    """
    lat = [float(t) for t in latencies]
    widths = [int(w) for w in widths]

    def steps(i, ratio):
        before = statistics.median(lat[max(0, i - span + 1) : i + 1])
        after = statistics.median(lat[i + 1 : i + 1 + span])
        return lat[i + 1] > ratio * lat[i] and after > ratio * before

    for i in range(len(lat) - 1):
        if not steps(i, jump):
            continue
        w = widths[i]
        if 2 * w in widths and widths.index(2 * w) + span < len(lat):
            if not steps(widths.index(2 * w), 1 + (jump - 1) / 2):
                continue
        return w
    return None


# -- runtime, tiles, overhead ---------------------------------------------------------------
def runtime_meta(threads, quantization):
    try:
        version = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:  # pragma: no cover - depends on the install
        version = "unknown"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"runtime": f"ai-edge-litert {version}", "threads": int(threads), "quantization": quantization, "cpu": cpu}


def probe_tiles(threads, quantization, rounds=3):
    """``{"conv_out", "conv_in", "depthwise"}``: the channel tiles of this runtime (1 when
    no staircase shows), from one-op models at widths 1..48 (see :func:`channel_step`)."""
    conv_sig = {"class": "Conv2D", "kind": "producer", "config": {"kernel_size": [1, 1]}}
    dw_sig = {"class": "DepthwiseConv2D", "kind": "depthwise", "config": {"kernel_size": [3, 3], "padding": "same"}}
    cases = {
        "conv_out": lambda w: (conv_sig, [list(PROBE_INPUT)], PROBE_INPUT[-1], w),
        "conv_in": lambda w: (conv_sig, [list(PROBE_INPUT)], w, PROBE_INPUT[-1]),
        "depthwise": lambda w: (dw_sig, [[*PROBE_INPUT[:2], w]], w, w),
    }
    tiles = {}
    for name, case in cases.items():
        interps = []
        for w in PROBE_WIDTHS:
            sig, in_shapes, ci, co = case(w)
            model, shapes = one_op_model({**sig, "in_shapes": in_shapes}, ci, co)
            interps.append(ready_interpreter(convert_traced(model, shapes, quantization), threads))
        us = [t * 1e6 for t in time_interleaved(interps, rounds=rounds)]
        tiles[name] = channel_step(PROBE_WIDTHS, us) or 1
    return tiles


def invoke_overhead(threads, quantization):
    """Seconds per ``invoke()`` of a trivial one-op model: what every one-op timing pays once."""
    model, shapes = one_op_model({"class": "Add", "kind": "merge", "config": {}, "in_shapes": [[1], [1]]}, 1, 1)
    interp = ready_interpreter(convert_traced(model, shapes, quantization), threads)
    return time_interleaved([interp], rounds=5, target_s=5e-4, max_invocations=200)[0]
