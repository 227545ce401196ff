"""Accuracy benchmark, summary: mean and spread over seeds, exactness, stability, transfer."""

import numpy as np

from benchmarks.accuracy.methods import METHODS, STRUCTURED


# -- summaries ------------------------------------------------------------------------
def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "n": int(values.size),
    }


def _stability(runs):
    return {
        "accuracy": _mean_std([r["accuracy"] for r in runs]),
        "min_accuracy": min(r["accuracy"] for r in runs),
        "all_finite": all(r["finite"] for r in runs),
        "max_groups_with_one_channel": max(r["groups_with_one_channel"] for r in runs),
        "minimal_network_runs": sum(r["minimal_network"] for r in runs),
    }


def cost(seeds_out):
    """Per method: mean seconds of search (search, sparsity training or iterative pruning) and
    of fine-tuning over every run, and its training epochs (after the dense pretraining)."""
    by_method = {}
    for seed_out in seeds_out:
        for r in seed_out["runs"]:
            by_method.setdefault(r["method"], []).append(r)
    out = {}
    for method in sorted(by_method, key=METHODS.index):
        runs = by_method[method]
        out[method] = {
            "runs": len(runs),
            "search_seconds": float(np.mean([r["search_seconds"] for r in runs])),
            "finetune_seconds": float(np.mean([r["finetune_seconds"] for r in runs])),
            "search_epochs": sorted({r["search_epochs"] for r in runs}),
            "finetune_epochs": sorted({r["finetune_epochs"] for r in runs}),
            "train_epochs": sorted({r["train_epochs"] for r in runs}),
        }
    selection = [s["slimming"]["selection_seconds"] for s in seeds_out if "selection_seconds" in s.get("slimming", {})]
    if selection and "slimming" in out:
        out["slimming"]["lambda_selection_seconds_per_seed"] = float(np.mean(selection))
    return out


def summarize(seeds_out, transfer_out):
    """Mean +- std over seeds per (budget type, budget, method), stability and exactness checks."""
    rows = {}
    for seed_out in seeds_out:
        for r in seed_out["runs"]:
            types = [r["budget_type"]] if r["method"] != "tfmot" else ["weights"]
            for t in types:
                rows.setdefault((t, r["budget"], r["method"]), []).append(r)
    table = []
    for (t, budget, method), runs in sorted(
        rows.items(), key=lambda kv: (kv[0][0], -kv[0][1], METHODS.index(kv[0][2]))
    ):
        row = {
            "budget_type": t,
            "budget": budget,
            "method": method,
            "accuracy": _mean_std([r["accuracy"] for r in runs]),
        }
        if method != "tfmot":
            row["accuracy_before_finetune"] = _mean_std([r["accuracy_before_finetune"] for r in runs])
            row["achieved"] = _mean_std([r["achieved"] for r in runs])
            row["max_achieved"] = max(r["achieved"] for r in runs)
            row["params_fraction"] = _mean_std([r["params_fraction"] for r in runs])
            row["flops_fraction"] = _mean_std([r["flops_fraction"] for r in runs])
        else:
            row["nonzero_params_fraction"] = _mean_std([r["nonzero_params_fraction"] for r in runs])
        row["all_finite"] = all(r["finite"] for r in runs)
        table.append(row)
    dense = _mean_std([s["dense"]["accuracy"] for s in seeds_out])
    structured = [r for s in seeds_out for r in s["runs"] if r["method"] != "tfmot"]
    exact = {
        "runs": len(structured),
        "within_budget": sum(r["within_budget"] for r in structured),
        "params_equal_prediction": sum(r["params"] == r["params_predicted"] for r in structured),
        "flops_equal_profiler": sum(r["flops"] == r["flops_profiler"] for r in structured),
        "max_overshoot": max((r["achieved"] - r["target"] for r in structured), default=0.0),
        "max_shortfall": max((r["target"] - r["achieved"] for r in structured), default=0.0),
    }
    smallest = min((r["budget"] for r in structured), default=None)
    extreme = [r for r in structured if r["budget"] == smallest]

    stability = {
        "budget": smallest,
        "chance": 0.1,
        "groups": len(extreme[0]["kept_per_group"]) if extreme else None,
        "by_type": {
            t: {
                m: _stability([r for r in extreme if r["method"] == m and r["budget_type"] == t])
                for m in STRUCTURED
                if any(r["method"] == m and r["budget_type"] == t for r in extreme)
            }
            for t in sorted({r["budget_type"] for r in extreme})
        },
    }
    transfer = {}
    for seed_out in transfer_out:
        for r in seed_out["runs"]:
            transfer.setdefault((r["budget"], r["method"]), []).append(r)
    transfer_table = [
        {
            "budget": b,
            "variant": m,
            "accuracy": _mean_std([r["accuracy"] for r in runs]),
            "mask_overlap_with_direct": _mean_std([r["mask_overlap_with_direct"] for r in runs]),
        }
        for (b, m), runs in sorted(transfer.items(), key=lambda kv: -kv[0][0])
    ]
    return {
        "dense_accuracy": dense,
        "cost": cost(seeds_out),
        "table": table,
        "exactness": exact,
        "stability": stability,
        "transfer": transfer_table,
    }
