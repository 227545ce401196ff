"""Compares two quick accuracy benchmark files field by field, ignoring timings and dates.

python experiments/package-layout-check-2026-12/compare.py A.json B.json
"""

import json
import sys

IGNORED = ("date_utc", "total_runtime_s", "environment")


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in IGNORED and "second" not in k}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{path}/{key}: only in one file"
            else:
                yield from differences(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            yield from differences(u, v, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


if __name__ == "__main__":
    with open(sys.argv[1]) as f, open(sys.argv[2]) as g:
        found = list(differences(strip(json.load(f)), strip(json.load(g))))
    print("\n".join(found) if found else "identical apart from timings and dates")
    sys.exit(1 if found else 0)
