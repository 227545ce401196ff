"""Latency tables and the chipnet-tf command line for Keras 3 models, beside their tf_keras twins.

A Keras 3 model (TensorFlow backend) is profiled like its tf_keras twin (``tests/twins.py``):
its one-op models are built with Keras 3, and the table has the twin's entries. The CLI reads
``.keras``/``.h5`` files saved by Keras 3 with Keras 3. Tests assert structure and the
table's own numbers, never wall-clock values.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import latency
from chipnet_tf.compat import is_keras3_object, tf
from chipnet_tf.compat import keras as tf_keras
from chipnet_tf.io import saved_keras_version
from chipnet_tf.latency import profiler as lp
from tests.latency_oracle import random_pruned, reference_ms, stripped_widths
from tests.twins import (
    BACKEND,
    FLAVOURS,
    build,
    keras_of_flavour,
    ops_between_layers,
    random_data,
    residual,
    separable,
    to_numpy,
)

TILES = {"conv_out": 4, "conv_in": 1, "depthwise": 4}  # as tests/test_latency.py: no tile probe
POINTS = (2, 3)
on_tensorflow = pytest.mark.skipif(BACKEND != "tensorflow", reason="profiling and TFLite need the TensorFlow backend")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("latency_cache"))
    for quantization in (None, "int8"):
        lp._cache_write(path, lp._key("tiles", lp.runtime_meta(1, quantization)), TILES)
    return path


@pytest.fixture(scope="module")
def profiled(cache):
    """``profiled(flavour, arch)``: the dense model and its table, profiled once per module."""
    done = {}

    def get(flavour, arch=residual):
        key = (flavour, arch.__name__)
        if key not in done:
            model = build(flavour, arch)
            done[key] = model, latency.profile(model, max_points=POINTS, cache_dir=cache, progress=False)
        return done[key]

    return get


# -- profiling ------------------------------------------------------------------------------
@on_tensorflow
@pytest.mark.parametrize("arch", [residual, separable], ids=["residual", "separable"])
def test_keras3_table_has_the_tf_keras_twins_entries(profiled, arch):
    """Same timed calls, kinds, grids, tiles, layer classes and shapes as the twin's table; the
    values are this machine's, so only their shape, monotonicity and sum are checked."""
    _, old = profiled("tf_keras", arch)
    model, new = profiled("keras3", arch)
    assert list(new.entries) == list(old.entries)
    for name, e in new.entries.items():
        twin = old.entries[name]
        for key in ("kind", "in_grid", "out_grid", "tile_in", "tile_out"):
            assert e[key] == twin[key], (name, key)
        for key in ("class", "kind", "in_shapes", "out_shape"):
            assert e["signature"][key] == twin["signature"][key], (name, key)
        v = np.asarray(e["values"])
        assert v.shape == (len(e["in_grid"]), len(e["out_grid"]))
        assert (np.diff(v, axis=0) >= 0).all() and (np.diff(v, axis=1) >= 0).all()
    assert new.model == model.name and new.meta["tiles"] == TILES and new.stats["cache_hit"] is False
    assert new.fixed_ms + sum(e["values"][-1][-1] for e in new.entries.values()) == pytest.approx(new.dense_ms)
    assert new.predict_ms(model) == pytest.approx(new.dense_ms)
    if arch is separable:
        assert new.entries["dw"]["kind"] == "depthwise" and new.entries["dw"]["in_grid"] == [1]


@on_tensorflow
def test_keras3_profile_again_hits_the_cache(profiled, cache):
    model, table = profiled("keras3")
    again = latency.profile(model, max_points=POINTS, cache_dir=cache, progress=False)
    assert again.stats["cache_hit"] is True and again.entries == table.entries


def test_keras_ops_between_layers_are_untimed_like_tf_op_layers():
    """keras.ops.add/multiply/relu/concatenate between layers are, like tf_keras' TF-op layers
    (``a + b``), not timed: their cost is in the calibrated fixed cost. The timed calls and
    the ranges of their channel forms are the same in both Kerases."""
    K3, ops = keras_of_flavour("keras3")
    K3.utils.set_random_seed(0)
    new = chipnet_tf.analyze(ops_between_layers(K3, ops), warn=False)
    old_model = _tf_op_twin()
    old = chipnet_tf.analyze(old_model, warn=False)
    assert {type(layer).__name__ for layer in old_model.layers} >= {"TFOpLambda"}

    def calls(analysis):
        return [
            (
                c["name"],
                c["kind"],
                latency.form_range(analysis.spec, c["f_in"]),
                latency.form_range(analysis.spec, c["f_out"]),
            )
            for c in latency.timed_calls(analysis)
        ]

    assert calls(new) == calls(old)
    assert [c[0] for c in calls(new)] == ["conv_a", "conv_b", "gate", "head", "fc"]
    op_nodes = [n.name for n in new.graph.nodes if not isinstance(n.layer, K3.layers.Layer)]
    assert len(op_nodes) == 4  # add, relu, multiply, concatenate


