"""Drift records: one row per (feature, window, pane), the table dashboards and alerts read.

The schema is explicit (``DRIFT_RECORD_SCHEMA``) and versioned (``RECORD_SCHEMA_VERSION``, stored in
the Parquet schema metadata). Records travel as plain ``dict`` objects inside the library and Beam,
and as a ``pyarrow.Table`` everywhere else. Files are written atomically, on local disks or
buckets (``divtransforms.storage``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from divtransforms import storage
from divtransforms.columns import table_from_pylists
from divtransforms.storage import Location

RECORD_SCHEMA_VERSION = 4
# Version 3 adds the data-quality and schema fields (rates, unseen values, column types, schema
# issues, quality severity); files of versions 1 and 2 read with those fields null.
# Version 4 appends the sequential detector's fields (``cusum*``, ``divtransforms.sequential``):
# null in older files, for the global window and for a window an earlier run already counted.
SEVERITIES = ("ok", "insufficient", "warning", "critical")
# Order of concern (escalation, sorting): ok < insufficient < warning < critical.
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

MLE_PARAM_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("reference", pa.float64()),
        ("reference_se", pa.float64()),
        ("window", pa.float64()),
        ("window_se", pa.float64()),
        ("running", pa.float64()),
        ("running_se", pa.float64()),
        ("z", pa.float64()),
        ("p_value", pa.float64()),
    ]
)

# The tests the policy decides on (``divtransforms.significance``): histogram, location (mean)
# and dispersion, with the signed statistic, p-value and effect size each was judged by.
TEST_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("kind", pa.string()),
        ("statistic", pa.float64()),
        ("p_value", pa.float64()),
        ("effect", pa.float64()),
    ]
)

# The window's column as seen: rows per type label (``divtransforms.quality.type_label``;
# ``absent``: rows from inputs without the column).
COLUMN_TYPE_TYPE = pa.struct([("type", pa.string()), ("rows", pa.int64())])
# A schema problem: ``missing_column``, ``type_change`` or ``new_column``, and what was seen.
SCHEMA_ISSUE_TYPE = pa.struct([("code", pa.string()), ("detail", pa.string())])

_TS = pa.timestamp("us", tz="UTC")

DRIFT_RECORD_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("reference_id", pa.string()),
        ("feature", pa.string()),
        ("kind", pa.string()),
        ("window_start", _TS),
        ("window_end", _TS),
        ("pane", pa.int64()),
        ("n", pa.int64()),
        ("n_missing", pa.int64()),
        ("n_invalid", pa.int64()),
        ("missing_rate", pa.float64()),
        ("invalid_rate", pa.float64()),
        ("n_absent", pa.int64()),
        ("n_unseen", pa.int64()),
        ("unseen_rate", pa.float64()),
        ("reference_missing_rate", pa.float64()),
        ("reference_invalid_rate", pa.float64()),
        ("reference_unseen_rate", pa.float64()),
        ("column_types", pa.list_(COLUMN_TYPE_TYPE)),
        ("schema_issues", pa.list_(SCHEMA_ISSUE_TYPE)),
        ("n_reference", pa.int64()),
        ("base", pa.float64()),
        ("alpha", pa.float64()),
        ("entropy_current", pa.float64()),
        ("entropy_reference", pa.float64()),
        ("cross_entropy", pa.float64()),
        ("kl_divergence", pa.float64()),
        ("kl_reverse", pa.float64()),
        ("js_divergence", pa.float64()),
        ("js_distance", pa.float64()),
        ("js_bias", pa.float64()),
        ("js_corrected", pa.float64()),
        ("psi", pa.float64()),
        ("hellinger", pa.float64()),
        ("g_statistic", pa.float64()),
        ("dof", pa.int64()),
        ("p_value", pa.float64()),
        ("counts", pa.list_(pa.int64())),
        ("reference_counts", pa.list_(pa.int64())),
        ("bin_labels", pa.list_(pa.string())),
        ("mle_family", pa.string()),
        ("mle_n", pa.int64()),
        ("mle_n_invalid", pa.int64()),
        ("mle_params", pa.list_(MLE_PARAM_TYPE)),
        ("mle_mean_loglik", pa.float64()),
        ("mle_reference_loglik", pa.float64()),
        ("mle_kl", pa.float64()),
        ("mle_p_value", pa.float64()),
        ("mle_fit", pa.float64()),
        ("tests", pa.list_(TEST_TYPE)),
        ("severity", pa.string()),
        ("severity_reason", pa.string()),
        ("quality_severity", pa.string()),
        ("quality_reason", pa.string()),
        ("created_at", _TS),
        # The feature's CUSUM over windows: location statistic and threshold (in the window's
        # score units), the histogram detector's, which one is above its threshold ("mean",
        # "histogram" or null), its estimated change point and shift (reference sd), and the
        # windows counted since the reference.
        ("cusum", pa.float64()),
        ("cusum_threshold", pa.float64()),
        ("cusum_histogram", pa.float64()),
        ("cusum_histogram_threshold", pa.float64()),
        ("cusum_alarm", pa.string()),
        ("cusum_change_point", _TS),
        ("cusum_shift", pa.float64()),
        ("cusum_windows", pa.int64()),
        # Between-window variation (``divtransforms.variation``; null without a windowed
        # reference): the location's tau in reference standard deviations, the histogram
        # statistic's dispersion factor (E X^2 / dof), the reference windows it was estimated
        # from, the season judged against, and what was done.
        ("tau", pa.float64()),
        ("dispersion", pa.float64()),
        ("reference_windows", pa.int64()),
        ("season", pa.string()),
        ("variation", pa.string()),
    ],
    metadata={b"divtransforms.record_schema_version": str(RECORD_SCHEMA_VERSION).encode()},
)

RECORD_FIELDS: tuple[str, ...] = tuple(DRIFT_RECORD_SCHEMA.names)


class RecordError(ValueError):
    """A drift record or a records file is malformed."""


def records_to_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a ``pyarrow.Table`` with ``DRIFT_RECORD_SCHEMA`` from record dicts.

    Missing optional keys become nulls; unknown keys are an error (a typo would otherwise vanish).
    """
    rows = list(records)
    for i, row in enumerate(rows):
        extra = set(row) - set(RECORD_FIELDS)
        if extra:
            raise RecordError(
                f"record {i} (feature {row.get('feature')!r}) has unknown fields {sorted(extra)}"
            )
    columns = {name: [row.get(name) for row in rows] for name in RECORD_FIELDS}
    # From Arrow buffers when the values allow (pa.array's first call imports pandas).
    table = table_from_pylists(columns, DRIFT_RECORD_SCHEMA)
    return pa.Table.from_pydict(columns, schema=DRIFT_RECORD_SCHEMA) if table is None else table


