"""Markdown tables from run_experiment.py's JSON files.

    /work/main/.venv/bin/python analyze.py results.json [more.json ...] [--models DIR]

Head: predicted (tflm_predict.predict_head, no TFLM) vs reported by TFLM.
Tail: calibrated once per graph (variant 0 of each family) + tflm_predict.tail_width_term.
Flash: calibrated once per graph: file(v) ~= file(v0) + (weights(v) - weights(v0)) + (quant(v) - quant(v0)).
"""

import json
import sys
from collections import defaultdict


def main():
    paths = [a for a in sys.argv[1:] if a.endswith(".json")]
    rows = [r for p in paths for r in json.load(open(p))]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["family"], r.get("dtype", "int8"))].append(r)

    print("### Per model (every measurement)\n")
    print(
        "| family | dtype | v | widths | head (TFLM) | head (pred) | diff | pred w/o scratch | live LB | tail (TFLM) "
        "| tail (pred) | min arena | file | file (pred) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for (fam, dt), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["variant"])
        base = rs[0]
        exact = exact_ns = 0
        max_err = 0
        tail_errs, file_errs, file_naive = [], [], []
        for r in rs:
            d = r["pred_head"] - r["head"]
            exact += d == 0
            exact_ns += r["pred_head_noscratch"] == r["head"]
            max_err = max(max_err, abs(d))
            tail_pred = base["tail"] + r["tail_width_term"] - base["tail_width_term"]
            file_pred = base["file_bytes"] + (r["weights"] - base["weights"]) + (r["quant"] - base["quant"])
            if r is not base:
                tail_errs.append(tail_pred - r["tail"])
                file_errs.append(file_pred - r["file_bytes"])
            file_naive.append(r["file_bytes"] - r["weights"])
            w = " ".join(f"{k}={v}" for k, v in r["widths"].items())
            print(
                f"| {fam} | {dt} | {r['variant']} | {w} | {r['head']} | {r['pred_head']} | {d:+d} | "
                f"{r['pred_head_noscratch']} | {r['live_lower_bound']} | {r['tail']} | "
                f"{tail_pred}{'' if r is not base else ' (calib.)'} | {r.get('min_arena', '')} | {r['file_bytes']} | "
                f"{file_pred}{'' if r is not base else ' (calib.)'} |"
            )
        summary.append((fam, dt, rs, exact, exact_ns, max_err, tail_errs, file_errs, file_naive))

    print("\n### Summary\n")
    print(
        "| family | dtype | models | head exact | max abs head err | exact w/o MEAN scratch | greedy > live LB "
        "| tail err (min..max) | file err (min..max) | file - weights (min..max) | min arena == head+tail |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for fam, dt, rs, exact, exact_ns, max_err, te, fe, fn in summary:
        probes = [r for r in rs if "min_arena" in r]
        mins = sum(r["min_arena"] == r["head"] + r["tail"] for r in probes)
        gap = sum(r["pred_head"] > r["live_lower_bound"] for r in rs)
        print(
            f"| {fam} | {dt} | {len(rs)} | {exact}/{len(rs)} | {max_err} | {exact_ns}/{len(rs)} | {gap}/{len(rs)} | "
            f"{min(te, default=0):+d}..{max(te, default=0):+d} | {min(fe, default=0):+d}..{max(fe, default=0):+d} | "
            f"{min(fn)}..{max(fn)} | {mins}/{len(probes)} |"
        )

    t = defaultdict(list)
    for r in rows:
        for k in ("convert_s", "predict_s", "tflm_init_s", "tflm_invoke_s", "probe_s"):
            if k in r:
                t[k].append(r[k])
    print("\n### Run time per model (median, max)\n")
    print("| step | median | max | n |")
    print("|---|---|---|---|")
    for k, v in t.items():
        v = sorted(v)
        print(f"| {k} | {v[len(v) // 2] * 1e3:.1f} ms | {v[-1] * 1e3:.1f} ms | {len(v)} |")


if __name__ == "__main__":
    main()