def _tf_op_twin():
    """tests/twins.ops_between_layers with TensorFlow ops (TF-op layers) in tf_keras."""
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    x = tf_keras.Input((8, 8, 3), name="img")
    a = L.Conv2D(6, 3, padding="same", name="conv_a")(x)
    b = L.Conv2D(6, 3, padding="same", name="conv_b")(x)
    s = tf.nn.relu(a + b)
    m = s * L.Conv2D(6, 1, activation="sigmoid", name="gate")(s)
    c = tf.concat([m, a], axis=-1)
    c = L.Conv2D(5, 3, name="head")(c)
    g = L.GlobalAveragePooling2D(name="gap")(c)
    return tf_keras.Model(x, L.Dense(3, name="fc")(g))


@on_tensorflow
def test_keras3_ops_model_profiles_with_the_ops_in_the_fixed_cost(cache):
    K3, ops = keras_of_flavour("keras3")
    K3.utils.set_random_seed(0)
    model = ops_between_layers(K3, ops)
    table = latency.profile(model, max_points=(2, 2), cache_dir=cache, progress=False)
    assert list(table.entries) == ["conv_a", "conv_b", "gate", "head", "fc"]
    assert table.fixed_ms >= 0 and table.predict_ms(model) == pytest.approx(table.dense_ms)


# -- pruning for latency ----------------------------------------------------------------------
@on_tensorflow
@pytest.mark.parametrize("budget", [0.8, 0.55])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_latency_budget_masks_meet_the_tables_prediction(profiled, flavour, budget):
    """Hard masks of a latency-wrapped model of either Keras meet the budget by the table's
    prediction, and the report's kept latency is the table's lookups at the stripped widths."""
    model, table = profiled(flavour)
    pruned = random_pruned(model, table, budget, seed=int(budget * 10))
    assert is_keras3_object(pruned) == (flavour == "keras3")
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(pruned, masks=masks)
    row = report.totals["latency"]
    assert row["dense"] == pytest.approx(table.dense_ms)
    assert row["kept"] <= budget * row["dense"] * (1 + 1e-9) or all(m.sum() == 1 for m in masks.values())
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    assert is_keras3_object(small) == (flavour == "keras3")
    oracle = table.fixed_ms + sum(
        reference_ms(e, *stripped_widths(small, name, e["kind"])) for name, e in table.entries.items()
    )
    assert row["kept"] == pytest.approx(oracle, rel=1e-9)
    assert table.predict_ms(model, masks=masks) == pytest.approx(oracle, rel=1e-9)
    assert "latency (predicted)" in str(report)


