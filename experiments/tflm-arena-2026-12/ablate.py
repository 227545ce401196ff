"""Which planner rules matter? Re-predict kept .tflite files with one rule changed at a time.

    /work/main/.venv/bin/python ablate.py results.json MODELS_DIR [more.json MODELS_DIR2 ...]

(run_experiment.py --keep MODELS_DIR writes MODELS_DIR/<family>_<variant>.tflite)
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflm_predict as tp  # noqa: E402


def plan_variant(buffers, tie_forward=False):
    if not tie_forward:
        return tp.greedy_plan(buffers)[1]
    # ties broken by ascending id (as if the sort arrays were filled from the head)
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i]["size"], i))
    remap = [buffers[i] for i in order]
    # greedy_plan reverses ids before its stable sort, so feed it the reversed order
    return tp.greedy_plan(remap[::-1])[1]


def variants(data):
    model = tp.load(data)
    full = tp.allocation_info(model)
    out = {"exact rules": tp.greedy_plan(full)[1]}
    out["no MEAN scratch"] = tp.greedy_plan(tp.allocation_info(model, include_scratch=False))[1]
    out["ties ascending id"] = plan_variant(full, tie_forward=True)
    # no 16-byte alignment: recompute sizes unaligned
    sg = model.subgraphs[0]
    unal = []
    for b in full:
        if b["what"].startswith("t"):
            idx = int(b["what"].split()[0][1:])
            unal.append(dict(b, size=tp.tensor_bytes(sg.tensors[idx])))
        else:
            unal.append(b)
    out["no alignment"] = tp.greedy_plan(unal)[1]
    # graph outputs freed after their producer (not kept to the end)
    out["live-set lower bound"] = tp.live_lower_bound(full)
    out["sum of all planned"] = sum(b["size"] for b in full)
    return out


def main():
    args = sys.argv[1:]
    counts = {}
    total = 0
    for res, mdir in zip(args[::2], args[1::2]):
        for r in json.load(open(res)):
            path = os.path.join(mdir, f"{r['family']}_{r['variant']}.tflite")
            if not os.path.exists(path):
                continue
            total += 1
            for k, v in variants(open(path, "rb").read()).items():
                c = counts.setdefault(k, [0, 0])
                c[0] += v == r["head"]
                c[1] = max(c[1], abs(v - r["head"]))
    print("| rule set | exact | max abs err (bytes) |")
    print("|---|---|---|")
    for k, (n, e) in counts.items():
        print(f"| {k} | {n}/{total} | {e} |")


if __name__ == "__main__":
    main()
