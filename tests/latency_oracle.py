"""The latency table's lookup written out by hand, for tests of both Kerases."""

import numpy as np

import chipnet_tf


def random_pruned(model, table, budget=0.5, seed=0):
    """``model`` wrapped for a latency budget with random mask logits."""
    pruned = chipnet_tf.prune_low_budget(model, budget, "latency", latency_table=table)
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    ctl.zeta.assign(np.random.default_rng(seed).normal(size=ctl.total).astype("float32"))
    return pruned


def reference_ms(entry, c_in, c_out):
    """The table's lookup, written out: widths up to the tile, then bilinear on the grid."""
    c_in = min(-(-c_in // entry["tile_in"]) * entry["tile_in"], entry["in_grid"][-1])
    c_out = min(-(-c_out // entry["tile_out"]) * entry["tile_out"], entry["out_grid"][-1])
    values = np.asarray(entry["values"], float)
    per_in = [np.interp(c_out, entry["out_grid"], row) for row in values]
    return float(np.interp(c_in, entry["in_grid"], per_in))


def stripped_widths(small, name, kind):
    """A stripped layer's kept (input, output) channels, as the table looks them up."""
    layer = small.get_layer(name)
    c_out = int(layer.output.shape[-1])
    c_in = int(layer.input.shape[-1]) if kind == "producer" else 1
    return c_in, c_out
