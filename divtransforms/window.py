"""A window's statistics, without Beam.

One path for a window's data, whoever drives it (``compare()``, the Beam combiners and DoFns, the
directory watcher), as TFDV runs the same generators in memory and on Beam:

    batch -> split_by_window -> feature_stats_of_batch -> FeatureStats (merge) -> drift_record
                                                        \\-> WindowCumulation -> running estimates

* :class:`FeatureStats` holds, per feature, the histogram on the reference's bins and the window's
  MLE accumulator; it merges exactly.
* :func:`split_by_window` assigns rows to event-time fixed windows aligned to the epoch, as Beam's
  ``FixedWindows`` does.

The running estimates over windows (``RunningEstimates``, ``WindowCumulation``) and their state
file are ``divtransforms.running``'s.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from divtransforms import parallel
from divtransforms.bins import to_float_array
from divtransforms.columns import batch_columns, column_of, num_rows, parse_duration
from divtransforms.eventtime import (
    DEFAULT_MAX_FUTURE,
    EVENT_TIME_COLUMN,
    BadEventTimes,
    Horizon,
    parse_event_times,
)
from divtransforms.histogram import Histogram
from divtransforms.mle import CategoricalMLE, MLEAccumulator, MomentMLE
from divtransforms.quality import ABSENT, merge_type_counts, type_label

if TYPE_CHECKING:  # annotations only
    from divtransforms.features import FeatureProfile
    from divtransforms.features import ProfileView as ReferenceProfile

__all__ = [
    "EPOCH",
    "FeatureStats",
    "feature_stats_of_batch",
    "horizon_of",
    "known_columns",
    "split_by_window",
    "take_rows",
    "when",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def when(micros: int) -> datetime:
    """The UTC datetime of ``micros`` microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=int(micros))


# -- rows and windows ---------------------------------------------------------------------------


def take_rows(batch: Any, idx: np.ndarray) -> Any:
    """The rows ``idx`` of a batch (Arrow RecordBatch/Table, or a dict of columns)."""
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return batch.take(pa.array(idx, type=pa.int64()))
    return {k: take_column(v, idx) for k, v in batch.items()}


def take_column(col: Any, idx: np.ndarray) -> Any:
    if isinstance(col, pa.Array | pa.ChunkedArray):
        return col.take(pa.array(idx, type=pa.int64()))
    return np.asarray(col)[idx]


def horizon_of(
    max_future: str | float | timedelta | None = DEFAULT_MAX_FUTURE,
    max_age: str | float | timedelta | None = None,
    now: float | None = None,
) -> Horizon | None:
    """The :class:`divtransforms.eventtime.Horizon` of durations (``"1d"``, ``"36h"``, seconds;
    ``None`` or ``"off"``: no bound on that side) around ``now`` (epoch seconds; None: the wall
    clock at each check); ``None`` when neither side is bounded."""
    future, age = _horizon_bound(max_future, "max_future"), _horizon_bound(max_age, "max_age")
    if future is None and age is None:
        return None
    return Horizon(future, age, now)


def _horizon_bound(value: str | float | timedelta | None, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc} (or 'off')") from None


def split_by_window(
    batch: Any,
    timestamp_column: str,
    size_micros: int,
    fmt: str | None = None,
    horizon: Horizon | None = None,
) -> tuple[list[tuple[int, Any]], BadEventTimes | None]:
    """``[(window_start_micros, rows)]`` for each fixed window the batch's rows fall in, in time
    order (windows aligned to the epoch; vectorised), and the rows left out because they have no
    usable event time (``divtransforms.eventtime.parse_event_times``; None when there are none),
    or one outside the plausibility ``horizon`` (:class:`divtransforms.eventtime.Horizon`).
    """
    micros, ok, bad = parse_event_times(
        column_of(batch, timestamp_column),
        timestamp_column,
        fmt,
        window_micros=size_micros,
        batch=batch,
        horizon=horizon,
    )
    if bad is not None:
        keep = np.flatnonzero(ok)
        batch, micros = take_rows(batch, keep), micros[keep]
    if micros.size == 0:
        return [], bad
    starts = np.floor_divide(micros, size_micros) * size_micros
    first = starts[0]
    if np.all(starts == first):
        return [(int(first), batch)], bad
    order = np.argsort(starts, kind="stable")
    uniq, idx = np.unique(starts[order], return_index=True)
    bounds = [*idx.tolist(), len(order)]
    return [
        (int(start), take_rows(batch, order[bounds[i] : bounds[i + 1]]))
        for i, start in enumerate(uniq.tolist())
    ], bad


