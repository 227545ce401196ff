"""Exact resource counts of a channel-pruned network as functions of kept channels.

Every resource the four budget types measure is a sum of terms ``coef * f1 * f2`` where
``f1`` and ``f2`` are *linear forms* in the kept-channel counts of the groups, e.g. a
convolution's parameters are ``k * C_in * C_out + C_out`` with ``C_in`` the sum of its
input segments' counts (plus unpruned channels) and ``C_out`` its group's count. Evaluated
at the hard counts these are exactly the stripped model's numbers; evaluated at the soft
counts ``R_g = sum_j r_j`` they are the differentiable budget of the paper.

Conventions (see README, "Budget types"):
- channels: output channels of every conv/dense/depthwise/separable layer call;
- volume: the same weighted by the number of output positions (activation volume);
- params: every weight of every layer, trainable or not, as ``count_params()`` counts;
- flops: multiply-accumulates of conv/dense/depthwise/separable kernels plus their bias
  additions, per example (the paper's ``A (k R R_p + R)``).

The fifth budget type, ``latency``, is measured rather than counted: its terms are
:class:`LatencyTerm` lookups ``T(f_in, f_out)`` of a per-layer latency table (milliseconds
measured by :func:`chipnet_tf.latency.profile`) at the values of two linear forms, plus
``coef * f1 * f2`` constants (the fixed cost of ops the table does not vary). Evaluated at
hard counts a lookup rounds each width up to the runtime's channel tile (the staircase);
at soft counts it is the piecewise-bilinear interpolation of the table, differentiable.
A spec has latency terms only when a table was attached (:func:`chipnet_tf.latency.attach`).
"""

import numpy as np

from chipnet_tf import tf_ops

# The four counted resources: every spec has them. LATENCY needs a measured table.
BUDGET_TYPES = ("channels", "volume", "params", "flops")
LATENCY = "latency"
ALL_BUDGET_TYPES = BUDGET_TYPES + (LATENCY,)


def check_budget_type(budget_type):
    if budget_type not in ALL_BUDGET_TYPES:
        raise ValueError(f"Unknown budget_type={budget_type!r}. Accepted: {', '.join(map(repr, ALL_BUDGET_TYPES))}.")
    return budget_type


NO_TABLE = (
    "budget_type='latency' needs a latency table measured on the target device: "
    "table = chipnet_tf.latency.profile(dense_model); "
    "prune_low_budget(model, budget, 'latency', latency_table=table)"
)


class CostSpecBuilder:
    """Collects linear forms and cost terms; ``build()`` returns a :class:`CostSpec`."""

    def __init__(self, group_names, group_sizes):
        self.group_names = list(group_names)
        self.group_sizes = [int(s) for s in group_sizes]
        self._forms = {}
        self._form_list = []
        self.layer_names = []
        self._layer_index = {}
        self._terms = {t: [] for t in BUDGET_TYPES}
        self.one = self.form(1.0, {})
        # {call name: (input form, output form)} of every layer call: what a latency table's
        # lookups read (see chipnet_tf.latency.attach).
        self.call_forms = {}

    def form(self, const, coeffs):
        """Index of the linear form ``const + sum_g coeffs[g] * R_g`` (deduplicated)."""
        coeffs = {int(g): float(m) for g, m in coeffs.items() if m}
        key = (float(const), tuple(sorted(coeffs.items())))
        if key not in self._forms:
            self._forms[key] = len(self._form_list)
            self._form_list.append(key)
        return self._forms[key]

    def add(self, budget_type, layer_name, coef, f1, f2=None):
        if not coef:
            return
        if layer_name not in self._layer_index:
            self._layer_index[layer_name] = len(self.layer_names)
            self.layer_names.append(layer_name)
        f2 = self.one if f2 is None else f2
        self._terms[budget_type].append((float(coef), f1, f2, self._layer_index[layer_name]))

    def constant_value(self, budget_type):
        """The ``budget_type`` total when no form depends on a group (e.g. a builder with
        no groups): the terms evaluated without building a :class:`CostSpec`."""
        const = [c for c, _ in self._form_list]
        return sum(coef * const[f1] * const[f2] for coef, f1, f2, _ in self._terms[budget_type])

    def build(self, latency=None):
        entries = [(f, g, m) for f, (_, coeffs) in enumerate(self._form_list) for g, m in coeffs]
        terms = {t: [list(x) for x in zip(*rows)] if rows else [[], [], [], []] for t, rows in self._terms.items()}
        return CostSpec(
            group_names=self.group_names,
            group_sizes=self.group_sizes,
            form_const=[c for c, _ in self._form_list],
            form_entries=[list(e) for e in entries],
            terms=terms,
            layer_names=self.layer_names,
            latency=latency,
            call_forms=self.call_forms,
        )