@on_tensorflow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_latency_search_fits_and_keras_file_keeps_the_table(profiled, flavour, tmp_path):
    """A short search at a latency budget of 0.5: fit logs the budget, the hard masks meet it
    by the table, and a ``.keras`` round trip keeps the table and the masks."""
    model, table = profiled(flavour)
    pruned = chipnet_tf.prune_low_budget(model, 0.5, "latency", latency_table=table)
    x, y = random_data((16, 16, 3), n=32)
    pruned.compile(chipnet_tf.search_optimizer(12, model=pruned), "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="optimizer steps"):
        history = pruned.fit(x, y, epochs=3, batch_size=8, callbacks=[chipnet_tf.UpdatePruningStep()], verbose=0)
    assert len(history.history["budget"]) == 3
    masks = chipnet_tf.get_masks(pruned)
    kept = chipnet_tf.budget_report(pruned, masks=masks).totals["latency"]["kept"]
    assert kept <= 0.5 * table.dense_ms * (1 + 1e-9) or all(m.sum() == 1 for m in masks.values())
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    K, _ = keras_of_flavour(flavour)
    loaded = K.models.load_model(path, compile=False)
    ctl = chipnet_tf.prune.controllers(loaded)[0]
    assert ctl.budget_type == "latency" and ctl.spec.latency is not None
    assert {k: v.tolist() for k, v in chipnet_tf.get_masks(loaded).items()} == {k: v.tolist() for k, v in masks.items()}
    assert chipnet_tf.budget_report(loaded).totals["latency"] == pytest.approx(
        chipnet_tf.budget_report(pruned).totals["latency"]
    )
    np.testing.assert_array_equal(to_numpy(loaded(x[:4], training=False)), to_numpy(pruned(x[:4], training=False)))


# -- other backends ---------------------------------------------------------------------------
JAX_SCRIPT = """
import json, sys
import numpy as np
import keras, chipnet_tf
from tests.twins import residual
keras.utils.set_random_seed(0)
model = residual(keras, keras.ops)
try:
    chipnet_tf.latency.profile(model)
    refusal = None
except ValueError as e:
    refusal = str(e)
pruned = chipnet_tf.prune_low_budget(model, 0.5, "latency", latency_table=sys.argv[1])
ctl = chipnet_tf.prune.controllers(pruned)[0]
ctl.zeta.assign(np.random.default_rng(0).normal(size=ctl.total).astype("float32"))
masks = chipnet_tf.get_masks(pruned)
row = chipnet_tf.budget_report(pruned, masks=masks).totals["latency"]
print(json.dumps({"backend": keras.backend.backend(), "refusal": refusal, "dense": row["dense"], "kept": row["kept"],
                  "masks": {k: v.tolist() for k, v in masks.items()}}))
"""


@pytest.mark.slow  # a JAX process: about 40 s on 2 shared cores
@on_tensorflow
def test_a_table_profiled_on_tensorflow_prunes_the_jax_model(profiled, tmp_path):
    """On JAX, profile says to profile under KERAS_BACKEND=tensorflow; the table saved there
    is accepted by prune_low_budget on the JAX model and predicts what it predicts on TF."""
    pytest.importorskip("jax")
    model, table = profiled("keras3")
    path = tmp_path / "table.json"
    table.save(path)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(path)], capture_output=True, text=True, timeout=600, env=env, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert out["refusal"] and "\n" not in out["refusal"]
    assert "KERAS_BACKEND=tensorflow" in out["refusal"] and "LatencyTable.load" in out["refusal"]
    assert out["dense"] == pytest.approx(table.dense_ms)
    masks = {k: np.asarray(v) for k, v in out["masks"].items()}
    assert out["kept"] == pytest.approx(table.predict_ms(model, masks=masks), rel=1e-9)
    assert out["kept"] <= 0.5 * out["dense"] * (1 + 1e-9)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal of another backend")
def test_profile_on_another_backend_says_where_to_profile():
    model = build("keras3")
    with pytest.raises(ValueError, match=r"KERAS_BACKEND=tensorflow.*LatencyTable.load") as info:
        latency.profile(model)
    assert "\n" not in str(info.value)


