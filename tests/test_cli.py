"""The chipnet-tf command line, run as a subprocess like a user would."""

import os
import subprocess
import sys

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import architectures, export
from chipnet_tf.compat import keras, tf

BIN = os.path.join(os.path.dirname(sys.executable), "chipnet-tf")


def run(*args, script=False):
    cmd = [BIN] if script else [sys.executable, "-m", "chipnet_tf.cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, digits):
    """A wrapped digits model saved in every checkpoint format, plus masks and data files."""
    x, y, x_test, _ = digits
    tmp = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    dense = architectures.small_cnn(width=8)
    pruned = chipnet_tf.prune_low_budget(dense, budget=0.4, budget_type="flops")
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(0).normal(size=ctl.total).astype("float32"))
    pruned.save(tmp / "wrapped.keras")
    pruned.save(tmp / "wrapped.h5")
    pruned.save(tmp / "wrapped_savedmodel", save_format="tf")
    prefix = tf.train.Checkpoint(model=pruned).write(str(tmp / "ckpt" / "wrapped"))
    np.save(tmp / "calib.npy", x[:100])
    np.save(tmp / "verify.npy", x_test[:100])
    chipnet_tf.save_masks(tmp / "masks.npz", chipnet_tf.get_masks(pruned))
    (tmp / "garbage.keras").write_bytes(b"not a zip file")
    return {"dir": tmp, "pruned": pruned, "prefix": prefix, "x": x_test[:32]}


@pytest.mark.parametrize("source", ["wrapped.keras", "wrapped.h5", "wrapped_savedmodel"])
def test_strip_every_checkpoint_format(ckpts, source, tmp_path):
    out = tmp_path / ("small.keras" if source != "wrapped_savedmodel" else "small_savedmodel")
    code, stdout, stderr = run("strip", ckpts["dir"] / source, out)
    assert code == 0, stderr[-2000:]
    small = keras.models.load_model(out)
    want = chipnet_tf.strip_pruning(ckpts["pruned"])
    assert small.count_params() == want.count_params()
    assert f"{small.count_params():,} params" in stdout
    np.testing.assert_allclose(small.predict(ckpts["x"], verbose=0), want.predict(ckpts["x"], verbose=0), atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == [out.name]  # no temporary leftovers


def test_report_prints_the_budget_table(ckpts):
    code, stdout, stderr = run("report", ckpts["dir"] / "wrapped.keras", script=True)
    assert code == 0, stderr[-2000:]
    report = chipnet_tf.budget_report(ckpts["pruned"])
    assert "ChipNet budget: 0.4 of flops" in stdout
    assert f"{report.totals['flops']['kept']:,.0f}" in stdout


def test_export_int8_from_a_weights_checkpoint_with_the_recipe(ckpts, tmp_path):
    out = tmp_path / "model_int8.tflite"
    d = ckpts["dir"]
    code, stdout, stderr = run(
        "export",
        ckpts["prefix"],
        out,
        "--model=small_cnn",
        '--model_kwargs={"width": 8}',
        "--budget=0.4",
        "--budget_type=flops",
        "--quantization=int8",
        f"--representative_data={d / 'calib.npy'}",
        "--io_type=int8",
        f"--verify_data={d / 'verify.npy'}",
    )
    assert code == 0, stderr[-2000:]
    assert "(int8)" in stdout
    interp = export.interpreter(str(out))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    small = chipnet_tf.strip_pruning(ckpts["pruned"])
    assert export.verify_tflite(str(out), small, np.load(d / "verify.npy")).top1_agreement >= 0.95


def test_strip_dense_model_with_masks_and_round_to(ckpts, tmp_path):
    dense_path = tmp_path / "dense.keras"
    architectures.small_cnn(width=8).save(dense_path)
    out = tmp_path / "small.keras"
    code, _, stderr = run("strip", dense_path, out, f"--masks={ckpts['dir'] / 'masks.npz'}")
    assert code == 0, stderr[-2000:]
    assert keras.models.load_model(out).count_params() == chipnet_tf.strip_pruning(ckpts["pruned"]).count_params()


def _one_line_error(code, stderr, text):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert text in lines[-1], lines[-1]


def test_bad_inputs_are_one_line_errors(ckpts, tmp_path):
    d = ckpts["dir"]
    (tmp_path / "model.txt").write_text("hello")
    cases = [
        (("strip", tmp_path / "missing.keras", tmp_path / "o.keras"), "no such file, directory or checkpoint prefix"),
        (("strip", d / "garbage.keras", tmp_path / "o.keras"), "garbage.keras: cannot load the model"),
        (("report", tmp_path / "model.txt"), "unsupported file type"),
        (("strip", ckpts["prefix"], tmp_path / "o.keras"), "needs the model recipe: --model=NAME"),
        (("strip", ckpts["prefix"], tmp_path / "o.keras", "--model=nope"), "--model=nope is unknown"),
        (("strip", d / "wrapped.keras", tmp_path / "o.tflite"), "OUT must end in .keras or .h5"),
        (("strip", d / "wrapped.keras", tmp_path / "no_dir" / "o.keras"), "does not exist"),
        (
            ("export", d / "wrapped.keras", tmp_path / "o.tflite", "--quantization=int8"),
            "needs a representative_dataset",
        ),
    ]
    for args, text in cases:
        code, _, stderr = run(*args)
        _one_line_error(code, stderr, text)
    assert sorted(os.listdir(tmp_path)) == ["model.txt"]


def test_failed_export_leaves_the_existing_output_untouched(ckpts, tmp_path):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"previous")
    code, _, stderr = run(
        "export",
        ckpts["dir"] / "wrapped.keras",
        out,
        "--quantization=float16",
        f"--verify_data={ckpts['dir'] / 'verify.npy'}",
        "--tolerance=0",
    )
    _one_line_error(code, stderr, "TFLite verification failed")
    assert out.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.tflite"]


def test_usage_errors(ckpts):
    code, _, stderr = run("shrink", "x")
    assert code == 1 and "expected a command: report, strip, export" in stderr and "Traceback" not in stderr
    code, _, stderr = run("export", ckpts["dir"] / "wrapped.keras", "o.tflite", "--quantization=int4")
    assert code != 0 and "Traceback" not in stderr
    assert "value should be one of <none|dynamic|float16|int8>" in stderr