class LatencyLookups:
    """The latency terms of a :class:`CostSpec`: one table lookup ``T(f_in, f_out)`` per
    timed layer call, vectorised (grids padded by repeating their last point).

    Args:
        config: ``{"meta": {...}, "fixed_ms": float, "entries": [{"layer", "f_in", "f_out",
            "in_grid", "out_grid", "values", "tile_in", "tile_out"}, ...]}`` (milliseconds;
            ``values[i][j]`` is the latency at ``in_grid[i]`` input and ``out_grid[j]``
            output channels).
        layer_index: ``layer name -> index`` of the spec's layer list.
    """

    def __init__(self, config, layer_index):
        self.config = config
        entries = config["entries"]
        self.meta = dict(config.get("meta", {}))
        self.fixed_ms = float(config.get("fixed_ms", 0.0))
        self.layers = np.asarray([layer_index[e["layer"]] for e in entries], dtype=np.int64)
        self.f_in = np.asarray([e["f_in"] for e in entries], dtype=np.int64)
        self.f_out = np.asarray([e["f_out"] for e in entries], dtype=np.int64)
        self.tile_in = np.asarray([e.get("tile_in", 1) for e in entries], dtype=np.float64)
        self.tile_out = np.asarray([e.get("tile_out", 1) for e in entries], dtype=np.float64)
        gi = max([len(e["in_grid"]) for e in entries] + [1])
        go = max([len(e["out_grid"]) for e in entries] + [1])
        self.in_grid = np.ones((len(entries), gi))
        self.out_grid = np.ones((len(entries), go))
        self.values = np.zeros((len(entries), gi, go))
        for k, e in enumerate(entries):
            ni, no = len(e["in_grid"]), len(e["out_grid"])
            self.in_grid[k] = np.pad(np.asarray(e["in_grid"], float), (0, gi - ni), mode="edge")
            self.out_grid[k] = np.pad(np.asarray(e["out_grid"], float), (0, go - no), mode="edge")
            v = np.asarray(e["values"], float).reshape(ni, no)
            self.values[k] = np.pad(v, ((0, gi - ni), (0, go - no)), mode="edge")

    @staticmethod
    def _staircase(x, tile, grid):
        """Widths as the runtime computes them: rounded up to the tile, at most the dense width."""
        return np.minimum(np.ceil(x / tile - 1e-9) * tile, grid[:, -1])

    def values_at(self, forms, staircase=True):
        """Per lookup, the latency in ms at form values ``forms`` (numpy)."""
        x, y = forms[self.f_in], forms[self.f_out]
        if staircase:
            x, y = self._staircase(x, self.tile_in, self.in_grid), self._staircase(y, self.tile_out, self.out_grid)
        i0, i1, ti = _interval(np, self.in_grid, x)
        j0, j1, tj = _interval(np, self.out_grid, y)
        rows = np.arange(len(x))
        v = self.values
        return (
            (1 - ti) * (1 - tj) * v[rows, i0, j0]
            + (1 - ti) * tj * v[rows, i0, j1]
            + ti * (1 - tj) * v[rows, i1, j0]
            + ti * tj * v[rows, i1, j1]
        )

    def ops_total(self, forms, ops):
        """Sum of the lookups at (soft) form values ``forms``: piecewise-bilinear, no
        staircase, so the gradient is the table's local slope (``ops``: ``keras.ops`` or
        :mod:`chipnet_tf.tf_ops`)."""
        if len(self.layers) == 0:
            return ops.convert_to_tensor(np.float32(self.fixed_ms))
        x, y = ops.take(forms, self.f_in), ops.take(forms, self.f_out)
        i0, i1, ti = _ops_interval(ops, self.in_grid, x)
        j0, j1, tj = _ops_interval(ops, self.out_grid, y)
        _, gi, go = self.values.shape
        base = np.arange(len(self.layers)) * gi * go
        flat = ops.convert_to_tensor(self.values.reshape(-1).astype(np.float32))

        def at(i, j):
            return ops.take(flat, base + i * go + j)

        total = (1 - ti) * (1 - tj) * at(i0, j0) + (1 - ti) * tj * at(i0, j1)
        total += ti * (1 - tj) * at(i1, j0) + ti * tj * at(i1, j1)
        return ops.sum(total) + self.fixed_ms


