"""The chipnet-tf command line, run as a subprocess like a user would."""

import os
import subprocess
import sys

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import architectures, export
from chipnet_tf.compat import keras, tf
from tests.output import assert_no_info_lines

BIN = os.path.join(os.path.dirname(sys.executable), "chipnet-tf")


def run(*args, script=False):
    """Runs chipnet-tf as a user does: the environment as it is (no TF_CPP_MIN_LOG_LEVEL)."""
    cmd = [BIN] if script else [sys.executable, "-m", "chipnet_tf.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
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
    assert_no_info_lines(stdout, stderr)
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
    assert_no_info_lines(stdout, stderr)
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
        (("strip", ckpts["prefix"], tmp_path / "o.keras", "--model=nope"), "--model=nope: Unknown model 'nope'"),
        (("strip", d / "wrapped.keras", tmp_path / "o.tflite"), "OUT must end in .keras or .h5"),
        (("strip", d / "wrapped.keras", tmp_path / "no_dir" / "o.keras"), "does not exist"),
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
    assert "--tolerance" in stderr  # the message names the flag that relaxes it
    assert out.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.tflite"]


def test_usage_errors_exit_2_with_one_line(ckpts, tmp_path):
    cases = [
        (("shrink", "x"), "expected a command: report, strip, export"),
        (("export", ckpts["dir"] / "wrapped.keras", "o.tflite", "--quantization=int4"), "<none|dynamic|float16|int8>"),
        (
            ("export", ckpts["dir"] / "wrapped.keras", tmp_path / "o.tflite", "--quantization=int8"),
            "--quantization=int8 needs --representative_data=x.npy",
        ),
        (("report",), "report expects CHECKPOINT. Received: nothing"),
    ]
    for args, text in cases:
        code, _, stderr = run(*args)
        assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
        assert text in stderr.strip().splitlines()[0] and "chipnet-tf --help" in stderr, stderr
    assert os.listdir(tmp_path) == []


def test_help_lists_commands_and_their_flags_and_exits_0():
    code, stdout, stderr = run("--help", script=True)
    assert code == 0, stderr[-2000:]
    for text in ("report CHECKPOINT", "strip CHECKPOINT OUT", "export CHECKPOINT OUT.tflite", "--round_to=INT"):
        assert text in stdout
    assert "--quantization=none|dynamic|float16|int8" in stdout and "-v, --verbosity" in stdout
    assert "tensor_tracer" not in stdout and "absl.testing" not in stdout  # behind --helpfull
    for args in (("-h",), ("--helpshort",)):
        assert run(*args, script=True)[:2] == (0, stdout)
    code, stdout, stderr = run("report", "--help", script=True)
    assert code == 0 and stdout.startswith("usage: chipnet-tf report CHECKPOINT [flags]"), stderr[-2000:]
    assert "--masks=STRING" in stdout and "--quantization" not in stdout


def test_masks_files_empty_truncated_or_of_another_model_are_one_line_errors(ckpts, tmp_path):
    wrapped = ckpts["dir"] / "wrapped.keras"
    (tmp_path / "empty.npz").write_bytes(b"")
    good = (ckpts["dir"] / "masks.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    chipnet_tf.save_masks(tmp_path / "other.npz", {"conv_a": np.ones(4, bool), "conv_b": np.ones(2, bool)})
    cases = [
        ("empty.npz", "empty.npz' is empty (0 bytes)"),
        ("truncated.npz", "truncated.npz' is not a readable chipnet_tf masks file"),
        ("other.npz", "masks do not match the groups of the model (masks of another model?)"),
    ]
    for name, text in cases:
        code, _, stderr = run("report", wrapped, f"--masks={tmp_path / name}")
        _one_line_error(code, stderr, text)
    assert "unknown ['conv_a', 'conv_b']" in stderr


def test_export_float32_default_tolerance_accepts_rounding_of_large_logits(digits, tmp_path):
    """A float32 conversion that agrees on every prediction passes by default.

    Softmax over logits in the thousands: converting moves the probabilities by ~1.6e-4
    (float32 rounding of the logits), above the old default 1e-4, with 100% top-1 agreement.
    """
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, kernel_initializer=keras.initializers.RandomNormal(stddev=30.0))(inputs)
    h = keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(
        keras.layers.Flatten()(h)
    )
    model = keras.Model(inputs, keras.layers.Softmax()(h))
    x = digits[0][:300]
    report = export.verify_tflite(export.to_tflite(model), model, x)
    assert report.top1_agreement == 1.0 and 1e-4 < report.max_abs_diff < export.DEFAULT_TOLERANCE[None]
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    code, stdout, stderr = run(
        "export", tmp_path / "model.keras", tmp_path / "m.tflite", f"--verify_data={tmp_path / 'x.npy'}"
    )
    assert code == 0, stderr[-2000:]
    assert "(float32)" in stdout and (tmp_path / "m.tflite").exists()


def test_wrapped_files_load_after_import_chipnet_tf_as_the_readme_says(ckpts):
    """A .keras file cannot carry a hint (tf_keras imports nothing a file
    names), so the README documents it: plain tf_keras fails, `import chipnet_tf` first works."""
    script = f"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tf_keras
path = {str(ckpts["dir"] / "wrapped.keras")!r}
try:
    tf_keras.models.load_model(path)
    print("plain: loaded")
except TypeError as e:
    print("plain:", e)
import chipnet_tf
print("after import:", chipnet_tf.prune.is_pruned(tf_keras.models.load_model(path)))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["plain: 'str' object is not callable", "after import: True"]
