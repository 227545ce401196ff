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
"""

import numpy as np

from chipnet_tf.compat import tf

BUDGET_TYPES = ("channels", "volume", "params", "flops")


def check_budget_type(budget_type):
    if budget_type not in BUDGET_TYPES:
        raise ValueError(f"Unknown budget_type={budget_type!r}. Accepted: {', '.join(map(repr, BUDGET_TYPES))}.")
    return budget_type


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

    def build(self):
        entries = [(f, g, m) for f, (_, coeffs) in enumerate(self._form_list) for g, m in coeffs]
        terms = {t: [list(x) for x in zip(*rows)] if rows else [[], [], [], []] for t, rows in self._terms.items()}
        return CostSpec(
            group_names=self.group_names,
            group_sizes=self.group_sizes,
            form_const=[c for c, _ in self._form_list],
            form_entries=[list(e) for e in entries],
            terms=terms,
            layer_names=self.layer_names,
        )


class CostSpec:
    """Vectorised, serialisable cost model of one network (see module docstring).

    Args:
        group_names: names of the prunable groups, in order.
        group_sizes: channel count of each group in the dense network.
        form_const: constant part of each linear form.
        form_entries: ``[form, group, multiplier]`` triplets: the sparse linear parts.
        terms: ``{budget_type: [coefs, f1s, f2s, layer_indices]}``.
        layer_names: names of the layers the terms belong to (for per-layer reports).
    """

    def __init__(self, group_names, group_sizes, form_const, form_entries, terms, layer_names):
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
        self._dense = {t: self.value(self.group_sizes, t) for t in BUDGET_TYPES}

    # -- numpy (exact) -------------------------------------------------------------
    def _term_values(self, counts, budget_type):
        counts = np.asarray(counts, dtype=np.float64)
        forms = self.form_const + self.form_matrix @ counts
        coef, f1, f2, _ = self.terms[budget_type]
        return coef * forms[f1] * forms[f2]

    def value(self, counts, budget_type):
        """Absolute resource count for kept-channel ``counts`` (one per group)."""
        return float(np.sum(self._term_values(counts, budget_type)))

    def dense(self, budget_type):
        """Resource count of the dense (unpruned) network."""
        return self._dense[budget_type]

    def fraction(self, counts, budget_type):
        dense = self.dense(budget_type)
        return self.value(counts, budget_type) / dense if dense else 1.0

    def layer_values(self, counts, budget_type):
        """``{layer name: resource count}`` for kept-channel ``counts``."""
        values = self._term_values(counts, budget_type)
        per_layer = np.bincount(self.terms[budget_type][3], weights=values, minlength=len(self.layer_names))
        return dict(zip(self.layer_names, per_layer.tolist()))

    # -- TensorFlow (differentiable) ---------------------------------------------
    def tf_fraction(self, counts, budget_type):
        """Differentiable fraction of the dense resource at (soft) ``counts``."""
        coef, f1, f2, _ = self.terms[budget_type]
        dense = self.dense(budget_type)
        if len(coef) == 0 or dense == 0:
            return tf.constant(1.0, tf.float32)
        counts = tf.cast(counts, tf.float32)
        forms = tf.constant(self.form_const, tf.float32) + tf.linalg.matvec(
            tf.constant(self.form_matrix, tf.float32), counts
        )
        values = tf.constant(coef / dense, tf.float32) * tf.gather(forms, f1) * tf.gather(forms, f2)
        return tf.reduce_sum(values)

    # -- serialisation -----------------------------------------------------------
    def get_config(self):
        return {
            "group_names": list(self.group_names),
            "group_sizes": [int(s) for s in self.group_sizes],
            "form_const": self.form_const.tolist(),
            "form_entries": [[int(f), int(g), float(m)] for f, g, m in self.form_entries],
            "terms": {t: [a.tolist() for a in self.terms[t]] for t in BUDGET_TYPES},
            "layer_names": list(self.layer_names),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
