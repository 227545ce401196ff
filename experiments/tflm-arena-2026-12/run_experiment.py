"""Feasibility experiment: predict TFLite Micro's arena (head) and the .tflite size from the flatbuffer.

Run (from this directory):

    TF_USE_LEGACY_KERAS=1 PYTHONPATH=/work/tflm-pkgs nice -n 10 /work/main/.venv/bin/python run_experiment.py \
        --variants 10 --out results.json

For each of 4 small int8 CNN families it converts the reference widths plus N random channel-width
variants, loads each with TFLite Micro's Python interpreter (RecordingMicroAllocator), captures
`print_allocations()` (written by TFLM's DebugLog to the C stderr, fd 2), and compares the
reported head with tflm_predict.predict_head(). `--probe K` also binary-searches the smallest
arena_size that works for the first K variants of each family (in subprocesses: a too-small
arena can segfault the wrapper).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflm_predict  # noqa: E402

L = keras.layers


def _cbr(x, c, k=3, s=1, relu6=False):
    x = L.Conv2D(c, k, strides=s, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU(6.0 if relu6 else None)(x)


def plain(w):  # 28x28x1 conv chain with a max-pool
    i = keras.Input((28, 28, 1))
    x = _cbr(i, w["c1"])
    x = _cbr(x, w["c2"])
    x = L.MaxPool2D()(x)
    x = _cbr(x, w["c3"], s=2)
    x = _cbr(x, w["c4"])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="plain")


def resnet(w):  # 32x32x3, two basic blocks (identity Add, then projection Add with stride 2)
    i = keras.Input((32, 32, 3))
    x = _cbr(i, w["c0"])
    y = _cbr(x, w["b1"])
    y = L.BatchNormalization()(L.Conv2D(w["c0"], 3, padding="same", use_bias=False)(y))
    x = L.ReLU()(L.Add()([x, y]))
    y = _cbr(x, w["b2"], s=2)
    y = L.BatchNormalization()(L.Conv2D(w["c1"], 3, padding="same", use_bias=False)(y))
    sc = L.BatchNormalization()(L.Conv2D(w["c1"], 1, strides=2, use_bias=False)(x))
    x = L.ReLU()(L.Add()([sc, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="resnet")


def _ir(x, expand, out, s, residual):
    y = _cbr(x, expand, k=1, relu6=True)
    y = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(y)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    y = L.BatchNormalization()(L.Conv2D(out, 1, use_bias=False)(y))
    return L.Add()([x, y]) if residual else y


def mbv2(w):  # 32x32x3, MobileNetV2 inverted-residual blocks
    i = keras.Input((32, 32, 3))
    x = _cbr(i, w["c0"], s=2, relu6=True)
    x = _ir(x, w["e1"], w["c0"], 1, True)
    x = _ir(x, w["e2"], w["c1"], 2, False)
    x = _ir(x, w["e3"], w["c1"], 1, True)
    x = _cbr(x, w["head"], k=1, relu6=True)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="mbv2")


def concat(w):  # 28x28x1, inception-like: 1x1 and 3x3 branches concatenated with the stem
    i = keras.Input((28, 28, 1))
    x = _cbr(i, w["c0"])
    a = _cbr(x, w["a"], k=1)
    b = _cbr(x, w["b"], k=3)
    x = L.Concatenate()([x, a, b])
    x = _cbr(x, w["c2"], s=2)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="concat")


def widehead(w):  # 8x8x3 input, a wide last conv then global pooling: MEAN's scratch sits on the peak
    i = keras.Input((8, 8, 3))
    x = _cbr(i, w["c1"])
    x = _cbr(x, w["c2"], k=1)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="widehead")


FAMILIES = {
    "plain": (plain, dict(c1=16, c2=32, c3=32, c4=64)),
    "resnet": (resnet, dict(c0=16, b1=16, c1=32, b2=32)),
    "mbv2": (mbv2, dict(c0=16, e1=64, e2=96, c1=24, e3=144, head=64)),
    "concat": (concat, dict(c0=16, a=16, b=24, c2=48)),
    "widehead": (widehead, dict(c1=16, c2=256)),
}


def convert_float(model):
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def convert_int8(model, seed=0):
    shape = model.input_shape[1:]
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((8, *shape)).astype(np.float32)

    def rep():
        for x in data:
            yield [x[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


class CaptureFd:
    """Capture what C/C++ code writes to a file descriptor (TFLM's DebugLog writes to stderr)."""

    def __init__(self, fd=2):
        self.fd, self.text = fd, ""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(self.fd)
        os.dup2(self.tmp.fileno(), self.fd)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, self.fd)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode(errors="replace")
        self.tmp.close()


