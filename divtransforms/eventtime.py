"""Event times as real files hold them, parsed vectorised; what cannot be parsed is counted.

:func:`parse_event_times` accepts

* Arrow timestamp (any unit; naive means UTC) and date types, numpy ``datetime64``;
* ISO 8601 text with or without a time zone (``2024-01-01``, ``2024-01-01 12:00``,
  ``2024-01-01T12:00:00.123+01:00``, ``...Z``);
* common date layouts: ``2014/01/31`` (with an optional ``HH:MM[:SS]``);
* epoch numbers (or numeric text), in seconds, milliseconds, microseconds or nanoseconds:
  the unit is read from the column's typical magnitude (``< 1e11``: seconds, which covers the
  years 1970-5138; ``< 1e14``: milliseconds; ``< 1e17``: microseconds; else nanoseconds);
* anything else through ``fmt``: a ``strptime`` layout (``%d/%m/%Y %H:%M``) or one of
  ``epoch_s``, ``epoch_ms``, ``epoch_us``, ``epoch_ns``.

A value that is missing, unparsable, or outside the years windows can represent (0001 to 9999,
less the window's size) gives no event time: its row is excluded from every window and counted,
and :class:`BadEventTimes` names the column, the first such row and its value (and the file,
when the reader recorded it in the batch's metadata).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

__all__ = [
    "EPOCH_FORMATS",
    "EVENT_TIME_COLUMN",
    "SOURCE_KEY",
    "BadEventTimes",
    "parse_event_times",
    "source_of",
]

_US = timedelta(microseconds=1)
# The event time a streaming source attaches to each row (UTC microseconds; Pub/Sub).
EVENT_TIME_COLUMN = "_event_time"
# Batch schema metadata a reader sets: ``{"path": file, "row": row of the batch's first row}``.
SOURCE_KEY = b"divtransforms.source"
EPOCH_FORMATS = {"epoch_s": 1e6, "epoch_ms": 1e3, "epoch_us": 1.0, "epoch_ns": 1e-3}
MIN_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

_ISO_TZ = (
    r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)\s*$"
)
_ISO_NAIVE = r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_SLASHED = (
    (r"^\s*\d{4}/\d{1,2}/\d{1,2}\s*$", "%Y/%m/%d"),
    (r"^\s*\d{4}/\d{1,2}/\d{1,2}[T ]\d{1,2}:\d{2}:\d{2}\s*$", "%Y/%m/%d %H:%M:%S"),
    (r"^\s*\d{4}/\d{1,2}/\d{1,2}[T ]\d{1,2}:\d{2}\s*$", "%Y/%m/%d %H:%M"),
)


@dataclass(frozen=True)
class BadEventTimes:
    """Rows without a usable event time: how many, and the first one (row, value, file)."""

    column: str
    count: int
    row: int
    value: str
    source: str | None = None

    def merge(self, other: BadEventTimes | None) -> BadEventTimes:
        if other is None:
            return self
        return BadEventTimes(
            self.column, self.count + other.count, self.row, self.value, self.source
        )

    def message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return (
            f"{where}timestamp column {self.column!r}: {self.count} row(s) without a usable event "
            f"time were left out of every window (first at row {self.row}: {self.value}); "
            "give --timestamp-format for a layout that is not ISO 8601, YYYY/MM/DD or epoch numbers"
        )


def source_of(batch: Any) -> tuple[str | None, int]:
    """The file a batch was read from and the file row of its first row (None, 0 if unknown)."""
    meta = batch.schema.metadata if isinstance(batch, pa.RecordBatch | pa.Table) else None
    if not meta or SOURCE_KEY not in meta:
        return None, 0
    doc = json.loads(meta[SOURCE_KEY])
    return doc.get("path"), int(doc.get("row", 0))


def parse_event_times(
    col: Any,
    name: str = "timestamp",
    fmt: str | None = None,
    *,
    window_micros: int = 0,
    batch: Any = None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_], BadEventTimes | None]:
    """``(micros, ok, bad)``: event times as int64 microseconds since the epoch (UTC), whether
    each row has one (``micros`` holds 0 where not), and those rows summarised (None when every
    row parsed).

    ``window_micros``: a time whose window would end after 9999-12-31 is out of range too.
    ``batch``: the batch the column came from, whose metadata may name the file.
    """
    arr = _as_arrow(col)
    micros, ok = _to_micros(arr, name, fmt)
    ok &= (micros >= MIN_MICROS) & (micros <= MAX_MICROS - int(window_micros))
    if ok.all():
        return micros, ok, None
    micros = np.where(ok, micros, 0)
    first = int(np.flatnonzero(~ok)[0])
    value = arr[first].as_py()
    source, offset = source_of(batch) if batch is not None else (None, 0)
    return (
        micros,
        ok,
        BadEventTimes(
            name,
            int((~ok).sum()),
            offset + first,
            "missing"
            if value is None
            else repr(value if not hasattr(value, "isoformat") else str(value)),
            source,
        ),
    )


def _as_arrow(col: Any) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.Array):
        return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
    arr = np.asarray(col)
    if arr.dtype.kind == "M":
        return pa.array(arr.astype("datetime64[us]"))
    if arr.dtype.kind in "iuf":
        return pa.array(arr.astype(np.float64), from_pandas=True)
    values = arr.ravel().tolist()
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _to_micros(
    arr: pa.Array, name: str, fmt: str | None
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    t = arr.type
    n = len(arr)
    if pa.types.is_timestamp(t):
        us = pc.cast(arr, pa.timestamp("us", tz=t.tz), safe=False)
        return _filled(us.cast(pa.int64()), n)
    if pa.types.is_date(t):
        return _filled(pc.cast(pc.cast(arr, pa.timestamp("us")), pa.int64()), n)
    if pa.types.is_integer(t):
        return _epoch_integers(arr, fmt)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return _epoch(np.asarray(values, dtype=np.float64), fmt)
    if pa.types.is_null(t):
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise ValueError(f"timestamp column {name!r} has type {t}, not a time")
    return _parse_text(arr, fmt)


def _filled(ints: pa.Array, n: int) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    ok = np.asarray(pc.is_valid(ints).to_numpy(zero_copy_only=False), dtype=bool)
    values = pc.fill_null(ints, 0).to_numpy(zero_copy_only=False) if n else np.zeros(0)
    return np.asarray(values, dtype=np.int64), ok


def _epoch_scale(magnitudes: NDArray[np.float64], fmt: str | None) -> float:
    """Microseconds per unit: ``fmt``'s, or read from the values' typical magnitude."""
    if fmt in EPOCH_FORMATS:
        return EPOCH_FORMATS[fmt]
    typical = float(np.median(magnitudes)) if magnitudes.size else 0.0
    return 1e6 if typical < 1e11 else 1e3 if typical < 1e14 else 1.0 if typical < 1e17 else 1e-3


def _epoch_integers(arr: pa.Array, fmt: str | None) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Integer epochs in exact integer arithmetic (nanoseconds do not fit a double)."""
    ok = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)).astype(np.int64)
    scale = _epoch_scale(np.abs(values[ok].astype(np.float64)), fmt)
    if scale >= 1:
        factor = int(scale)
        ok &= np.abs(values) <= MAX_MICROS // factor
        micros = np.where(ok, values, 0) * factor
    else:
        micros = np.floor_divide(values, round(1 / scale))
    return micros.astype(np.int64), ok


