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
from numpy.typing import NDArray

__all__ = [
    "Columns",
    "MissingFeatureError",
    "as_columns",
    "batch_columns",
    "column_kind",
    "column_of",
    "duration_micros",
    "event_time_micros",
    "num_rows",
    "parse_duration",
    "type_kind",
]

Columns = dict[str, Any]


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
        return type_kind(col.type)
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


def type_kind(t: pa.DataType) -> str:
    """:func:`column_kind` of an Arrow type (a schema's field: no array to build)."""
    if pa.types.is_dictionary(t):
        return "categorical"
    if pa.types.is_temporal(t):
        return "temporal"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
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


def duration_micros(value: str | float | timedelta) -> int:
    """:func:`parse_duration` in whole microseconds, the unit of window starts and sizes."""
    return round(parse_duration(value) * 1e6)


def event_time_micros(
    col: Any, name: str = "timestamp", fmt: str | None = None
) -> NDArray[np.int64]:
    """Event times as int64 microseconds since the epoch (UTC), every row required.

    Parsing is :func:`divtransforms.eventtime.parse_event_times` (Arrow and numpy times, ISO
    8601, ``YYYY/MM/DD``, epoch numbers, ``fmt``); a row without a usable time is an error naming
    the column, the row and the value. (Windowing uses the tolerant form, which counts such rows
    and goes on.)
    """
    from divtransforms.eventtime import parse_event_times

    micros, _, bad = parse_event_times(col, name, fmt)
    if bad is not None:
        raise ValueError(bad.message())
    return micros


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
    from divtransforms.eventtime import source_of

    path, _ = source_of(batch)  # the file, when a reader recorded it in the batch
    have = batch_columns(batch)
    hint = ""
    if len(have) == 1 and any(c in have[0] for c in ";\t|,"):
        hint = "; is the CSV delimiter right? (--csv-delimiter, [source] csv.delimiter)"
    raise MissingFeatureError(
        f"{path + ': ' if path else ''}feature {name!r} is not a column of the input (columns: "
        f"{', '.join(have)}){hint}"
    )


def num_rows(batch: Any) -> int:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return batch.num_rows
    return len(next(iter(batch.values()))) if batch else 0
