"""Latency as a budget: the table, its lookups in CostSpec, masks, reports, save/load, CLI.

Tests assert numbers, never wall-clock: measured values are whatever this machine gives,
and every check compares the library against an oracle computed from the same table.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import latency
from chipnet_tf.budgets import CostSpecBuilder
from chipnet_tf.compat import keras, tf
from chipnet_tf.latency import profiler as lp
from tests.latency_oracle import random_pruned, reference_ms, stripped_widths

TILES = {"conv_out": 4, "conv_in": 1, "depthwise": 4}


def tiny_model(name="tiny"):
    """Layers named explicitly: Keras' automatic names depend on what the session built before."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2d")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2d_1")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise_conv2d")(x)
    x = keras.layers.Conv2D(24, 1, name="conv2d_2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="dense")(x), name=name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency_cache")
    for quantization in (None, "int8"):  # the tile probe's result, so that no test runs the probe
        lp._cache_write(str(path), lp._key("tiles", lp.runtime_meta(1, quantization)), TILES)
    return str(path)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def table(model, cache):
    return latency.profile(model, max_points=(2, 3), cache_dir=cache, progress=False)


# -- the table -------------------------------------------------------------------------------
def test_profile_measures_each_timed_call_once(table, model):
    assert set(table.entries) == {"conv2d", "conv2d_1", "add", "depthwise_conv2d", "conv2d_2", "dense"}
    assert table.entries["conv2d_1"]["out_grid"] == [4, 8, 16]  # tile multiples, 3 points at most
    assert table.entries["conv2d_1"]["in_grid"] == [1, 16]
    assert table.entries["depthwise_conv2d"]["in_grid"] == [1]
    assert table.meta["quantization"] is None and table.meta["threads"] == 1
    assert table.fixed_ms + sum(e["values"][-1][-1] for e in table.entries.values()) == pytest.approx(table.dense_ms)
    for e in table.entries.values():  # more channels never cost less
        v = np.asarray(e["values"])
        assert (np.diff(v, axis=0) >= 0).all() and (np.diff(v, axis=1) >= 0).all()


def test_profile_again_hits_cache(model, table, cache):
    again = latency.profile(model, max_points=(2, 3), cache_dir=cache, progress=False)
    assert again.stats["cache_hit"] is True
    assert again.entries == table.entries and again.dense_ms == table.dense_ms


def test_profile_dedupes_identical_configurations(cache):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 8))
    x = keras.layers.Conv2D(8, 1)(inp)
    x = keras.layers.Conv2D(8, 1)(x)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1)(x))
    table = latency.profile(model, max_points=(2, 2), cache_dir=cache, progress=False)
    # conv2d and conv2d_1 differ in their input (3 fixed vs 8 prunable channels): 3 configurations for 3 calls;
    # a second identical block adds a call but no configuration.
    assert table.stats["timed_calls"] == 3
    assert table.stats["unique_configurations"] <= 3


def test_table_json_round_trip_equal(table, tmp_path):
    path = tmp_path / "table.json"
    table.save(path)
    loaded = latency.LatencyTable.load(path)
    assert loaded == table
    assert json.loads(path.read_text())["format"] == "chipnet_tf.latency_table"
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary left


def test_table_load_foreign_file_raises(tmp_path):
    path = tmp_path / "masks.json"
    path.write_text(json.dumps({"format": "chipnet_tf.search.masks"}))
    with pytest.raises(ValueError, match="not a readable chipnet_tf latency table"):
        latency.LatencyTable.load(path)


def test_grid_samples_tile_multiples():
    assert lp.grid(1, 64, 16, 8) == [16, 32, 48, 64]
    assert lp.grid(1, 70, 16, 8) == [16, 32, 48, 64, 70]
    assert lp.grid(1, 2048, 16, 4) == [16, 80, 400, 2048]  # geometric: dense where the curve bends
    assert lp.grid(5, 5, 16, 4) == [5]


