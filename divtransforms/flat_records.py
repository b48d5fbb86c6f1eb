"""Drift records as flat table rows: the layout of the SQL and BigQuery history tables.

The columns are derived from ``DRIFT_RECORD_SCHEMA`` itself, so a field added to the records
flows through without touching this module: every scalar field (string, integer, float,
timestamp) becomes a column of its own; every nested field (lists such as ``counts`` and
``bin_labels``, the ``mle_params`` and ``tests`` structs) goes into one JSON column, ``details``.
Two key columns make a row's identity explicit and non-null: ``window_key`` (the window start in
ISO 8601 UTC, ``"-"`` for an unwindowed record) and ``pane``; with ``run_id`` and ``feature``
they form the primary key, so writing a run twice writes nothing twice. ``monitor`` names the
monitor that wrote the row (several monitors can share one table; dashboards filter on it).

Non-finite floats (NaN, infinities) are stored as NULL in the flat columns (SQLite and BigQuery's
JSON loads cannot hold them portably); inside ``details`` they are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` like the JSON Lines export.

>>> from divtransforms.flat_records import flat_columns, KEY_COLUMNS
>>> KEY_COLUMNS
('run_id', 'feature', 'window_key', 'pane')
>>> dict(flat_columns())["js_divergence"], dict(flat_columns())["window_start"]
('float', 'timestamp')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from divtransforms.records import DRIFT_RECORD_SCHEMA, RECORD_SCHEMA_VERSION

__all__ = [
    "DETAILS_COLUMN",
    "KEY_COLUMNS",
    "bigquery_row",
    "bigquery_schema",
    "flat_columns",
    "flatten_record",
    "nested_fields",
    "window_key",
]

DETAILS_COLUMN = "details"
KEY_COLUMNS = ("run_id", "feature", "window_key", "pane")
SCHEMA_VERSION_COLUMN = "record_schema_version"

_BIGQUERY_TYPES = {
    "string": "STRING",
    "int": "INT64",
    "float": "FLOAT64",
    "timestamp": "TIMESTAMP",
    "json": "JSON",
}


def _kind(dtype: pa.DataType) -> str | None:
    """Portable column kind of a scalar Arrow type; None for nested types."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return "int"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "timestamp"
    return None


def flat_columns(schema: pa.Schema = DRIFT_RECORD_SCHEMA) -> list[tuple[str, str]]:
    """``[(column, kind)]`` of the flat table, kind in string/int/float/timestamp/json.

    The record's scalar fields in schema order, then ``monitor``, ``window_key``,
    ``record_schema_version`` and the ``details`` JSON column.
    """
    cols = [(f.name, k) for f in schema if (k := _kind(f.type)) is not None]
    return [
        *cols,
        ("monitor", "string"),
        ("window_key", "string"),
        (SCHEMA_VERSION_COLUMN, "int"),
        (DETAILS_COLUMN, "json"),
    ]


def nested_fields(schema: pa.Schema = DRIFT_RECORD_SCHEMA) -> list[str]:
    """The record fields that go into the ``details`` JSON column."""
    return [f.name for f in schema if _kind(f.type) is None]


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if hasattr(value, "to_pydatetime"):  # pandas / numpy timestamps
        return _utc(value.to_pydatetime())
    raise TypeError(f"not a timestamp: {value!r}")


def window_key(window_start: Any) -> str:
    """The window start as ISO 8601 UTC (microseconds), ``"-"`` for an unwindowed record."""
    start = _utc(window_start)
    return "-" if start is None else start.isoformat(timespec="microseconds")


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def flatten_record(
    record: Mapping[str, Any],
    schema: pa.Schema = DRIFT_RECORD_SCHEMA,
    *,
    details_as_text: bool = True,
    monitor: str | None = None,
) -> dict[str, Any]:
    """One flat row of ``record`` (a drift-record dict); missing fields are NULL.

    ``details`` is a JSON string (``details_as_text``) or the JSON-safe mapping itself.
    """
    row: dict[str, Any] = {}
    for name, kind in flat_columns(schema)[:-4]:
        value = record.get(name)
        if value is None:
            row[name] = None
        elif kind == "float":
            value = float(value)
            row[name] = value if math.isfinite(value) else None
        elif kind == "int":
            row[name] = int(value)
        elif kind == "timestamp":
            row[name] = _utc(value)
        else:
            row[name] = str(value)
    if row.get("pane") is None:
        row["pane"] = 0
    row["monitor"] = monitor
    row["window_key"] = window_key(record.get("window_start"))
    row[SCHEMA_VERSION_COLUMN] = RECORD_SCHEMA_VERSION
    details = {name: _json_safe(record.get(name)) for name in nested_fields(schema)}
    row[DETAILS_COLUMN] = (
        json.dumps(details, sort_keys=True, allow_nan=False) if details_as_text else details
    )
    return row


def bigquery_row(
    record: Mapping[str, Any], *, details_as_text: bool = False, monitor: str | None = None
) -> dict[str, Any]:
    """A flat row as BigQuery JSON: timestamps ISO 8601; ``details`` an object (load jobs) or a
    JSON string (``tabledata.insertAll``, which takes JSON columns as strings)."""
    flat = flatten_record(record, details_as_text=details_as_text, monitor=monitor)
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in flat.items()}


def bigquery_schema(schema: pa.Schema = DRIFT_RECORD_SCHEMA) -> list[dict[str, str]]:
    """The flat table as a BigQuery schema (``[{"name", "type", "mode"}]``, TableSchema JSON)."""
    return [
        {
            "name": name,
            "type": _BIGQUERY_TYPES[kind],
            "mode": "REQUIRED" if name in KEY_COLUMNS else "NULLABLE",
        }
        for name, kind in flat_columns(schema)
    ]
