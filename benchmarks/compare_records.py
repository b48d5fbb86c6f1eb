"""Compare two drift-record files field by field (``python -m benchmarks.compare_records A B``).

Used to show that a change leaves the numbers alone: every field of every (feature, window,
pane) record must be identical, except the run id and the creation time. Floats are compared
bit for bit (NaN equals NaN), or with ``--rtol R`` (``python -m benchmarks.compare_records A B
--rtol 1e-9``) equal when they differ by at most ``R`` relative to the larger one (for a change
meant to move results by rounding only; every other field must still be identical). Exit
status 1 and a list of the differences otherwise.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pyarrow.parquet as pq

IGNORED = ("run_id", "created_at")


def _same(a: Any, b: Any, rtol: float = 0.0) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return True
        return rtol > 0 and math.isfinite(a) and abs(a - b) <= rtol * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rtol) for k in a)
    return a == b


def relative_difference(a: Any, b: Any) -> float:
    """The largest relative difference between the floats of ``a`` and ``b`` (same shape)."""
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        return abs(a - b) / max(abs(a), abs(b)) if math.isfinite(a - b) else math.inf
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((relative_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max((relative_difference(a[k], b[k]) for k in a), default=0.0)
    return 0.0 if a == b else math.inf


def differences(
    path_a: str, path_b: str, rtol: float = 0.0, worst: dict[str, float] | None = None
) -> list[str]:
    """The differing fields of two record files; ``worst`` (if given) receives each float
    field's largest relative difference."""

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
            if field in IGNORED:
                continue
            if worst is not None:
                rel = relative_difference(value, b[key][field])
                if rel:
                    worst[field] = max(worst.get(field, 0.0), rel)
            if not _same(value, b[key][field], rtol):
                diffs.append(f"{key} {field}: {str(value)[:80]} != {str(b[key][field])[:80]}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    args = list(argv or sys.argv[1:])
    rtol = 0.0
    if "--rtol" in args:
        i = args.index("--rtol")
        rtol = float(args[i + 1])
        del args[i : i + 2]
    path_a, path_b = args[:2]
    diffs = differences(path_a, path_b, rtol)
    n = pq.read_metadata(path_a).num_rows
    print(f"{n} records compared: {len(diffs)} differences")
    for d in diffs[:50]:
        print("  " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
