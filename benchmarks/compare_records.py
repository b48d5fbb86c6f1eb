"""Compare two drift-record files field by field (``python -m benchmarks.compare_records A B``).

Used to show that a change leaves the numbers alone: every field of every (feature, window,
pane) record must be identical, except the run id and the creation time. Floats are compared
bit for bit (NaN equals NaN). Exit status 1 and a list of the differences otherwise.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pyarrow.parquet as pq

IGNORED = ("run_id", "created_at")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def differences(path_a: str, path_b: str) -> list[str]:
    def rows(path: str) -> dict[tuple, dict]:
        out = {}
        for r in pq.read_table(path).to_pylist():
            out[(r["feature"], str(r["window_start"]), r["pane"])] = r
        return out

    a, b = rows(path_a), rows(path_b)
    diffs = [f"only in {path_a}: {k}" for k in a.keys() - b.keys()]
    diffs += [f"only in {path_b}: {k}" for k in b.keys() - a.keys()]
    for key in sorted(a.keys() & b.keys()):
        for field, value in a[key].items():
            if field not in IGNORED and not _same(value, b[key][field]):
                diffs.append(f"{key} {field}: {str(value)[:80]} != {str(b[key][field])[:80]}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    path_a, path_b = argv or sys.argv[1:3]
    diffs = differences(path_a, path_b)
    n = pq.read_metadata(path_a).num_rows
    print(f"{n} records compared: {len(diffs)} differences")
    for d in diffs[:50]:
        print("  " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
