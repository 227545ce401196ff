"""Latency as a budget: a per-layer latency table measured in LiteRT, and its lookups.

``table = chipnet_tf.latency.profile(dense_model)`` measures, with the LiteRT interpreter
(XNNPACK, as deployed), how each timed layer call's latency depends on its kept input and
output channels (see :mod:`chipnet_tf.latency.profiler`). ``prune_low_budget(model, 0.25,
"latency", latency_table=table)`` then attaches the table to the model's
:class:`chipnet_tf.budgets.CostSpec` (:func:`attach`): the latency budget is the sum of the
table's lookups at the groups' kept counts plus the fixed cost of the ops the table does not
vary (both calibrated on the measured dense network and a small one, 2 channels per group; see
:func:`chipnet_tf.latency.profiler.calibrate`).

Timed calls: conv/dense layers (``groups=1``), depthwise convs and element-wise merges
(``Add`` ...). BatchNormalization folds into the conv and activations fuse into it in
TFLite; everything else (pooling, padding, reshapes, TF-op layers such as tf_keras' ``x + y``
and Keras 3's ``keras.ops`` calls between layers, the interpreter's per-invoke cost) is in
``fixed_ms``.

Example::

    table = chipnet_tf.latency.profile(model, threads=1)          # on the target device
    table.save("table.json")
    table = chipnet_tf.latency.LatencyTable.load("table.json")    # where you train
    pruned = chipnet_tf.prune_low_budget(model, 0.25, "latency", latency_table=table)
"""

import dataclasses
import json
import os

import numpy as np

from chipnet_tf import registry
from chipnet_tf.analysis import groups as graph_lib
from chipnet_tf.analysis.groups import call_name
from chipnet_tf.budgets import CostSpec
from chipnet_tf.compat import is_instance, is_keras3_object, keras, keras3
from chipnet_tf.io import atomic_write
from chipnet_tf.registry import Kind
from chipnet_tf.search.layers.controller import controllers
from chipnet_tf.search.masks import check_masks

FORMAT = "chipnet_tf.latency_table"
VERSION = 1
QUANTIZATIONS = (None, "int8")
_MERGES = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
# Config keys that do not change an op's latency (or are the values being varied).
_IGNORED = ("name", "trainable", "dtype")
_IGNORED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


@dataclasses.dataclass
class LatencyTable:
    """Measured per-layer latencies of one model on one runtime (milliseconds).

    Attributes:
        model: the profiled model's name.
        meta: the runtime: ``runtime`` (LiteRT version), ``threads``, ``quantization``
            (None or ``"int8"``), ``cpu``, ``tiles`` (channel tiles found by the probe),
            ``invoke_overhead_ms`` (subtracted from every one-op timing).
        entries: ``{call name: {"kind", "signature", "in_grid", "out_grid", "values",
            "tile_in", "tile_out"}}``: ``values[i][j]`` is the latency at ``in_grid[i]``
            input and ``out_grid[j]`` output channels.
        fixed_ms: the latency of what the entries do not vary (calibrated with the entries
            on the measured dense network and a small one).
        dense_ms: the dense model's measured latency; the table predicts it exactly.
        stats: how the table was made (``profile_s``, ``measured``, ``cache_hits``, ...).
    """

    model: str
    meta: dict
    entries: dict
    fixed_ms: float
    dense_ms: float
    stats: dict = dataclasses.field(default_factory=dict)

    @property
    def quantization(self):
        return self.meta.get("quantization")

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a chipnet_tf latency table (expected format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"latency table version {data.get('version')!r}; this chipnet_tf reads {VERSION}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def save(self, path):
        """Writes the table as JSON, atomically (never pickled)."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        atomic_write(os.fspath(path), lambda f: f.write(text), mode="w")

    @classmethod
    def load(cls, path):
        """Reads a table written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a latency table (one line, naming the file).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No latency table at {path!r}")
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path!r} is not a readable chipnet_tf latency table (.json): {e}") from None

    def predict_ms(self, model, masks=None, exclude=None):
        """Predicted latency of ``model`` (dense, or stripped with ``masks``), in ms."""
        spec = attach(graph_lib.analyze(model, exclude=exclude, warn=False), self)
        if masks is None:
            return spec.value(spec.group_sizes, "latency")
        checked = check_masks(masks, spec.group_names, spec.group_sizes.tolist(), allow_empty=True)
        return spec.value([m.sum() for m in checked], "latency")