def _interval(xp, grid, x):
    """For each row: ``(i0, i1, t)`` with ``x`` between ``grid[i0]`` and ``grid[i1]`` at
    fraction ``t`` (clamped to the grid's ends), numpy."""
    g = grid.shape[1]
    x = np.clip(x, grid[:, 0], grid[:, -1])
    i0 = np.minimum(np.sum(grid[:, 1:] < x[:, None], axis=1), g - 1).astype(np.int64)
    i1 = np.minimum(i0 + 1, g - 1)
    lo, hi = grid[np.arange(len(x)), i0], grid[np.arange(len(x)), i1]
    t = np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    return i0, i1, np.clip(t, 0.0, 1.0)


def _ops_interval(ops, grid, x):
    """:func:`_interval` on tensors (``grid`` a numpy array), differentiable in ``x``."""
    g = grid.shape[1]
    rows = np.arange(len(grid)) * g
    flat = ops.convert_to_tensor(grid.reshape(-1).astype(np.float32))
    first = ops.convert_to_tensor(grid[:, 0].astype(np.float32))
    last = ops.convert_to_tensor(grid[:, -1].astype(np.float32))
    x = ops.minimum(ops.maximum(ops.cast(x, "float32"), first), last)
    inner = ops.convert_to_tensor(grid[:, 1:].astype(np.float32))
    i0 = ops.minimum(ops.sum(ops.cast(inner < x[:, None], "int32"), axis=1), g - 1)
    i1 = ops.minimum(i0 + 1, g - 1)
    lo, hi = ops.take(flat, rows + i0), ops.take(flat, rows + i1)
    span = hi - lo
    t = ops.where(span > 0, (x - lo) / ops.where(span > 0, span, ops.ones_like(span)), ops.zeros_like(x))
    return i0, i1, ops.clip(t, 0.0, 1.0)