def _epoch(
    values: NDArray[np.float64], fmt: str | None
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    finite = np.isfinite(values)
    scale = _epoch_scale(np.abs(values[finite]), fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        us = values * scale
        ok = finite & (us >= MIN_MICROS) & (us <= MAX_MICROS)
        out = np.where(ok, np.round(np.where(ok, us, 0.0)), 0.0).astype(np.int64)
    return out, ok


def _parse_text(arr: pa.Array, fmt: str | None) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    n = len(arr)
    micros = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    if fmt in EPOCH_FORMATS or fmt is None:
        numeric = _matches(arr, _NUMBER) & valid
        if numeric.any():
            idx = np.flatnonzero(numeric)
            values = pc.cast(pc.utf8_trim_whitespace(arr.take(idx)), pa.float64())
            micros[idx], ok[idx] = _epoch(np.asarray(values.to_numpy(zero_copy_only=False)), fmt)
        if fmt is not None:
            return micros, ok
    if fmt is not None:
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
        got, good = _filled(parsed.cast(pa.int64()), n)
        return np.where(good, got, 0), good
    for pattern, target in (
        (_ISO_TZ, pa.timestamp("us", tz="UTC")),
        (_ISO_NAIVE, pa.timestamp("us")),
    ):
        mask = _matches(arr, pattern) & valid & ~ok
        if mask.any():
            idx = np.flatnonzero(mask)
            micros[idx], ok[idx] = _iso(pc.utf8_trim_whitespace(arr.take(idx)), target)
    for pattern, layout in _SLASHED:
        mask = _matches(arr, pattern) & valid & ~ok
        if mask.any():
            idx = np.flatnonzero(mask)
            part = pc.replace_substring(pc.utf8_trim_whitespace(arr.take(idx)), "T", " ")
            parsed = pc.strptime(part, format=layout, unit="us", error_is_null=True)
            micros[idx], ok[idx] = _filled(parsed.cast(pa.int64()), len(idx))
    return micros, ok


def _matches(arr: pa.Array, pattern: str) -> NDArray[np.bool_]:
    hit = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


def _iso(text: pa.Array, target: pa.DataType) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """ISO 8601 text -> micros; a value the fast cast rejects (``2024-02-30``) is tried alone."""
    try:
        return _filled(pc.cast(pc.cast(text, target), pa.int64()), len(text))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = np.zeros(len(text), dtype=np.int64)
    ok = np.zeros(len(text), dtype=bool)
    for i, value in enumerate(text.to_pylist()):  # only text that failed the vectorised cast
        try:
            dt = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        out[i] = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // _US
        ok[i] = True
    return out, ok
