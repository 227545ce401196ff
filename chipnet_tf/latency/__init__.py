"""Latency as a budget: a per-layer latency table measured in LiteRT, and its lookups.

``table = chipnet_tf.latency.profile(dense_model)`` measures the table on this machine
(:mod:`~chipnet_tf.latency.profiler`, timing tools in :mod:`~chipnet_tf.latency.timing`);
``prune_low_budget(model, 0.25, "latency", latency_table=table)`` attaches it to the model's
cost spec (:mod:`~chipnet_tf.latency.table`).

Example::

    table = chipnet_tf.latency.profile(model, threads=1)          # on the target device
    table.save("table.json")
    table = chipnet_tf.latency.LatencyTable.load("table.json")    # where you train
    pruned = chipnet_tf.prune_low_budget(model, 0.25, "latency", latency_table=table)
"""

from chipnet_tf.latency.profiler import profile
from chipnet_tf.latency.table import (
    FORMAT,
    QUANTIZATIONS,
    VERSION,
    LatencyTable,
    as_table,
    attach,
    check_export,
    check_quantization,
    form_range,
    match,
    spec_meta,
    summary,
    timed_calls,
)

__all__ = [
    "FORMAT",
    "QUANTIZATIONS",
    "VERSION",
    "LatencyTable",
    "as_table",
    "attach",
    "check_export",
    "check_quantization",
    "form_range",
    "match",
    "profile",
    "spec_meta",
    "summary",
    "timed_calls",
]