class CostSpec:
    """Vectorised, serialisable cost model of one network (see module docstring).

    Args:
        group_names: names of the prunable groups, in order.
        group_sizes: channel count of each group in the dense network.
        form_const: constant part of each linear form.
        form_entries: ``[form, group, multiplier]`` triplets: the sparse linear parts.
        terms: ``{budget_type: [coefs, f1s, f2s, layer_indices]}``.
        layer_names: names of the layers the terms belong to (for per-layer reports).
        latency: optional config of the latency lookups (see :class:`LatencyLookups`);
            None when no latency table is attached.
        call_forms: ``{call name: [input form, output form]}`` (not serialised: what
            :func:`chipnet_tf.latency.attach` reads).
    """

    def __init__(
        self, group_names, group_sizes, form_const, form_entries, terms, layer_names, latency=None, call_forms=None
    ):
        self.group_names = list(group_names)
        self.group_sizes = np.asarray(group_sizes, dtype=np.int64)
        self.layer_names = list(layer_names)
        self.form_const = np.asarray(form_const, dtype=np.float64)
        self.form_entries = [list(e) for e in form_entries]
        self.form_matrix = np.zeros((len(self.form_const), len(self.group_names)), dtype=np.float64)
        for f, g, m in self.form_entries:
            self.form_matrix[int(f), int(g)] += m
        self.terms = {}
        for t in BUDGET_TYPES:
            coef, f1, f2, layer = terms[t]
            self.terms[t] = (
                np.asarray(coef, dtype=np.float64),
                np.asarray(f1, dtype=np.int64),
                np.asarray(f2, dtype=np.int64),
                np.asarray(layer, dtype=np.int64),
            )
        self.call_forms = dict(call_forms or {})
        self.latency = None
        if latency is not None:
            for e in latency["entries"]:  # timed layers without a counted cost (Add) join the list
                if e["layer"] not in self.layer_names:
                    self.layer_names.append(e["layer"])
            self.latency = LatencyLookups(latency, {n: i for i, n in enumerate(self.layer_names)})
        self._dense = {t: self.value(self.group_sizes, t) for t in self.budget_types}

    @property
    def budget_types(self):
        """The budget types this spec evaluates: the four counts, and latency with a table."""
        return ALL_BUDGET_TYPES if self.latency is not None else BUDGET_TYPES

    def require(self, budget_type):
        """``budget_type`` when this spec can evaluate it; a one-line ValueError otherwise."""
        check_budget_type(budget_type)
        if budget_type == LATENCY and self.latency is None:
            raise ValueError(NO_TABLE)
        return budget_type

    # -- numpy (exact) -------------------------------------------------------------
    def _forms(self, counts):
        return self.form_const + self.form_matrix @ np.asarray(counts, dtype=np.float64)

    def _term_values(self, counts, budget_type):
        forms = self._forms(counts)
        if budget_type == LATENCY:
            self.require(budget_type)
            return self.latency.values_at(forms)
        coef, f1, f2, _ = self.terms[budget_type]
        return coef * forms[f1] * forms[f2]

    def value(self, counts, budget_type):
        """Absolute resource count for kept-channel ``counts`` (one per group); for latency
        the predicted milliseconds (the table at the counts' tile-rounded widths)."""
        total = float(np.sum(self._term_values(counts, budget_type)))
        return total + self.latency.fixed_ms if budget_type == LATENCY else total

    def dense(self, budget_type):
        """Resource count of the dense (unpruned) network."""
        if budget_type not in self._dense:
            self.require(budget_type)
        return self._dense[budget_type]

    def fraction(self, counts, budget_type):
        dense = self.dense(budget_type)
        return self.value(counts, budget_type) / dense if dense else 1.0

    def layer_values(self, counts, budget_type):
        """``{layer name: resource count}`` for kept-channel ``counts`` (latency: ms; the
        fixed cost of untimed ops is not a layer's)."""
        values = self._term_values(counts, budget_type)
        index = self.latency.layers if budget_type == LATENCY else self.terms[budget_type][3]
        per_layer = np.bincount(index, weights=values, minlength=len(self.layer_names))
        return dict(zip(self.layer_names, per_layer.tolist()))

    # -- TensorFlow (differentiable) ---------------------------------------------
    def tf_fraction(self, counts, budget_type):
        """Differentiable fraction of the dense resource at (soft) ``counts`` (TensorFlow)."""
        return self.ops_fraction(counts, budget_type, tf_ops)

    def ops_fraction(self, counts, budget_type, ops):
        """:meth:`tf_fraction` in ``ops`` (``keras.ops`` for a Keras 3 model, any backend)."""
        dense = self.dense(budget_type)
        if budget_type == LATENCY:
            return self.latency.ops_total(self._ops_forms(counts, ops), ops) / dense
        coef, f1, f2, _ = self.terms[budget_type]
        if len(coef) == 0 or dense == 0:
            return ops.convert_to_tensor(np.float32(1.0))
        forms = self._ops_forms(counts, ops)
        values = ops.convert_to_tensor((coef / dense).astype(np.float32)) * ops.take(forms, f1) * ops.take(forms, f2)
        return ops.sum(values)

    def _ops_forms(self, counts, ops):
        counts = ops.cast(counts, "float32")
        matrix = ops.convert_to_tensor(self.form_matrix.astype(np.float32))
        return ops.convert_to_tensor(self.form_const.astype(np.float32)) + ops.matmul(matrix, counts)

    # -- serialisation -----------------------------------------------------------
    def get_config(self):
        config = {
            "group_names": list(self.group_names),
            "group_sizes": [int(s) for s in self.group_sizes],
            "form_const": self.form_const.tolist(),
            "form_entries": [[int(f), int(g), float(m)] for f, g, m in self.form_entries],
            "terms": {t: [a.tolist() for a in self.terms[t]] for t in BUDGET_TYPES},
            "layer_names": list(self.layer_names),
        }
        if self.latency is not None:  # absent otherwise: configs without a table are unchanged
            config["latency"] = self.latency.config
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