# -- one window's statistics --------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Rows read and, per feature, a ``Histogram`` and an MLE accumulator (None: no family).

    ``columns`` is the window's schema as seen: ``{column: {type label: rows}}``
    (:func:`divtransforms.quality.type_label`; ``absent`` for a feature's rows read from inputs
    without it) for the features and for any column the reference does not know.
    """

    rows: int = 0
    histograms: dict[str, Histogram] = field(default_factory=dict)
    mle: dict[str, MLEAccumulator | None] = field(default_factory=dict)
    columns: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def empty(cls, features: Mapping[str, FeatureProfile]) -> FeatureStats:
        return cls(
            0,
            {n: Histogram.empty(fp.bins) for n, fp in features.items()},
            {n: fp.empty_mle() for n, fp in features.items()},
        )

    def merge(self, other: FeatureStats) -> FeatureStats:
        columns = dict(self.columns)
        for name, types in other.columns.items():
            columns[name] = merge_type_counts(columns.get(name, {}), types)
        return FeatureStats(
            self.rows + other.rows,
            {n: h.merge(other.histograms[n]) for n, h in self.histograms.items()},
            {
                n: (m.merge(other.mle[n]) if m is not None else None)  # type: ignore[arg-type]
                for n, m in self.mle.items()
            },
            columns,
        )

    @classmethod
    def of_groups(cls, parts: Sequence[FeatureStats]) -> FeatureStats:
        """The statistics of the same rows taken for disjoint groups of features (a reader that
        decodes a few columns at a time), as one: each feature's histogram, MLE accumulator and
        types as its group has them, in the groups' order; the rows once."""
        rows = {p.rows for p in parts}
        if len(rows) > 1:
            raise ValueError(f"feature groups saw different numbers of rows: {sorted(rows)}")
        out = cls(parts[0].rows)
        for p in parts:
            out.histograms.update(p.histograms)
            out.mle.update(p.mle)
            for name, types in p.columns.items():
                out.columns[name] = merge_type_counts(out.columns.get(name, {}), types)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tests, debugging)."""
        return {
            "rows": self.rows,
            "histograms": {n: h.to_dict() for n, h in self.histograms.items()},
            "mle": {n: (m.to_dict() if m is not None else None) for n, m in self.mle.items()},
            "columns": {n: dict(t) for n, t in self.columns.items()},
        }


# Batch schema metadata a reader sets: the input's columns it did not read, as a JSON object
# ``{column: type label}`` (``unread`` where the reader does not know the type).
UNREAD_COLUMNS_KEY = b"divtransforms.unread_columns"


def _other_columns(batch: Any, known: Collection[str]) -> dict[str, dict[str, int]]:
    """``{column: {type label: rows}}`` of the batch's columns outside ``known`` (none for an
    empty batch: nothing was seen of them)."""
    rows = num_rows(batch)
    if rows == 0:
        return {}
    out = {
        name: {type_label(column_of(batch, name)): rows}
        for name in batch_columns(batch)
        if name not in known
    }
    meta = batch.schema.metadata if isinstance(batch, pa.RecordBatch | pa.Table) else None
    if meta and UNREAD_COLUMNS_KEY in meta:
        for name, label in json.loads(meta[UNREAD_COLUMNS_KEY]).items():
            if name not in known:
                out.setdefault(name, {label: rows})
    return out


def feature_stats_of_batch(
    features: Mapping[str, FeatureProfile], batch: Any, known: Collection[str] | None = None
) -> FeatureStats:
    """Histograms and MLE statistics of one batch, all features, each column converted once.

    Equal to ``Histogram.of(spec, column)`` and ``accumulator.add(column)`` (categorical MLE:
    ``add_counts`` of the histogram) on every feature. A feature the batch lacks gets nothing
    binned and its rows counted as ``absent``. With ``known`` (the columns the reference knows
    of: its features, the event time, the columns it ignored), other columns are counted too.
    """
    rows = num_rows(batch)
    present = set(batch_columns(batch))

    def one(item: tuple[str, FeatureProfile]) -> tuple[Histogram, MLEAccumulator | None, str]:
        name, fp = item
        if name not in present:
            return Histogram.empty(fp.bins), fp.empty_mle(), ABSENT
        col = column_of(batch, name)
        spec = fp.bins
        mle = fp.empty_mle()
        if fp.kind == "numeric":
            x, n_bad = to_float_array(col, name)
            c = spec.count_floats(x, n_bad)  # type: ignore[union-attr]
            hist = Histogram(spec, c.counts, c.n_missing, c.n_invalid)
            if isinstance(mle, MomentMLE):
                mle = mle.add(x, name)
                if n_bad:  # values of the wrong type are invalid for the family too
                    mle = replace(mle, n_invalid=mle.n_invalid + n_bad)
        else:
            hist = Histogram.of(spec, col, name)
            if isinstance(mle, CategoricalMLE):
                mle = mle.add_counts(hist.counts)
        return hist, mle, type_label(col)

    hists: dict[str, Histogram] = {}
    mles: dict[str, MLEAccumulator | None] = {}
    columns: dict[str, dict[str, int]] = {}
    for name, (hist, mle, label) in zip(
        features, parallel.map_ordered(one, list(features.items())), strict=True
    ):
        hists[name], mles[name] = hist, mle
        if rows:
            columns[name] = {label: rows}
    if known is not None:
        columns.update(_other_columns(batch, {*known, *features}))
    return FeatureStats(rows, hists, mles, columns)


def known_columns(profile: ReferenceProfile, timestamp_column: str | None = None) -> frozenset[str]:
    """The columns a check of ``profile`` expects, so not reported as new columns (the ``known``
    of :func:`feature_stats_of_batch`): the reference's features and the columns it ignored, the
    event time a streaming source attaches (``EVENT_TIME_COLUMN``) and the check's timestamp
    column. Every driver of a check (``compare``, ``DriftMonitor``, the local engine, the
    directory watcher) takes it from here."""
    return frozenset(
        {
            *profile.known_columns,
            EVENT_TIME_COLUMN,
            *([timestamp_column] if timestamp_column else []),
        }
    )


# -- running estimates --------------------------------------------------------------------------