# -- CostSpec lookups -------------------------------------------------------------------------
def test_calibration_fits_both_ends_or_scales_to_dense(model, table):
    """Two measured networks fix ``scale * lookups + fixed``; when they ask for a negative fixed
    cost (the one-op timings sum to more than the small network takes: ResNet-50-CIFAR int8) or
    there is no small network, the lookups scale to the dense network with no fixed cost."""
    analysis = chipnet_tf.analyze(model, warn=False)
    bare = latency.LatencyTable(model="", meta={}, entries=table.entries, fixed_ms=0.0, dense_ms=0.0)
    spec = latency.attach(analysis, bare)
    at_dense = spec.value(spec.group_sizes, "latency")
    at_two = spec.value(np.minimum(spec.group_sizes, 2), "latency")  # the profile's small network
    assert 0 < at_two < at_dense
    scale, fixed = lp.calibrate(analysis, table.entries, 1.2 * at_dense + 0.05, 1.2 * at_two + 0.05, 2)
    np.testing.assert_allclose([scale, fixed], [1.2, 0.05], rtol=1e-6)
    scale, fixed = lp.calibrate(analysis, table.entries, 1.1 * at_dense, 0.1 * at_two, 2)
    np.testing.assert_allclose([scale, fixed], [1.1, 0.0], rtol=1e-6)
    scale, fixed = lp.calibrate(analysis, table.entries, 0.9 * at_dense, None, 2)
    np.testing.assert_allclose([scale, fixed], [0.9, 0.0], rtol=1e-6)


def toy_spec(fixed=0.5):
    """One group of 8 channels; one lookup over it: 1 ms up to 4 channels, 2 ms at 8 (tile 4)."""
    b = CostSpecBuilder(["g"], [8])
    f = b.form(0, {0: 1})
    b.add("channels", "conv", 1, f)
    entry = {
        "layer": "conv",
        "f_in": b.one,
        "f_out": f,
        "in_grid": [1],
        "out_grid": [4, 8],
        "values": [[1.0, 2.0]],
        "tile_in": 1,
        "tile_out": 4,
    }
    return b.build(latency={"meta": {"quantization": None}, "fixed_ms": fixed, "entries": [entry]})


def test_latency_value_hand_computed():
    spec = toy_spec()
    assert spec.dense("latency") == pytest.approx(2.5)
    assert spec.value([3], "latency") == pytest.approx(1.5)  # 3 channels compute like 4
    assert spec.value([5], "latency") == pytest.approx(2.5)  # 5 take two tiles
    assert spec.layer_values([5], "latency") == {"conv": pytest.approx(2.0)}
    assert float(spec.tf_fraction(tf.constant([6.0]), "latency")) == pytest.approx(2.0 / 2.5)  # soft: bilinear
    assert spec.value([5], "channels") == 5.0  # the four counts are unchanged


def test_latency_spec_config_round_trip():
    spec = toy_spec()
    again = chipnet_tf.CostSpec.from_config(json.loads(json.dumps(spec.get_config())))
    assert again.value([3], "latency") == spec.value([3], "latency")
    assert "latency" not in CostSpecBuilder(["g"], [8]).build().get_config()  # no table: config unchanged


def test_select_masks_latency_fills_tiles():
    spec = toy_spec()
    masks = chipnet_tf.select_masks(spec, {"g": np.arange(8.0)}, 0.7, "latency")
    # 0.7 * 2.5 = 1.75 ms: one tile (1.5 ms); the cut keeps 1 channel, the fill takes the tile's 4
    assert masks["g"].sum() == 4
    assert masks["g"][4:].all()  # the best channels


def test_soft_latency_gradient_matches_finite_differences(model, table):
    spec = latency.attach(chipnet_tf.analyze(model, warn=False), table)
    counts = np.asarray(spec.group_sizes, np.float64) * np.array([0.55, 0.63])[: len(spec.group_sizes)]
    var = tf.Variable(counts.astype("float32"))
    with tf.GradientTape() as tape:
        value = spec.tf_fraction(var, "latency")
    grad = tape.gradient(value, var).numpy()
    eps = 0.05
    for g in range(len(counts)):
        up, down = counts.copy(), counts.copy()
        up[g] += eps
        down[g] -= eps
        fd = (float(spec.tf_fraction(up, "latency")) - float(spec.tf_fraction(down, "latency"))) / (2 * eps)
        assert grad[g] == pytest.approx(fd, rel=2e-2, abs=1e-6)
    assert np.abs(grad).sum() > 0


