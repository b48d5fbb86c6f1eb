"""Data quality and schema: what the column looked like, beside what its values looked like.

Distribution drift is half of what breaks a model; the other half is the pipeline: a join that
starts producing nulls, an upstream type change, a column that vanishes. This module is the one
place that turns a window's counts into those signals:

* :func:`type_label` names a column's type at the level that matters (``numeric``, ``string``,
  ``bool``, ``temporal``, ``null``); ``ABSENT`` stands for rows read from an input without the
  column. A window's ``column_types`` (``{label: rows}``) merge by adding.
* :func:`rate_test` compares a rate in the window with the reference's: Fisher's exact test
  (conditional on the total, so valid at every n), one-sided upwards, since a rate that grows
  (more missing, more invalid, more never-seen values) is what breaks a pipeline.
* :func:`quality_tests` runs it on the missing, invalid and unseen rates of a window. The unseen
  rate's reference is the share of reference values seen once (the leave-one-out, Good-Turing
  estimate of the chance that a new draw is a value the reference never held).
* :func:`schema_issues` lists a missing column or a changed type against the reference.

The policy (:mod:`divtransforms.policy`) decides severities from these, with an effect floor in
rate points that does not depend on n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special

from divtransforms.bins import CategoricalBins
from divtransforms.significance import DriftTest

if TYPE_CHECKING:
    from divtransforms.features import FeatureProfile
    from divtransforms.histogram import Histogram

__all__ = [
    "ABSENT",
    "QUALITY_TESTS",
    "merge_type_counts",
    "quality_fields",
    "quality_test_fields",
    "quality_test_fields_of",
    "quality_tests",
    "rate_test",
    "schema_issues",
    "type_label",
]

ABSENT = "absent"
QUALITY_TESTS = ("missing_rate", "invalid_rate", "unseen_rate")
# The type labels a feature of each kind reads without a type change (``null``: a column with no
# values at all, as JSON readers type a field that is always null: counted as missing).
# Text is read as numbers where it parses (CSV reads numeric columns as text); a numeric
# feature's text that mostly does not parse is a type change (see ``schema_issues``).
_COMPATIBLE = {
    "numeric": {"numeric", "bool", "null", "string"},
    "categorical": {"string", "numeric", "bool", "null"},
}


def type_label(col: Any) -> str:
    """``numeric``, ``string``, ``bool``, ``temporal``, ``null`` or ``other`` for a column (or
    an Arrow type)."""
    if isinstance(col, pa.ChunkedArray | pa.Array | pa.DataType):
        t = col if isinstance(col, pa.DataType) else col.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "numeric"
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "string"
        if pa.types.is_boolean(t):
            return "bool"
        if pa.types.is_temporal(t):
            return "temporal"
        if pa.types.is_null(t):
            return "null"
        return "other"
    arr = np.asarray(col)
    kind = arr.dtype.kind
    if kind in "iuf":
        return "numeric"
    if kind == "b":
        return "bool"
    if kind in "mM":
        return "temporal"
    if kind in "US":
        return "string"
    if kind == "O":
        types = {type(v) for v in arr[:1000].tolist() if v is not None}
        if not types:
            return "null"
        if all(issubclass(t, int | float) and not issubclass(t, bool) for t in types):
            return "numeric"
        if types <= {bool}:
            return "bool"
        return "string" if str in types else "other"
    return "other"


def merge_type_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + int(v)
    return out


def rate_test(x: Any, n: Any, x_ref: Any, n_ref: Any) -> tuple[Any, Any, Any]:
    """``(z, p_value, effect)``: is the rate ``x / n`` above the reference's ``x_ref / n_ref``?

    Fisher's exact test, one-sided: the p-value is the chance, given the ``x + x_ref`` events
    of both samples together, that the window holds ``x`` or more of them. ``effect`` is the
    difference of the rates (window minus reference; a fraction, 0.05 = 5 rate points) and ``z``
    the normal score of the p-value. NaN where either sample is empty. Vectorised.
    """
    x, n, x_ref, n_ref = (np.asarray(v, dtype=np.float64) for v in (x, n, x_ref, n_ref))
    ok = (n > 0) & (n_ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(
            ok,
            hypergeom_sf(x - 1, np.where(ok, n + n_ref, 1), x + x_ref, np.where(ok, n, 1)),
            np.nan,
        )
        effect = np.where(ok, x / n - x_ref / n_ref, np.nan)
    p = np.clip(p, 0.0, 1.0)
    z = np.where(ok, norm_isf(np.maximum(p, 1e-300)), np.nan)
    return z, p, effect


def hypergeom_sf(k: Any, total: Any, good: Any, draws: Any) -> Any:
    """``scipy.stats.hypergeom.sf(k, total, good, draws)``, element for element the same values.

    A window with no event of the kind (``k < 0``: no missing, invalid or unseen value, the usual
    case) has the survival probability 1 (scipy's own rule below the support), and scipy.stats,
    whose import costs about a second, is imported only when some element needs its
    distribution function.
    """
    k, total, good, draws = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (k, total, good, draws))
    )
    with np.errstate(invalid="ignore"):
        valid = (total > 0) & (good >= 0) & (draws >= 0) & (good <= total) & (draws <= total)
        for v in (total, good, draws):
            valid &= v == np.round(v)
        low = np.maximum(draws - (total - good), 0)
        trivial = (k < low) | np.isneginf(k)  # below the support: sf = 1
    out = np.where(valid, 1.0, np.nan)
    rest = ~trivial | np.isnan(k)
    if np.any(rest):
        from scipy import stats  # here: importing scipy.stats costs ~1 s

        out[rest] = stats.hypergeom.sf(k[rest], total[rest], good[rest], draws[rest])
    return out[()] if out.ndim == 0 else out


def norm_isf(q: Any) -> Any:
    """``scipy.stats.norm.isf(q)``, element for element the same values (``-ndtri(q)``; +inf
    at 0, -inf at 1, NaN outside [0, 1]), without importing scipy.stats."""
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        inside = -special.ndtri(q) * 1.0 + 0.0  # scipy: _isf(q) * scale + loc
        out = np.where((q > 0) & (q < 1), inside, np.nan)
    out = np.where(q == 1, -np.inf, np.where(q == 0, np.inf, out))
    return out[()] if out.ndim == 0 else out


def quality_tests(
    window: Mapping[str, Any], reference: Mapping[str, Any], *, unseen: bool
) -> list[DriftTest]:
    """The rate tests of windows of one feature (arrays or scalars; see :func:`rate_test`).

    ``window`` and ``reference`` hold ``n`` (binned values), ``n_missing``, ``n_invalid`` and,
    with ``unseen``, ``n_unseen`` (window) and ``n_singletons`` (reference). The missing rate
    is over the rows that had the column, the invalid rate over its non-missing values, the
    unseen rate over its valid values.
    """

    def arr(d: Mapping[str, Any], key: str) -> np.ndarray:
        return np.asarray(d.get(key, 0), dtype=np.float64)

    n, n_ref = arr(window, "n"), arr(reference, "n")
    miss, miss_ref = arr(window, "n_missing"), arr(reference, "n_missing")
    bad, bad_ref = arr(window, "n_invalid"), arr(reference, "n_invalid")
    tests = [
        DriftTest(
            "missing_rate",
            "quality",
            *rate_test(miss, n + miss + bad, miss_ref, n_ref + miss_ref + bad_ref),
        ),
        DriftTest("invalid_rate", "quality", *rate_test(bad, n + bad, bad_ref, n_ref + bad_ref)),
    ]
    if unseen:
        tests.append(
            DriftTest(
                "unseen_rate",
                "quality",
                *rate_test(arr(window, "n_unseen"), n, arr(reference, "n_singletons"), n_ref),
            )
        )
    return tests


def schema_issues(
    kind: str,
    expected: str | None,
    observed: Mapping[str, int],
    *,
    n_valid: int = 0,
    n_invalid: int = 0,
) -> list[tuple[str, str]]:
    """``[(code, text)]``: ``missing_column`` when rows came from inputs without the column,
    ``type_change`` when values came with a type the reference's ``kind`` (and, when known, its
    ``expected`` type label) does not read as such: for a numeric feature, text of which more
    values are invalid than valid; for a categorical one whose reference was text, numbers."""
    issues: list[tuple[str, str]] = []
    rows = sum(observed.values())
    absent = int(observed.get(ABSENT, 0))
    if absent:
        issues.append(
            ("missing_column", f"column missing from inputs holding {absent} of {rows} rows")
        )
    allowed = set(_COMPATIBLE.get(kind, ()))
    if expected == "string" and kind == "categorical":
        allowed = {"string", "null"}  # text categories arriving as numbers: an upstream change
    changed = {t: c for t, c in observed.items() if t != ABSENT and t not in allowed and c}
    if kind == "numeric" and observed.get("string") and expected != "string":
        if n_invalid > n_valid:
            changed["string"] = int(observed["string"])
    if changed:
        seen = ", ".join(f"{t} ({c} rows)" for t, c in sorted(changed.items()))
        issues.append(
            ("type_change", f"type changed: {expected or kind} in the reference, {seen} here")
        )
    return issues


def _share_matching(arr: pa.Array, pattern: str) -> float:
    """The share of a (non-empty) text array's values that match ``pattern``."""
    return (pc.sum(pc.match_substring_regex(arr, pattern)).as_py() or 0) / len(arr)


