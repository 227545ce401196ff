"""Markdown tables from results.jsonl (validation) and test.jsonl (the chosen setting only).

PYTHONPATH=. python experiments/search-equal-training-2026-12/summarize.py [--kd 0.0] [--test]
"""

import argparse
import collections
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CELLS = [("flops", 0.05), ("flops", 0.02), ("channels", 0.1), ("channels", 0.05)]


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def label(rec):
    s = rec["search_epochs"]
    name = {"chipnet": "ChipNet", "chipnet_masks_dense": "ChipNet masks, dense weights"}.get(
        rec["method"], rec["method"]
    )
    return name if s is None else f"{name} S={s}/{rec['total_epochs']}"


def fmt(values):
    values = 100 * np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} (n={len(values)})"


def table(records, key="val"):
    by = collections.defaultdict(list)
    rows = []
    for rec in records:
        row = label(rec)
        if row not in rows:
            rows.append(row)
        by[(row, rec["budget_type"], rec["budget"])].append(rec[key])
    order = {"random": 0, "l1": 1, "uniform": 2}
    rows.sort(key=lambda r: (order.get(r, 3), r))
    head = "| method | " + " | ".join(f"{t} {b}" for t, b in CELLS) + " |"
    lines = [head, "|---" * (len(CELLS) + 1) + "|"]
    for row in rows:
        cells = [fmt(by[(row, t, b)]) if by[(row, t, b)] else "" for t, b in CELLS]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def one_channel(records):
    by = collections.defaultdict(list)
    for rec in records:
        by[(label(rec), rec["budget_type"], rec["budget"])].append(rec["groups_with_one_channel"])
    return "\n".join(f"{k[0]} {k[1]} {k[2]}: {v}" for k, v in sorted(by.items()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kd", type=float, default=0.0)
    p.add_argument("--test", action="store_true", help="also print test.jsonl's table")
    p.add_argument("--one-channel", action="store_true", help="one-channel groups per run")
    args = p.parse_args()
    records = [r for r in load(os.path.join(HERE, "results.jsonl")) if r["kd"] == args.kd]
    print(table(records))
    print()
    print(table(records, "val_before_finetune"))
    if args.one_channel:
        print(one_channel(records))
    if args.test:
        print()
        print(table([r for r in load(os.path.join(HERE, "test.jsonl")) if r["kd"] == args.kd], "test"))


if __name__ == "__main__":
    main()
