"""Channels 0.02 of PreResNet-20 (bottleneck, 912 channels: 18 kept): is a network that drops
whole residual branches (inner groups at 0 channels, which strip_pruning can already remove)
better and stabler than the floor's 1-channel chain? L1-ranked channels within each group, the
grid's fine-tuning (2 epochs), 4 fine-tuning seeds; dense 1 and 0 of the grid."""

import numpy as np

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import methods as M
from benchmarks.latency.models import channel_scores
from chipnet_tf.compat import keras

data = acc_data.load("fashion_mnist")
STREAMS = ["stage1_block1_shortcut_conv", "stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]
FIRST = [f"stage{s}_block1_conv{c}" for s in (1, 2, 3) for c in (1, 2)]


def shape(kind, groups):
    n = {g.name: 0 for g in groups}
    if kind == "no_branches":
        n.update(stem_conv=6, **{s: 4 for s in STREAMS})
    elif kind == "one_branch_per_stage":
        n.update(stem_conv=3, **{s: 3 for s in STREAMS}, **{g: 1 for g in FIRST})
    elif kind == "floor":  # the grid's minimal network: 1 per group, the 2 left to the streams
        n = {g.name: 1 for g in groups}
        n[STREAMS[1]] = 2
        n[STREAMS[2]] = 2
    return n


for dseed in (1, 0):
    dense = acc_data.model("fashion_mnist")
    dense.load_weights(f"/work/s9/fashion_dense/dense_{dseed}.weights.h5")
    analysis = chipnet_tf.analyze(dense, warn=False)
    scores = channel_scores(dense, analysis, dseed)[0]
    for kind in ("no_branches", "one_branch_per_stage", "floor"):
        n = shape(kind, analysis.groups)
        masks = {}
        for g in analysis.groups:
            order = np.argsort(-np.asarray(scores[g.name]))
            masks[g.name] = np.isin(np.arange(g.size), order[: n[g.name]])
        kept = sum(int(m.sum()) for m in masks.values())
        small = chipnet_tf.strip_pruning(dense, masks=masks)
        res = []
        for s in (dseed, 10, 11, 12):
            m = M.clone(small)
            keras.utils.set_random_seed(s)
            h, _ = M.finetune(m, data, s, 2)
            res.append((M.accuracy(m, data), h["loss"][-1]))
        accs = [a for a, _ in res]
        print(
            f"dense {dseed} {kind:<22} kept {kept} params {small.count_params():6d} conv layers "
            f"{sum(isinstance(lay, keras.layers.Conv2D) for lay in small.layers):2d}: "
            f"acc {' '.join(f'{a:.3f}' for a in accs)} "
            f"mean {np.mean(accs):.3f}; collapsed {sum(loss > 2.29 for _, loss in res)}/4",
            flush=True,
        )