def tflm_measure(model_bytes, arena_size=8 << 20):
    from tflite_micro.python.tflite_micro import runtime

    t0 = time.perf_counter()
    with CaptureFd() as cap_init:
        interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    t1 = time.perf_counter()
    shape = interp.get_input_details(0)["shape"]
    dtype = interp.get_input_details(0)["dtype"]
    interp.set_input(np.zeros(shape, dtype), 0)
    interp.invoke()
    t2 = time.perf_counter()
    with CaptureFd() as cap:
        interp.print_allocations()
    rep = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", cap.text)
        rep[key] = int(m.group(1))
    rep["breakdown"] = {m.group(1): int(m.group(2)) for m in re.finditer(r"'([^']+)' used (\d+) bytes", cap.text)}
    rep["init_s"], rep["invoke_s"] = t1 - t0, t2 - t1
    rep["init_log"] = cap_init.text.strip()
    return rep


PROBE = """
import sys
from tflite_micro.python.tflite_micro import runtime
runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=int(sys.argv[2]))
"""


def min_arena(path, lo, hi):
    """Smallest arena_size (16-byte steps) for which the interpreter allocates, by bisection."""

    def ok(n):
        r = subprocess.run([sys.executable, "-c", PROBE, path, str(n)], capture_output=True, env=os.environ)
        return r.returncode == 0

    assert ok(hi), "upper bound does not work"
    lo = lo // 16 * 16
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def random_widths(base, rng):
    return {k: int(max(1, round(v * rng.uniform(0.1, 1.5)))) for k, v in base.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--probe", type=int, default=2, help="min-arena bisection for the first K models per family")
    ap.add_argument("--out", default="results.json")
    ap.add_argument("--float", action="store_true", help="float32 models (no quantization) instead of int8")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--keep", default="", help="directory to keep the .tflite files in")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for fam in args.families.split(","):
        build, base = FAMILIES[fam]
        widths = [dict(base)] + [random_widths(base, rng) for _ in range(args.variants)]
        for k, w in enumerate(widths):
            keras.backend.clear_session()
            t0 = time.perf_counter()
            data = convert_float(build(w)) if args.float else convert_int8(build(w))
            t_conv = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = tflm_predict.predict_head(data)
            pred_noscratch = tflm_predict.predict_head(data, include_scratch=False)
            t_pred = time.perf_counter() - t0
            meas = tflm_measure(data)
            parts = tflm_predict.flash_parts(data)
            row = dict(
                family=fam,
                dtype="float32" if args.float else "int8",
                variant=k,
                widths=w,
                file_bytes=len(data),
                **parts,
                head=meas["head"],
                tail=meas["tail"],
                total=meas["total"],
                breakdown=meas["breakdown"],
                pred_head=pred["head"],
                pred_head_noscratch=pred_noscratch["head"],
                live_lower_bound=pred["lower_bound"],
                n_planned=pred["n_buffers"],
                tail_width_term=tflm_predict.tail_width_term(data),
                convert_s=t_conv,
                predict_s=t_pred,
                tflm_init_s=meas["init_s"],
                tflm_invoke_s=meas["invoke_s"],
            )
            if k < args.probe:
                with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
                    f.write(data)
                t0 = time.perf_counter()
                row["min_arena"] = min_arena(f.name, meas["total"] // 2, 2 * meas["total"] + 65536)
                row["probe_s"] = time.perf_counter() - t0
                os.unlink(f.name)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                with open(os.path.join(args.keep, f"{fam}_{k}.tflite"), "wb") as f:
                    f.write(data)
            rows.append(row)
            print(
                f"{fam:7s} v{k:<2d} head {meas['head']:7d} pred {pred['head']:7d} "
                f"(no scratch {pred_noscratch['head']:7d}, live LB {pred['lower_bound']:7d}) tail {meas['tail']:6d} "
                f"file {len(data):7d} w {parts['weights']:7d} q {parts['quant']:5d} "
                f"min_arena {row.get('min_arena', '-')} conv {t_conv:.1f}s tflm {meas['init_s'] * 1e3:.1f}ms "
                f"pred {t_pred * 1e3:.1f}ms {w}",
                flush=True,
            )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
