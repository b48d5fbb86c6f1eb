"""Drift records: one row per (feature, window, pane), the table dashboards and alerts read.

The schema is explicit (``DRIFT_RECORD_SCHEMA``) and versioned (``RECORD_SCHEMA_VERSION``, stored in
the Parquet schema metadata). Records travel as plain ``dict`` objects inside the library and Beam,
and as a ``pyarrow.Table`` everywhere else. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

RECORD_SCHEMA_VERSION = 3
# Version 3 adds the data-quality and schema fields (rates, unseen values, column types, schema
# issues, quality severity); files of versions 1 and 2 read with those fields null.
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
    return pa.Table.from_pydict(columns, schema=DRIFT_RECORD_SCHEMA)


def sort_records(table: pa.Table) -> pa.Table:
    """Canonical order: feature, window start, pane."""
    if table.num_rows == 0:
        return table
    return table.sort_by(
        [("feature", "ascending"), ("window_start", "ascending"), ("pane", "ascending")]
    )


class StorageError(OSError):
    """Writing persisted state failed (read-only or full disk, permissions): names the file."""


#: Temp files of :func:`_atomic_write`: ``.<name>.<8 random chars>.tmp`` next to the target.
TEMP_FILE_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``), else by a set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> Path:
    """``write(tmp)`` then fsync and rename over ``path``. The file gets the mode a plain
    ``open()`` would give (0666 minus the umask), not mkstemp's 0600. OS errors (read-only or
    full disk) become :class:`StorageError` naming ``path``; the temp file is removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if isinstance(exc, StorageError):
            raise
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StorageError(exc.errno, f"cannot write {path}: {reason}") from exc
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def remove_stale_temp_files(directory: str | os.PathLike[str], *, recursive: bool = True) -> int:
    """Remove the temp files a killed :func:`_atomic_write` left in ``directory``; returns how
    many. Call it only while no writer is active there (the monitor holds its run lock)."""
    root = Path(directory)
    if not root.is_dir():
        return 0
    removed = 0
    for p in root.rglob(".*.tmp") if recursive else root.glob(".*.tmp"):
        if TEMP_FILE_RE.match(p.name) and p.is_file():
            try:
                p.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return _atomic_write(Path(path), write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as pretty JSON atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_records_parquet(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write a records table to one Parquet file atomically (temp file + rename)."""
    if not table.schema.equals(DRIFT_RECORD_SCHEMA, check_metadata=False):
        table = table.cast(DRIFT_RECORD_SCHEMA)
    return _atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def write_records_jsonl(table: pa.Table, path: str | os.PathLike[str]) -> Path:
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
    """Read records from a Parquet file or a directory of them (hive ``date=`` partitions allowed).

    Files and folders whose names start with ``_`` or ``.`` are ignored (state, temp files).
    """
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise RecordError(f"no drift records at {path}")
    if path.is_dir() and not any(
        p.suffix == ".parquet"
        for p in path.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    ):
        return DRIFT_RECORD_SCHEMA.empty_table()
    try:
        dataset = ds.dataset(
            str(path), format="parquet", partitioning="hive", schema=DRIFT_RECORD_SCHEMA
        )
        table = dataset.to_table(columns=list(RECORD_FIELDS))
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordError(f"cannot read drift records from {path}: {exc}") from exc
    return table.replace_schema_metadata(DRIFT_RECORD_SCHEMA.metadata)
