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

A :class:`Horizon` bounds the *plausible* event times: not after ``now + max_future`` (one day by
default in monitors and ``divmon check``), and, when ``max_age`` is set, not before
``now - max_age``. A row outside it (an epoch in the wrong unit read as the year 2286, a test
record dated 9999, a null written as 0) is treated like a row without an event time: in no
window, counted, and named (file, row, value); it never moves a window, the alert tracker's
clock or a freshness state. Every driver's windowing goes through
:func:`divtransforms.window.split_by_window`, which takes the horizon.
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
    "DEFAULT_MAX_FUTURE",
    "EPOCH_FORMATS",
    "EVENT_TIME_COLUMN",
    "SOURCE_KEY",
    "BadEventTimes",
    "Horizon",
    "ImplausibleFile",
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
#: How far after the run's wall clock an event time may be, by default (monitors, divmon check).
DEFAULT_MAX_FUTURE = "1d"

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
class Horizon:
    """The plausible event times: from ``now - max_age`` to ``now + max_future`` (seconds;
    ``None``: no bound on that side). ``now`` is the epoch second the bounds are relative to: a
    batch run fixes it when it starts (every worker judges alike); ``None`` reads the wall clock
    at each check (a streaming or watching job, which runs for days). From durations:
    :func:`divtransforms.window.horizon_of`."""

    max_future: float | None = 86_400.0
    max_age: float | None = None
    now: float | None = None

    def bounds(self) -> tuple[int, int]:
        """``(lowest, highest)`` plausible event time, microseconds since the epoch."""
        import time

        now = round((time.time() if self.now is None else self.now) * 1e6)
        hi = MAX_MICROS if self.max_future is None else now + round(self.max_future * 1e6)
        lo = MIN_MICROS if self.max_age is None else now - round(self.max_age * 1e6)
        return lo, hi

    def describe(self) -> str:
        lo, hi = self.bounds()
        parts = []
        if self.max_age is not None:
            parts.append(f"not before {_iso_of(lo)} (max_age {_span(self.max_age)})")
        if self.max_future is not None:
            parts.append(f"not after {_iso_of(hi)} (max_future {_span(self.max_future)})")
        return " and ".join(parts)


def _iso_of(micros: int) -> str:
    micros = min(max(micros, MIN_MICROS), MAX_MICROS)
    return (datetime(1970, 1, 1, tzinfo=UTC) + micros * _US).isoformat(timespec="seconds")


def _span(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class BadEventTimes:
    """Rows in no window: how many, and the first one (row, value, file). ``implausible`` of
    them had an event time outside the :class:`Horizon` (``horizon`` says which; the first such
    row and value in ``implausible_at``), the others none that could be used."""

    column: str
    count: int
    row: int
    value: str
    source: str | None = None
    implausible: int = 0
    implausible_at: tuple[int, str] | None = None
    horizon: str = ""

    def merge(self, other: BadEventTimes | None) -> BadEventTimes:
        if other is None:
            return self
        unparsed = self.count - self.implausible
        first = (self.row, self.value) if unparsed else (other.row, other.value)
        if not unparsed and not other.count - other.implausible:
            first = (self.row, self.value)
        return BadEventTimes(
            self.column,
            self.count + other.count,
            *first,
            self.source,
            self.implausible + other.implausible,
            self.implausible_at or other.implausible_at,
            self.horizon or other.horizon,
        )

    @property
    def unparsed(self) -> int:
        """Rows without a usable event time (the rest of ``count`` are implausible)."""
        return self.count - self.implausible

    def message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        parts = []
        if self.unparsed:
            parts.append(
                f"{self.unparsed} row(s) without a usable event time were left out of every "
                f"window (first at row {self.row}: {self.value}); give --timestamp-format for a "
                "layout that is not ISO 8601, YYYY/MM/DD or epoch numbers"
            )
        if self.implausible:
            row, value = self.implausible_at or (self.row, self.value)
            parts.append(
                f"{self.implausible} row(s) with an implausible event time, {self.horizon}, "
                f"were left out of every window (first at row {row}: {value}); epoch numbers "
                "in the wrong unit? set --timestamp-format (epoch_s, epoch_ms, ...) or the "
                "horizon (--max-future, --max-age)"
            )
        return f"{where}timestamp column {self.column!r}: " + "; ".join(parts)


class ImplausibleFile(ValueError):
    """Every row of a file has an event time outside the horizon: an input failure of that
    file (the monitor retries it, then quarantines it), not an empty check."""

    def __init__(self, path: str, rows: int, bad: BadEventTimes | None = None):
        self.path = path
        detail = f" ({bad.message().removeprefix(f'{path}: ')})" if bad is not None else ""
        super().__init__(
            f"{path}: all {rows} row(s) have an event time outside the plausibility horizon{detail}"
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
    horizon: Horizon | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_], BadEventTimes | None]:
    """``(micros, ok, bad)``: event times as int64 microseconds since the epoch (UTC), whether
    each row has one (``micros`` holds 0 where not), and those rows summarised (None when every
    row parsed).

    ``window_micros``: a time whose window would end after 9999-12-31 is out of range too.
    ``batch``: the batch the column came from, whose metadata may name the file.
    ``horizon``: a time outside it is not plausible; its row counts as without one.
    """
    arr = _as_arrow(col)
    try:
        micros, ok = _to_micros(arr, name, fmt)
    except ValueError as exc:  # not a time at all: name the file, when known
        path = source_of(batch)[0] if batch is not None else None
        if path is None:
            raise
        raise ValueError(f"{path}: {exc}") from None
    ok &= (micros >= MIN_MICROS) & (micros <= MAX_MICROS - int(window_micros))
    implausible = None
    if horizon is not None:
        lo, hi = horizon.bounds()
        implausible = ok & ((micros < lo) | (micros > hi))
        if implausible.any():
            ok &= ~implausible
        else:
            implausible = None
    if ok.all():
        return micros, ok, None
    unparsed = ~ok if implausible is None else ~ok & ~implausible
    first = int(np.flatnonzero(unparsed if unparsed.any() else ~ok)[0])
    source, offset = source_of(batch) if batch is not None else (None, 0)
    n_implausible, implausible_at = 0, None
    if implausible is not None:
        n_implausible = int(implausible.sum())
        at = int(np.flatnonzero(implausible)[0])
        value = arr[at].as_py()
        shown = _shown(value)
        if not hasattr(value, "isoformat"):  # a number or text: say how it was read
            shown += f" read as {_iso_of(int(micros[at]))}"
        implausible_at = (offset + at, shown)
    micros = np.where(ok, micros, 0)
    return (
        micros,
        ok,
        BadEventTimes(
            name,
            int((~ok).sum()),
            offset + first,
            _shown(arr[first].as_py()),
            source,
            n_implausible,
            implausible_at,
            horizon.describe() if n_implausible and horizon is not None else "",
        ),
    )


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    return repr(value if not hasattr(value, "isoformat") else str(value))


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