# -- masks, report, strip, save/load --------------------------------------------------------------
@pytest.mark.parametrize("budget", [0.9, 0.6, 0.4])
def test_hard_masks_within_predicted_budget_and_report_equals_table_sum(model, table, budget):
    pruned = random_pruned(model, table, budget, seed=int(budget * 10))
    masks = chipnet_tf.get_masks(pruned)
    report = chipnet_tf.budget_report(pruned, masks=masks)
    row = report.totals["latency"]
    assert row["dense"] == pytest.approx(table.dense_ms)
    assert row["kept"] <= budget * row["dense"] * (1 + 1e-9) or all(m.sum() == 1 for m in masks.values())
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    oracle = table.fixed_ms
    for name, entry in table.entries.items():
        oracle += reference_ms(entry, *stripped_widths(small, name, entry["kind"]))
    assert row["kept"] == pytest.approx(oracle, rel=1e-9)
    assert sum(r["kept_ms"] for r in report.layers) + report.fixed_ms == pytest.approx(row["kept"], rel=1e-9)
    assert "latency" in str(report) and " ms" in str(report)


def test_pruned_for_latency_trains_with_soft_latency(model, table):
    pruned = random_pruned(model, table, 0.5)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    with tf.GradientTape() as tape:
        fraction, budget_loss, _ = ctl.penalties()
    grad = tape.gradient(budget_loss, ctl.zeta)
    assert 0.0 < float(fraction) <= 1.0
    assert np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("fmt", [".keras", ".h5", "savedmodel"])
def test_saved_model_keeps_table(model, table, tmp_path, fmt):
    pruned = random_pruned(model, table, 0.5)
    path = str(tmp_path / ("m" + (fmt if fmt != "savedmodel" else "")))
    pruned.save(path) if fmt != "savedmodel" else pruned.save(path, save_format="tf")
    loaded = keras.models.load_model(path, compile=False)
    ctl = chipnet_tf.prune.controllers(loaded)[0]
    assert ctl.budget_type == "latency" and ctl.spec.latency is not None
    masks = chipnet_tf.get_masks(pruned)
    assert {k: v.tolist() for k, v in chipnet_tf.get_masks(loaded).items()} == {k: v.tolist() for k, v in masks.items()}
    before = chipnet_tf.budget_report(pruned).totals["latency"]
    assert chipnet_tf.budget_report(loaded).totals["latency"] == pytest.approx(before)


def test_dense_report_with_table_predicts_latency(model, table):
    report = chipnet_tf.budget_report(model, latency_table=table)
    assert report.totals["latency"]["kept"] == pytest.approx(table.dense_ms)
    assert table.predict_ms(model) == pytest.approx(table.dense_ms)


def test_other_budget_types_report_latency_too(model, table):
    pruned = chipnet_tf.prune_low_budget(model, 0.5, "flops", latency_table=table)
    assert "latency" in chipnet_tf.budget_report(pruned).totals
    assert "latency" not in chipnet_tf.budget_report(chipnet_tf.prune_low_budget(model, 0.5, "flops")).totals


# -- errors --------------------------------------------------------------------------------------
def test_latency_without_table_raises(model):
    with pytest.raises(ValueError, match=r"budget_type='latency' needs a latency table.*latency_table=table"):
        chipnet_tf.prune_low_budget(model, 0.5, "latency")


def test_select_masks_latency_without_table_raises():
    spec = CostSpecBuilder(["g"], [8]).build()
    with pytest.raises(ValueError, match="budget_type='latency' needs a latency table"):
        chipnet_tf.select_masks(spec, {"g": np.arange(8.0)}, 0.5, "latency")