# -- the command line ---------------------------------------------------------------------------
def run_cli(*args, cache=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if cache:
        env["CHIPNET_TF_CACHE"] = cache
    cmd = [sys.executable, "-m", "chipnet_tf.cli", *[str(a) for a in args]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory, profiled):
    """Per flavour: the dense model and a latency-wrapped one (random scores) as .keras and .h5."""
    if BACKEND != "tensorflow":
        pytest.skip("the command line's Keras 3 tests run on the TensorFlow backend")
    tmp = tmp_path_factory.mktemp("cli3")
    out = {}
    for flavour in FLAVOURS:
        model, table = profiled(flavour)
        pruned = random_pruned(model, table, 0.5)
        paths = {"dense": tmp / f"dense_{flavour}.keras", "wrapped": tmp / f"wrapped_{flavour}.keras"}
        model.save(paths["dense"])
        pruned.save(paths["wrapped"])
        pruned.save(tmp / f"wrapped_{flavour}.h5")
        paths["wrapped_h5"] = tmp / f"wrapped_{flavour}.h5"
        out[flavour] = {"model": model, "table": table, "pruned": pruned, **paths}
    np.save(tmp / "x.npy", random_data((16, 16, 3), n=16)[0])
    out["x"] = tmp / "x.npy"
    return out


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_saved_keras_version_reads_the_files_metadata(files, flavour, tmp_path):
    want = "3." if flavour == "keras3" else "2."
    assert saved_keras_version(str(files[flavour]["wrapped"])).startswith(want)
    assert saved_keras_version(str(files[flavour]["wrapped_h5"])).startswith(want)
    # Without metadata.json, a Keras 3 config is known by its DTypePolicy layers.
    bare = tmp_path / "bare.keras"
    with zipfile.ZipFile(files[flavour]["dense"]) as src, zipfile.ZipFile(bare, "w") as dst:
        for name in src.namelist():
            if name != "metadata.json":
                dst.writestr(name, src.read(name))
    assert saved_keras_version(str(bare)) == ("3" if flavour == "keras3" else "")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file")
    assert saved_keras_version(str(garbage)) == ""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cli_report_of_a_latency_wrapped_file(files, flavour):
    code, stdout, stderr = run_cli("report", files[flavour]["wrapped"])
    assert code == 0, stderr[-2000:]
    report = chipnet_tf.budget_report(files[flavour]["pruned"])
    assert "ChipNet budget: 0.5 of latency" in stdout and "latency (predicted)" in stdout
    assert f"{report.totals['flops']['kept']:,.0f}" in stdout


@pytest.mark.parametrize("source", ["wrapped", "wrapped_h5"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cli_strip_writes_the_same_keras_as_the_file(files, flavour, source, tmp_path):
    """strip of a Keras 3 file (.keras or .h5) writes a Keras 3 model equal to the in-process
    strip; tf_keras files stay tf_keras."""
    f = files[flavour]
    want = chipnet_tf.strip_pruning(f["pruned"])
    x = np.load(files["x"])
    K, _ = keras_of_flavour(flavour)
    out = tmp_path / "small.keras"
    code, stdout, stderr = run_cli("strip", f[source], out)
    assert code == 0, stderr[-2000:]
    assert f"{want.count_params():,} params" in stdout
    small = K.models.load_model(out, compile=False)
    assert is_keras3_object(small) == (flavour == "keras3")
    assert small.count_params() == want.count_params()
    np.testing.assert_allclose(to_numpy(small(x, training=False)), to_numpy(want(x, training=False)), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["small.keras"]  # no temporary left


@on_tensorflow
def test_cli_strip_of_a_keras3_file_to_a_directory_writes_an_inference_saved_model(files, tmp_path):
    f = files["keras3"]
    out = tmp_path / "small_savedmodel"
    code, stdout, stderr = run_cli("strip", f["wrapped"], out)
    assert code == 0, stderr[-2000:]
    assert (out / "saved_model.pb").exists()
    x = np.load(files["x"])
    want = to_numpy(chipnet_tf.strip_pruning(f["pruned"])(x, training=False))
    loaded = tf.saved_model.load(str(out))  # held: its functions reference its variables
    got = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow  # the CLI's default grids (max_points=(3, 6)): about 60 s on 2 shared cores
@on_tensorflow
def test_cli_profile_of_a_dense_keras3_file(files, cache, tmp_path):
    """profile of a dense Keras 3 file: the in-process table's timed calls and signatures."""
    f = files["keras3"]
    table_path = tmp_path / "table.json"
    code, stdout, stderr = run_cli("profile", f["dense"], f"--out={table_path}", cache=cache)
    assert code == 0, stderr[-2000:]
    assert "latency table of" in stdout
    got = latency.LatencyTable.load(table_path)
    assert list(got.entries) == list(f["table"].entries)
    assert got.meta["tiles"] == TILES  # read from the cache, like the in-process profile's
    for name, e in got.entries.items():  # the CLI's default max_points: other grids, the same ends
        theirs = f["table"].entries[name]
        assert e["signature"] == theirs["signature"] and e["kind"] == theirs["kind"]
        assert (e["in_grid"][-1], e["out_grid"][-1]) == (theirs["in_grid"][-1], theirs["out_grid"][-1])


@on_tensorflow
def test_cli_export_and_profile_refusal_of_a_latency_wrapped_keras3_file(files, cache, tmp_path):
    """export of the wrapped Keras 3 file: a TFLite file verified against Keras, and the latency
    table's quantization check in one line; profile refuses the wrapped model in one line."""
    f = files["keras3"]
    out = tmp_path / "small.tflite"
    code, stdout, stderr = run_cli("export", f["wrapped"], out, f"--verify_data={files['x']}")
    assert code == 0, stderr[-2000:]
    assert out.stat().st_size > 0 and f"wrote {out}" in stdout and "(float32)" in stdout
    code, stdout, stderr = run_cli("export", f["wrapped"], tmp_path / "q.tflite", "--quantization=dynamic")
    assert code == 1 and "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert "quantization='dynamic' does not match the latency table" in line
    code, stdout, stderr = run_cli("profile", f["wrapped"], f"--out={tmp_path / 't.json'}", cache=cache)
    assert code == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith("a wrapped ChipNet model; profile the dense model it was made from")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tflite"]


@on_tensorflow
def test_cli_unreadable_keras3_file_is_a_one_line_error(files, tmp_path):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(files["keras3"]["dense"]) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name) if name != "config.json" else b"{not json")
    code, stdout, stderr = run_cli("report", broken)
    assert code == 1 and "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"chipnet-tf report: error: {broken}: cannot load the model")
