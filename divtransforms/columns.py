"""Columnar input: pyarrow Tables/RecordBatches, pandas DataFrames or dicts of arrays -> columns.

Columns stay as Arrow arrays or numpy arrays (no per-row conversion); the bin specs and MLE
accumulators accept both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

__all__ = [
    "Columns",
    "MissingFeatureError",
    "as_columns",
    "batch_columns",
    "column_kind",
    "column_of",
    "event_time_micros",
    "num_rows",
    "parse_duration",
]

Columns = dict[str, Any]
# Seconds since the epoch of 9999-12-31 (and, negated, near year 1): what datetime can hold.
_MAX_EPOCH_SECONDS = 253_402_300_800.0


def as_columns(data: Any) -> Columns:
    """A ``{name: column}`` dict from a pyarrow Table/RecordBatch, pandas DataFrame or mapping."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return {name: data.column(i) for i, name in enumerate(data.schema.names)}
    if hasattr(data, "to_dict") and hasattr(data, "columns") and hasattr(data, "dtypes"):
        table = pa.Table.from_pandas(data, preserve_index=False)
        return {name: table.column(i) for i, name in enumerate(table.schema.names)}
    if isinstance(data, Mapping):
        cols: Columns = {}
        for name, col in data.items():
            if isinstance(col, pa.Array | pa.ChunkedArray | np.ndarray):
                cols[str(name)] = col
            else:
                cols[str(name)] = np.asarray(col, dtype=object if _mixed(col) else None)
        lengths = {name: len(c) for name, c in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        return cols
    raise TypeError(
        "expected a pyarrow Table/RecordBatch, a pandas DataFrame or a dict of "
        f"arrays, got {type(data).__name__}"
    )


def _mixed(col: Any) -> bool:
    try:
        return len({type(v) for v in col}) > 1
    except TypeError:
        return False


def column_kind(col: Any) -> str:
    """``numeric`` or ``categorical`` from the column's type; ``temporal`` for timestamps."""
    if isinstance(col, pa.ChunkedArray | pa.Array):
        t = col.type
        if pa.types.is_dictionary(t):
            return "categorical"
        if pa.types.is_temporal(t):
            return "temporal"
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "numeric"
        return "categorical"
    arr = np.asarray(col)
    if arr.dtype.kind in "iuf":
        return "numeric"
    if arr.dtype.kind in "mM":
        return "temporal"
    if arr.dtype.kind == "O":
        sample = [v for v in arr[:1000].tolist() if v is not None]
        if sample and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sample):
            return "numeric"
    return "categorical"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNIT_SECONDS = {
    "ms": 1e-3,
    "s": 1.0,
    None: 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_duration(value: str | float | timedelta) -> float:
    """Seconds from ``"15m"``, ``"1h"``, ``"30s"``, ``"1d"``, a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"cannot read duration {value!r} (use e.g. 30s, 15m, 1h, 1d)")
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def event_time_micros(col: Any, name: str = "timestamp") -> NDArray[np.int64]:
    """Event times as int64 microseconds since the epoch (UTC).

    Accepts Arrow timestamps (any unit; naive means UTC), numpy datetime64, numbers (seconds since
    the epoch) or ISO-8601 strings. A missing or unparsable timestamp is an error naming the column
    and the first bad row: an event without a time cannot be put in a window.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not isinstance(col, pa.Array):
        arr = np.asarray(col)
        if arr.dtype.kind == "M":
            col = pa.array(arr.astype("datetime64[us]"))
        elif arr.dtype.kind in "iuf":
            col = pa.array(arr.astype(np.float64), from_pandas=True)
        else:
            col = pa.array(arr.tolist())
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            col = pc.cast(
                pc.strptime(col, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=False),
                pa.timestamp("us"),
            )
        except pa.ArrowInvalid:
            col = pa.array(np.array(col.to_pylist(), dtype="datetime64[us]"))
        t = col.type
    if col.null_count:
        first = int(np.flatnonzero(~np.asarray(pc.is_valid(col)))[0])
        raise ValueError(
            f"timestamp column {name!r} has {col.null_count} missing values "
            f"(first at row {first}): every sample needs an event time"
        )
    if pa.types.is_timestamp(t):
        return np.asarray(
            pc.cast(col, pa.timestamp("us", tz=t.tz))
            .cast(pa.int64())
            .to_numpy(zero_copy_only=False),
            dtype=np.int64,
        )
    if pa.types.is_date(t):
        return np.asarray(pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64()), dtype=np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        secs = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        if not np.all(np.isfinite(secs)):
            first = int(np.flatnonzero(~np.isfinite(secs))[0])
            raise ValueError(f"timestamp column {name!r} has a non-finite value at row {first}")
        out_of_range = np.abs(secs) >= _MAX_EPOCH_SECONDS
        if out_of_range.any():
            first = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(
                f"timestamp column {name!r}: {secs[first]:.6g} at row {first} is not a time in "
                "seconds since the epoch (numbers are read as seconds; years 1 to 9999)"
            )
        return np.round(secs * 1e6).astype(np.int64)
    raise ValueError(f"timestamp column {name!r} has type {t}, not a time")


class MissingFeatureError(ValueError):
    """A batch lacks a feature column the reference needs."""


def batch_columns(batch: Any) -> list[str]:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return list(batch.schema.names)
    return [str(k) for k in batch]


def column_of(batch: Any, name: str) -> Any:
    """One column of a RecordBatch/Table/dict, or a clear error naming the feature."""
    if isinstance(batch, pa.RecordBatch | pa.Table):
        idx = batch.schema.get_field_index(name)
        if idx >= 0:
            return batch.column(idx)
    elif isinstance(batch, Mapping) and name in batch:
        return batch[name]
    raise MissingFeatureError(
        f"feature {name!r} is not a column of the input (columns: "
        f"{', '.join(batch_columns(batch))})"
    )


def num_rows(batch: Any) -> int:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return batch.num_rows
    return len(next(iter(batch.values()))) if batch else 0
