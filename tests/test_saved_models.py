"""Backward compatibility: the committed reference set (saved_models/reference) still loads.

The set was written by ``python -m recipes.reference`` with an earlier build of chipnet_tf.
These tests fail when a change breaks loading saved wrapped models, masks, stripped models or
TFLite files that users already have on disk.
"""

import json
import os

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf import export
from chipnet_tf.compat import keras
from recipes import data, reference

REF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), reference.DEFAULT_DIR)


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(REF, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def digits_test(tmp_path_factory):
    ds = data.make_dataset("digits", "test", 512, str(tmp_path_factory.mktemp("tfds")), shuffle=False)
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


def test_files_are_intact_and_small(manifest):
    total = 0
    for name, entry in manifest["files"].items():
        filename = os.path.join(REF, name)
        assert os.path.getsize(filename) == entry["bytes"], name
        assert reference.sha256(filename) == entry["sha256"], name
        total += entry["bytes"]
    assert set(manifest["files"]) == set(reference.FILES)
    assert total < 3 * 2**20  # "a few MB" at most


def test_wrapped_checkpoint_loads_and_gives_the_saved_masks(manifest):
    pruned = keras.models.load_model(os.path.join(REF, "pruned.keras"))
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    assert ctl.budget == manifest["budget"] and ctl.budget_type == manifest["budget_type"]
    masks = chipnet_tf.load_masks(os.path.join(REF, "masks.npz"))
    recomputed = chipnet_tf.get_masks(pruned, round_to=manifest["round_to"])
    assert recomputed.keys() == masks.keys()
    for name in masks:
        np.testing.assert_array_equal(recomputed[name], masks[name], err_msg=name)
    # The hard budget of the saved masks is what the stripped model has.
    report = chipnet_tf.budget_report(pruned, masks=masks)
    assert report.totals["flops"]["kept"] == manifest["flops"]["stripped"]
    assert report.totals["params"]["kept"] == manifest["params"]["stripped"]
    assert report.totals["flops"]["fraction"] <= manifest["budget"]


def test_saved_masks_strip_the_saved_dense_and_wrapped_models(manifest, digits_test):
    masks = chipnet_tf.load_masks(os.path.join(REF, "masks.npz"))
    dense = keras.models.load_model(os.path.join(REF, "dense.keras"))
    assert dense.count_params() == manifest["params"]["dense"]
    assert chipnet_tf.count_flops(dense) == manifest["flops"]["dense"]
    for source in (dense, keras.models.load_model(os.path.join(REF, "pruned.keras"))):
        small = chipnet_tf.strip_pruning(source, masks=masks)
        assert small.count_params() == manifest["params"]["stripped"]
        assert chipnet_tf.count_flops(small) == manifest["flops"]["stripped"]
    # the wrapped model under its hard masks equals its own stripped version
    pruned = keras.models.load_model(os.path.join(REF, "pruned.keras"))
    chipnet_tf.apply_masks(pruned, masks)
    x, _ = digits_test
    np.testing.assert_allclose(
        chipnet_tf.strip_pruning(pruned).predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-4
    )


def test_stripped_model_and_tflite_files_reproduce_the_manifest(manifest, digits_test):
    x, y = digits_test
    small = keras.models.load_model(os.path.join(REF, "stripped.keras"))
    assert small.count_params() == manifest["params"]["stripped"]
    logits = small.predict(x, verbose=0)
    assert float(np.mean(logits.argmax(-1) == y)) == pytest.approx(manifest["accuracy"]["stripped"], abs=1e-6)
    assert manifest["accuracy"]["stripped"] >= 0.95
    with open(os.path.join(REF, "model.tflite"), "rb") as f:
        lite = export.run_tflite(f.read(), x)
    np.testing.assert_allclose(lite, logits, atol=1e-4)
    with open(os.path.join(REF, "model_int8.tflite"), "rb") as f:
        report = export.verify_tflite(f.read(), small, x)
    assert report.top1_agreement >= 0.95