def as_table(table):
    """``table`` as a :class:`LatencyTable` (a table, its dict, or a JSON path)."""
    if isinstance(table, LatencyTable):
        return table
    if isinstance(table, dict):
        return LatencyTable.from_dict(table)
    if isinstance(table, (str, os.PathLike)):
        return LatencyTable.load(table)
    raise TypeError(
        "latency_table must be a chipnet_tf.latency.LatencyTable, its to_dict() or a JSON path. "
        f"Received: latency_table={table!r}"
    )


def check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization={quantization!r} for a latency table. "
            f"Accepted: {', '.join(map(repr, QUANTIZATIONS))}."
        )
    return quantization


# -- which calls are timed -------------------------------------------------------------
def _signature(fnode, kind):
    layer = fnode.layer
    config = {
        k: v
        for k, v in layer.get_config().items()
        if k not in _IGNORED and not any(k.endswith(s) for s in _IGNORED_SUFFIXES)
    }
    signature = {
        "class": type(layer).__name__,
        "kind": kind,
        "config": config,
        "in_shapes": [list(s[1:]) for s in fnode.in_shapes],
        "out_shape": list(fnode.out_shapes[0][1:]),
    }
    return json.loads(json.dumps(signature, default=str))


def _timed_kind(fnode, kind):
    layer = fnode.layer
    if not fnode.in_shapes or not fnode.out_shapes or None in fnode.in_shapes[0][1:]:
        return None
    if is_keras3_object(layer) and not isinstance(layer, keras3().layers.Layer):
        # A keras.ops call between layers (keras.ops.add, relu, ...): like tf_keras' TF-op
        # layers (x + y), untimed: its cost is in the calibrated fixed cost.
        return None
    if kind == Kind.PRODUCER and registry.lookup(layer).inner is not None:
        return "attention"  # timed at kept heads x output widths
    if kind == Kind.PRODUCER and int(getattr(layer, "groups", 1) or 1) == 1:
        return "producer"
    if kind == Kind.DEPTHWISE and is_instance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if kind == Kind.MERGE and type(layer).__name__ in _MERGES:
        if all(tuple(s) == tuple(fnode.out_shapes[0]) for s in fnode.in_shapes):
            return "merge"
    return None


def timed_calls(analysis):
    """The timed layer calls of an :class:`chipnet_tf.analysis.groups.Analysis`, in call order:
    ``[{"name", "fnode", "kind", "signature", "f_in", "f_out"}]``. ``f_in``/``f_out`` are
    the spec's forms of the channels the lookup reads (depthwise and merges vary with
    their output channels only: ``f_in`` is the constant 1; an attention layer with its
    kept heads and output channels)."""
    spec = analysis.spec
    one = _one_form(spec)
    names, calls = {}, []
    for fnode, kind in zip(analysis.graph.nodes, analysis.kinds):
        name = call_name(fnode, names)
        names[name] = True
        timed = _timed_kind(fnode, kind)
        if timed is None:
            continue
        f_in, f_out = spec.call_forms[name]
        if timed not in ("producer", "attention"):
            f_in = one
        calls.append(
            {
                "name": name,
                "fnode": fnode,
                "kind": timed,
                "signature": _signature(fnode, timed),
                "f_in": int(f_in),
                "f_out": int(f_out),
            }
        )
    return calls


def _one_form(spec):
    for f, const in enumerate(spec.form_const):
        if const == 1.0 and not spec.form_matrix[f].any():
            return f
    raise ValueError("cost spec has no constant form")


def form_range(spec, form):
    """``(smallest, dense)`` value of a form: one channel per group vs all channels."""
    row = spec.form_matrix[form]
    const = spec.form_const[form]
    return float(const + row.sum()), float(const + row @ spec.group_sizes)