def column_role(col: Any, min_rows: int = 100) -> str | None:
    """Why a column should not be a feature by default, or None: text that parses as event times
    (95% of its values), or text or integers unique per row (identifiers), judged on at least
    ``min_rows`` non-missing values."""
    from divtransforms.eventtime import parse_event_times

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not isinstance(arr, pa.Array):
        try:
            arr = pa.array(np.asarray(arr).tolist())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    arr = arr.drop_null()
    t = arr.type
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    if len(arr) < min_rows or not (text or pa.types.is_integer(t)):
        return None
    if text:
        numeric = pc.match_substring_regex(arr, r"^\s*[+-]?\d+(\.\d*)?\s*$")
        # Every text an event time is read from starts with a digit, a sign or a point
        # (``eventtime``'s patterns): a column where fewer than 95% do is not parsed at all.
        if not pc.all(numeric).as_py() and _share_matching(arr, r"^\s*[-+.\d]") >= 0.95:
            _, ok, _ = parse_event_times(arr, "column")
            if ok.mean() >= 0.95:
                return "its values are dates or times (an event-time column)"
    if pc.count_distinct(arr).as_py() == len(arr):
        return f"every one of its {len(arr)} values is distinct (an identifier)"
    return None


def _tracks_unseen(fp: FeatureProfile) -> bool:
    spec = fp.bins
    return (
        isinstance(spec, CategoricalBins)
        and fp.n_singletons is not None
        and (spec.track_unseen or spec.membership is not None)
    )