def test_table_of_other_model_raises(table):
    other = tiny_model("other")
    wider = keras.Model(other.input, keras.layers.Dense(10)(keras.layers.Conv2D(8, 3)(other.input)), name="wider")
    with pytest.raises(ValueError, match=r"latency_table was measured on a different model \('tiny'\)"):
        chipnet_tf.prune_low_budget(wider, 0.5, "latency", latency_table=table)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 5, padding="same", name="conv2d")(inp)  # same name, other kernel
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2d_1")(x)
    changed = keras.Model(inp, x)
    with pytest.raises(ValueError, match=r"layer 'conv2d' differs in \['config'\]|timed layers missing"):
        chipnet_tf.prune_low_budget(changed, 0.5, "latency", latency_table=table)


def test_table_of_wrong_type_raises(model):
    with pytest.raises(
        TypeError, match=r"latency_table must be a chipnet_tf.latency.LatencyTable.*Received: latency_table=42"
    ):
        chipnet_tf.prune_low_budget(model, 0.5, "latency", latency_table=42)


def test_export_quantization_mismatch_raises(model, table):
    pruned = random_pruned(model, table)
    latency.check_export(pruned, None)  # float32 table, float32 export: fine
    with pytest.raises(ValueError, match=r"quantization='int8' does not match the latency table.*quantization=None"):
        latency.check_export(pruned, "int8")


def test_profile_unknown_quantization_raises(model):
    with pytest.raises(ValueError, match=r"Unknown quantization='float16' for a latency table. Accepted: None, 'int8'"):
        latency.profile(model, quantization="float16")


def test_unknown_budget_type_lists_latency():
    with pytest.raises(ValueError, match="'latency'"):
        chipnet_tf.select_masks(toy_spec(), {"g": np.arange(8.0)}, 0.5, "speed")


# -- int8 and the command line ----------------------------------------------------------------
def test_profile_int8_table(cache):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1, name="c2")(x))
    table = latency.profile(model, quantization="int8", max_points=(2, 2), cache_dir=cache, progress=False)
    assert table.quantization == "int8" and table.dense_ms > 0
    assert set(table.entries) == {"c1", "c2"}


def test_cli_profile_report_and_export_check(model, table, cache, tmp_path):
    dense_path = tmp_path / "dense.keras"
    model.save(dense_path)
    env = {**os.environ, "CHIPNET_TF_CACHE": cache}
    out = tmp_path / "table.json"
    cli = [sys.executable, "-m", "chipnet_tf.cli"]

    def run(*args):
        return subprocess.run(cli + [str(a) for a in args], capture_output=True, text=True, timeout=600, env=env)

    proc = run("profile", dense_path, f"--out={out}")
    assert proc.returncode == 0, proc.stderr
    assert "latency table of" in proc.stdout and out.exists()
    cli_table = latency.LatencyTable.load(out)
    assert set(cli_table.entries) == set(table.entries)
    wrapped = tmp_path / "wrapped.keras"
    random_pruned(model, cli_table).save(wrapped)
    proc = run("report", wrapped)
    assert proc.returncode == 0, proc.stderr
    assert "ChipNet budget: 0.5 of latency" in proc.stdout and "latency (predicted)" in proc.stdout
    proc = run("export", wrapped, tmp_path / "m.tflite", "--quantization=dynamic")
    assert proc.returncode == 1
    assert "quantization='dynamic' does not match the latency table" in proc.stderr
    proc = run("profile", dense_path, f"--out={out}", "--quantization=float16")
    assert proc.returncode == 1 and "none or int8" in proc.stderr


def test_recipe_latency_without_table_raises():
    from recipes import pipeline

    with pytest.raises(pipeline.RecipeError, match="--budget_type=latency needs --latency_table=PATH"):
        pipeline.Config(budget_type="latency").validate()
    assert pipeline.Config(budget_type="latency", latency_table="table.json").validate().latency_table == "table.json"