# -- attaching a table to a cost spec ------------------------------------------------------
def match(analysis, table):
    """The timed calls of ``analysis`` paired with ``table``'s entries.

    Raises:
        ValueError: the table was measured on a different model (the message names the
            first layer whose name or configuration differs).
    """
    calls = timed_calls(analysis)
    names = [c["name"] for c in calls]
    missing = [n for n in names if n not in table.entries]
    extra = [n for n in table.entries if n not in names]
    if missing or extra:
        raise ValueError(
            f"latency_table was measured on a different model ({table.model!r}): timed layers missing from the "
            f"table {missing[:5]}, table layers not in the model {extra[:5]}. Profile this model: "
            "chipnet_tf.latency.profile(model)"
        )
    for c in calls:
        theirs = table.entries[c["name"]]["signature"]
        if theirs != c["signature"]:
            diff = sorted(k for k in set(theirs) | set(c["signature"]) if theirs.get(k) != c["signature"].get(k))
            raise ValueError(
                f"latency_table was measured on a different model ({table.model!r}): layer {c['name']!r} differs in "
                f"{diff} (model: {[c['signature'].get(k) for k in diff]}, table: {[theirs.get(k) for k in diff]}). "
                "Profile this model: chipnet_tf.latency.profile(model)"
            )
    return calls


def attach(analysis, table):
    """``analysis.spec`` with ``table``'s lookups: a :class:`CostSpec` that evaluates
    ``"latency"`` (predicted ms) besides the four counted resources.

    Raises:
        ValueError: the table does not match the model (see :func:`match`).
        TypeError: ``table`` is not a latency table.
    """
    table = as_table(table)
    calls = match(analysis, table)
    entries = []
    for c in calls:
        e = table.entries[c["name"]]
        entries.append(
            {
                "layer": c["name"],
                "f_in": c["f_in"],
                "f_out": c["f_out"],
                "in_grid": list(e["in_grid"]),
                "out_grid": list(e["out_grid"]),
                "values": [list(row) for row in e["values"]],
                "tile_in": int(e.get("tile_in", 1)),
                "tile_out": int(e.get("tile_out", 1)),
            }
        )
    config = analysis.spec.get_config()
    config["latency"] = {"meta": {**table.meta, "model": table.model}, "fixed_ms": table.fixed_ms, "entries": entries}
    return CostSpec(**config, call_forms=analysis.spec.call_forms)


def spec_meta(spec):
    """The runtime a spec's latency table was measured on (None without a table)."""
    return None if spec.latency is None else spec.latency.meta


def check_export(model_or_spec, quantization):
    """Raises a ValueError when ``quantization`` (of a TFLite export) is not the one the
    latency table of ``model_or_spec`` was measured with; no-op without a table."""
    specs = [model_or_spec] if isinstance(model_or_spec, CostSpec) else [c.spec for c in controllers(model_or_spec)]
    for spec in specs:
        meta = spec_meta(spec)
        if meta is None:
            continue
        measured = meta.get("quantization")
        wanted = None if quantization in (None, "none", "float32") else quantization
        if measured != wanted:
            raise ValueError(
                f"quantization={quantization!r} does not match the latency table, which was measured with "
                f"quantization={measured!r}: export with quantization={measured!r}, or profile again with "
                f"chipnet_tf.latency.profile(model, quantization={wanted!r})"
            )


def summary(table, top=10):
    """A few lines describing ``table``: runtime, entries, dense latency, the costliest layers."""
    dense = {n: float(np.asarray(e["values"])[-1][-1]) for n, e in table.entries.items()}
    lines = [
        f"latency table of {table.model!r}: {len(table.entries)} timed layer calls, dense {table.dense_ms:.3f} ms "
        f"(fixed {table.fixed_ms:.3f} ms); {table.meta.get('runtime')}, {table.meta.get('threads')} thread(s), "
        f"quantization {table.quantization or 'float32'}, tiles {table.meta.get('tiles')}"
    ]
    for name, ms in sorted(dense.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {name:<40} {ms:8.3f} ms")
    return "\n".join(lines)