def sort_records(table: pa.Table) -> pa.Table:
    """Canonical order: feature, window start, pane."""
    if table.num_rows == 0:
        return table
    return table.sort_by(
        [("feature", "ascending"), ("window_start", "ascending"), ("pane", "ascending")]
    )


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Location:
    """Write ``data`` to ``path`` atomically (``divtransforms.storage.write_atomic``)."""
    storage.write_atomic(path, data)
    return storage.location(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Location:
    """Write ``obj`` as pretty JSON atomically."""
    return atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    """The persisted JSON form: indented, keys sorted, newline-terminated."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def write_records_parquet(table: pa.Table, path: str | os.PathLike[str]) -> Location:
    """Write a records table to one Parquet file atomically (temp file + rename)."""
    if not table.schema.equals(DRIFT_RECORD_SCHEMA, check_metadata=False):
        table = table.cast(DRIFT_RECORD_SCHEMA)
    storage.write_atomic(path, lambda fh: pq.write_table(table, fh))
    return storage.location(path)


def write_records_jsonl(table: pa.Table, path: str | os.PathLike[str]) -> Location:
    """Write records as JSON Lines (timestamps ISO 8601, non-finite floats as strings)."""
    lines = []
    for row in table.to_pylist():
        lines.append(json.dumps(_jsonable(row), sort_keys=True, allow_nan=False))
    return atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def read_records(path: str | os.PathLike[str]) -> pa.Table:
    """Read records from a Parquet file or a directory of them (hive ``date=`` partitions allowed),
    local or on a bucket. Files and folders whose names start with ``_`` or ``.`` are ignored
    (state, temp files). Files of older schema versions read with the newer fields null."""
    import pyarrow.dataset as ds

    loc = storage.location(path)
    if isinstance(loc, str):  # a bucket URL (storage.location keeps only URLs as text)
        return _read_remote_records(loc)
    if not loc.exists():
        raise RecordError(f"no drift records at {loc}")
    if loc.is_dir() and not any(
        p.suffix == ".parquet"
        for p in loc.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(loc).parts)
    ):
        return DRIFT_RECORD_SCHEMA.empty_table()
    try:
        dataset = ds.dataset(
            str(loc), format="parquet", partitioning="hive", schema=DRIFT_RECORD_SCHEMA
        )
        table = dataset.to_table(columns=list(RECORD_FIELDS))
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordError(f"cannot read drift records from {loc}: {exc}") from exc
    return table.replace_schema_metadata(DRIFT_RECORD_SCHEMA.metadata)


def _read_remote_records(url: str) -> pa.Table:
    """A records object, or every ``.parquet`` object under a prefix (names of ``_``/``.``
    segments skipped), each read whole in parallel and conformed to the current schema."""
    from concurrent.futures import ThreadPoolExecutor

    if url.endswith(".parquet") and storage.exists(url):
        files = [url]
    else:
        base = url.rstrip("/") + "/"
        files = [
            i.path
            for i in storage.walk(url)
            if i.path.endswith(".parquet")
            and not any(seg.startswith(("_", ".")) for seg in i.path[len(base) :].split("/"))
        ]
        if not files:
            return DRIFT_RECORD_SCHEMA.empty_table()

    def read(file: str) -> pa.Table:
        try:
            return _conform(pq.read_table(pa.BufferReader(storage.read_bytes(file))))
        except pa.ArrowInvalid as exc:
            raise RecordError(f"cannot read drift records from {file}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        tables = list(pool.map(read, files))
    return pa.concat_tables(tables).replace_schema_metadata(DRIFT_RECORD_SCHEMA.metadata)


def _conform(table: pa.Table) -> pa.Table:
    """``table`` with the fields of ``DRIFT_RECORD_SCHEMA`` (absent ones null), in its order."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in DRIFT_RECORD_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=DRIFT_RECORD_SCHEMA)
