"""Columnar input: pyarrow Tables/RecordBatches, pandas DataFrames or dicts of arrays -> columns.

Columns stay as Arrow arrays or numpy arrays (no per-row conversion); the bin specs and MLE
accumulators accept both.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    "table_from_pylists",
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def table_from_pylists(columns: Mapping[str, list[Any]], schema: pa.Schema) -> pa.Table | None:
    """``pa.Table.from_pydict(columns, schema=schema)`` built from Arrow buffers, or None.

    ``pa.array`` imports pandas on its first call (0.15-0.3 s CPU of every ``divmon check``); this
    builds each column with ``Array.from_buffers`` instead, for the value types records hold:
    ``str``, ``int``, ``float``, timezone-aware ``datetime``, ``list`` and ``dict`` (structs) or
    ``None``, in string, int64, float64, timestamp, list and struct columns. The table equals
    ``from_pydict``'s. Any other value or type (numpy integers, tuples, naive datetimes, an int64
    overflow, a dict with keys the struct lacks) returns None: the caller falls back to
    ``from_pydict``, which converts it or raises its usual error.
    """
    arrays = []
    for field in schema:
        array = _array_from_pylist(columns[field.name], field.type)
        if array is None:
            return None
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def _array_from_pylist(values: list[Any], t: pa.DataType) -> pa.Array | None:
    n = len(values)
    nulls = values.count(None)
    bitmap, present = None, values
    if nulls:
        valid = np.fromiter(map(operator.is_not, values, itertools.repeat(None)), bool, n)
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        present = [v for v in values if v is not None]
    types = set(map(type, present))
    if pa.types.is_string(t):
        if not types <= {str}:
            return None
        try:
            data = [b"" if v is None else v.encode() for v in values]
        except UnicodeEncodeError:  # lone surrogates: from_pydict's error
            return None
        offsets = _offsets(map(len, data))
        if offsets is None:
            return None
        buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
        return pa.Array.from_buffers(t, n, buffers, null_count=nulls)
    if t in (pa.int64(), pa.float64()) or (
        pa.types.is_timestamp(t) and t.unit == "us" and t.tz in ("UTC", "+00:00")
    ):
        if t == pa.int64():
            ok = types <= {int}
        elif t == pa.float64():  # ints are converted as from_pydict does, when exact
            ok = all(issubclass(k, float) or k is int for k in types) and (
                int not in types or all(abs(v) <= 2**53 for v in present if type(v) is int)
            )
        else:
            ok = all(issubclass(k, datetime) for k in types) and all(
                v.utcoffset() is not None for v in present
            )
        if not ok:
            return None
        if pa.types.is_timestamp(t):
            values = [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
        dtype = np.float64 if t == pa.float64() else np.int64
        try:
            raw = np.array([0 if v is None else v for v in values] if nulls else values, dtype)
        except OverflowError:
            return None
        return pa.Array.from_buffers(t, n, [bitmap, pa.py_buffer(raw)], null_count=nulls)
    if pa.types.is_list(t):
        if not types <= {list}:
            return None
        child = _array_from_pylist(list(itertools.chain.from_iterable(present)), t.value_type)
        offsets = _offsets(0 if v is None else len(v) for v in values)
        if child is None or offsets is None:
            return None
        buffers = [bitmap, pa.py_buffer(offsets)]
        return pa.Array.from_buffers(t, n, buffers, null_count=nulls, children=[child])
    if pa.types.is_struct(t):
        names = {f.name for f in t}
        if not types <= {dict} or any(not names.issuperset(v) for v in present):
            return None
        children = []
        for f in t:
            if nulls:
                field_values = [None if v is None else v.get(f.name) for v in values]
            else:
                field_values = list(map(dict.get, values, itertools.repeat(f.name)))
            child = _array_from_pylist(field_values, f.type)
            if child is None:
                return None
            children.append(child)
        return pa.Array.from_buffers(t, n, [bitmap], null_count=nulls, children=children)
    return None


def _offsets(lengths: Any) -> NDArray[np.int32] | None:
    sizes = np.fromiter(lengths, np.int64)
    offsets = np.zeros(sizes.size + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets.astype(np.int32) if offsets[-1] < 2**31 else None