def _rate(x: float, n: float) -> float:
    return x / n if n else math.nan


def quality_fields(
    fp: FeatureProfile, hist: Histogram, columns: Mapping[str, int]
) -> dict[str, Any]:
    """A drift record's rates, unseen values, column types and schema issues of one feature's
    window (``records.DRIFT_RECORD_SCHEMA``)."""
    ref = fp.histogram
    unseen = _tracks_unseen(fp)
    n_unseen = int(hist.counts[-1]) if unseen else None
    issues = schema_issues(
        fp.kind, fp.column_type, columns, n_valid=hist.n, n_invalid=hist.n_invalid
    )
    return {
        "invalid_rate": _rate(hist.n_invalid, hist.n + hist.n_invalid),
        "n_absent": int(columns.get(ABSENT, 0)),
        "n_unseen": n_unseen,
        "unseen_rate": _rate(n_unseen, hist.n) if n_unseen is not None else math.nan,
        "reference_missing_rate": _rate(ref.n_missing, ref.n_total),
        "reference_invalid_rate": _rate(ref.n_invalid, ref.n + ref.n_invalid),
        "reference_unseen_rate": _rate(fp.n_singletons or 0, ref.n) if unseen else math.nan,
        "column_types": [{"type": t, "rows": int(c)} for t, c in sorted(columns.items())],
        "schema_issues": [{"code": c, "detail": d} for c, d in issues],
    }


def quality_test_fields(fp: FeatureProfile, hist: Histogram) -> list[DriftTest]:
    """The quality tests of one feature's window against its reference."""
    return quality_test_fields_of([(fp, hist)])[0]


def quality_test_fields_of(
    pairs: Sequence[tuple[FeatureProfile, Histogram]],
) -> list[list[DriftTest]]:
    """The quality tests of many features' windows, one vectorised :func:`quality_tests` call
    for all of them (a window of 1,000 features makes 1,000 x 3 rate tests; scipy's per-call
    overhead dominated when each was a call of its own). Element ``i`` of the result holds the
    tests of ``pairs[i]``: every value is the one a call on that feature alone gives, since the
    tests are elementwise."""
    if not pairs:
        return []
    tracks = [_tracks_unseen(fp) for fp, _ in pairs]
    window = {
        "n": [h.n for _, h in pairs],
        "n_missing": [h.n_missing for _, h in pairs],
        "n_invalid": [h.n_invalid for _, h in pairs],
        "n_unseen": [
            int(h.counts[-1]) if t else 0 for (_, h), t in zip(pairs, tracks, strict=True)
        ],
    }
    reference = {
        "n": [fp.histogram.n for fp, _ in pairs],
        "n_missing": [fp.histogram.n_missing for fp, _ in pairs],
        "n_invalid": [fp.histogram.n_invalid for fp, _ in pairs],
        "n_singletons": [fp.n_singletons or 0 for fp, _ in pairs],
    }
    tests = quality_tests(window, reference, unseen=any(tracks))
    out: list[list[DriftTest]] = []
    for i, unseen in enumerate(tracks):
        mine = tests if unseen else [t for t in tests if t.name != "unseen_rate"]
        out.append(
            [DriftTest(t.name, t.kind, t.statistic[i], t.p_value[i], t.effect[i]) for t in mine]
        )
    return out
