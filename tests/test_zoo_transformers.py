"""Third-party transformers, one per family (``benchmarks/strip/zoo_transformers.py``): each
reaches <= 0.10 of its FLOPs, strips exactly at FLOPs 0.1, and its count_flops equals the
independent count of the frozen graph's ops; and the mechanisms they needed:

- a reshape that folds windows or patches into the batch axis (MobileViT's unfold, Swin's
  window partition) makes the calls after it run on several batch rows per example, counted
  as many times;
- a reshape that joins ``k`` whole channel vectors into the last axis (``[-1, w, W / w, w * C]``,
  patch merging's ``4 C``) or cuts it back (``[.., C]`` from ``w * C``) keeps the channels
  prunable;
- a custom layer's computation on its weights alone (Swin V2's position-bias MLP) is counted
  once per example, whatever the rows its input has.
"""

import os
import warnings

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras, tf

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or os.environ.get("TF_USE_LEGACY_KERAS") != "1",
    reason="kecam's models are built with tf_keras; the independent count reads a TF graph",
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.backend.clear_session()
        yield


# model -> (groups, head groups, smallest reachable FLOPs fraction, heads kept at FLOPs 0.1)
ROWS = {
    "hub.ViT": (5, 2, 0.0342, [1, 1]),
    "kecam.MobileViT": (26, 0, 0.0089, [4, 4, 4]),
    "kecam.LeViT": (8, 0, 0.0321, [2, 4, 3]),
    "kecam.GPT2": (3, 0, 0.0438, [2, 2]),
    "hub.CLIPText": (5, 2, 0.0346, [1, 1]),
    "kecam.SwinTransformerV2": (4, 0, 0.0415, [2, 4]),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_transformer_row(name):
    pytest.importorskip("keras_hub" if name.startswith("hub.") else "keras_cv_attention_models")
    from benchmarks.strip import zoo_transformers

    stripped = []
    row = zoo_transformers.row(name, keep=stripped)
    groups, head_groups, fraction, heads = ROWS[name]
    assert (row["groups"], row["head_groups"], row["smallest_flops_fraction"]) == (groups, head_groups, fraction)
    assert fraction <= 0.1
    assert row["rel_max_diff"] <= 1e-5
    assert row["params_exact"] and row["flops_exact"]
    assert row["count_flops"] == row["independent"]["total"]
    assert row["independent"]["activations"] > 0  # attention's two products are counted
    assert 0.09 <= row["flops_fraction"] <= 0.1
    assert row["heads_kept"] == heads
    if "GPT" in row["family"]:  # still causal: a later token changes no earlier output
        tokens = np.random.default_rng(0).integers(0, zoo_transformers.VOCABULARY, (1, zoo_transformers.TOKENS))
        changed = tokens.copy()
        changed[0, -1] = (changed[0, -1] + 1) % zoo_transformers.VOCABULARY
        dtype = stripped[0].inputs[0].dtype
        a, b = (np.asarray(stripped[0](t.astype(getattr(dtype, "name", dtype)))) for t in (tokens, changed))
        np.testing.assert_array_equal(a[0, :-1], b[0, :-1])
        assert np.abs(a[0, -1] - b[0, -1]).max() > 0


def _windows(x, w, channels):
    """Swin's window partition as kecam writes it: ``(B, H, W, C) -> (B * H/w * W/w, w, w, C)``."""
    height, width = x.shape[1], x.shape[2]
    y = tf.reshape(x, [-1, w, width // w, w * channels])  # (B H/w, w, W/w, w C): columns joined
    y = tf.transpose(y, [0, 2, 1, 3])
    return tf.reshape(y, [-1, w, w, channels]), (height, width)


def _unwindows(y, w, size, channels):
    height, width = size
    y = tf.reshape(y, [-1, width // w, w, w * channels])
    y = tf.transpose(y, [0, 2, 1, 3])
    return tf.reshape(y, [-1, height, width, channels])  # the joined columns cut back


def _window_model():
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(6, 1, name="stem")(x)
    windows, size = _windows(y, 4, 6)
    tokens = tf.reshape(windows, [-1, 16, 6])
    tokens = L.Dense(5, name="in_window")(tokens)  # 4 windows of 16 tokens per image
    y = _unwindows(tf.reshape(tokens, [-1, 4, 4, 5]), 4, size, 5)
    merged = tf.reshape(tf.transpose(tf.reshape(y, [-1, 2, 8, 5]), [0, 2, 1, 3]), [-1, 4, 4, 20])  # 2 x 2 merge
    y = L.Dense(7, name="merge")(merged)
    return keras.Model(x, L.Dense(3, name="fc")(L.GlobalAveragePooling2D()(y)))


def test_windows_fold_into_the_batch_and_join_channels():
    """The Dense inside the windows runs on 4 rows per image: count_flops and the cost model
    count it 4 times, as the independent count does; its channels and the stem's stay
    groups through the joining and cutting reshapes, and the strip is exact."""
    from tests.flops_oracle import oracle_counts

    keras.utils.set_random_seed(0)
    model = _window_model()
    analysis = chipnet_tf.analyze(model, warn=False)
    assert analysis.stopped == []
    assert [(g.name, g.size) for g in analysis.groups] == [("stem", 6), ("in_window", 5), ("merge", 7)]
    flops = chipnet_tf.count_flops(model)
    assert flops == oracle_counts(model)["total"] == analysis.spec.dense("flops")
    stem, merge, fc = 64 * (3 * 6 + 6), 16 * (20 * 7 + 7), 7 * 3 + 3
    assert flops == stem + 4 * 16 * (6 * 5 + 5) + merge + fc  # the windows' Dense: 4 windows x 16 tokens
    masks = {
        "stem": np.array([1, 0, 1, 1, 0, 1], "float32"),
        "in_window": np.array([0, 1, 1, 0, 1], "float32"),
        "merge": np.array([1, 1, 0, 0, 1, 0, 1], "float32"),
    }
    pruned = chipnet_tf.prune_low_budget(model, budget=0.5, budget_type="flops")
    chipnet_tf.apply_masks(pruned, masks)
    small = chipnet_tf.strip_pruning(pruned, masks=masks)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    wrapped = np.asarray(pruned(x, training=False))
    assert np.abs(np.asarray(small(x)) - wrapped).max() <= 1e-5 * np.abs(wrapped).max()
    assert small.get_layer("merge").kernel.shape == (12, 4)  # 2 x 2 neighbours of 3 kept channels
    assert chipnet_tf.count_flops(small) == oracle_counts(small)["total"]
    assert chipnet_tf.count_flops(small) == chipnet_tf.budget_report(model, masks=masks).totals["flops"]["kept"]


class _PositionBias(keras.layers.Layer):
    """A bias computed from weights alone (Swin V2's position MLP): ``coords @ W`` once per call."""

    def build(self, input_shape):
        self.hidden = self.add_weight(name="hidden", shape=(2, 8), initializer="glorot_uniform")
        self.coords = tf.constant(np.random.default_rng(0).normal(size=(16, 2)).astype("float32"))

    @tf.autograph.experimental.do_not_convert  # a class of a test module: its source is pytest's rewrite
    def call(self, x, training=None):
        return x + tf.reduce_sum(tf.matmul(self.coords, self.hidden), axis=-1)


def test_a_computation_on_weights_alone_counts_once():
    from tests.flops_oracle import oracle_counts

    x = keras.Input((4, 4, 16))
    windows = tf.reshape(x, [-1, 16])  # 16 rows per example
    model = keras.Model(x, _PositionBias(name="bias")(windows))
    assert chipnet_tf.count_flops(model) == oracle_counts(model)["total"] == 16 * 2 * 8
