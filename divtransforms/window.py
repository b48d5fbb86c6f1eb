"""A window's statistics and the running estimates over windows, without Beam.

One path for a window's data, whoever drives it (``compare()``, the Beam combiners and DoFns, the
directory watcher), as TFDV runs the same generators in memory and on Beam:

    batch -> split_by_window -> feature_stats_of_batch -> FeatureStats (merge) -> drift_record
                                                        \\-> WindowCumulation -> running estimates

* :class:`FeatureStats` holds, per feature, the histogram on the reference's bins and the window's
  MLE accumulator; it merges exactly.
* :func:`split_by_window` assigns rows to event-time fixed windows aligned to the epoch, as Beam's
  ``FixedWindows`` does.
* :class:`RunningEstimates` is the per-feature cumulative MLE accumulators and sequential
  detectors (``divtransforms.sequential``), seeded from a state;
  :class:`WindowCumulation` keeps them over windows that may still change (panes, late data) and
  folds the closed ones.
* :func:`mle_state_bytes` / :func:`parse_mle_state` are the one writer and reader of the MLE-state
  file (``divtransforms.mle_state``, schema version 2: with the detectors); the I/O itself
  belongs to the caller.
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
from divtransforms.mle import CategoricalMLE, MLEAccumulator, MomentMLE, accumulator_from_dict
from divtransforms.quality import ABSENT, merge_type_counts, type_label
from divtransforms.sequential import (
    RECORD_KEYS,
    CusumState,
    Scorer,
    WindowScore,
    reference_key,
    window_key,
)

if TYPE_CHECKING:  # annotations only
    from divtransforms.features import FeatureProfile
    from divtransforms.features import ProfileView as ReferenceProfile

__all__ = [
    "EPOCH",
    "MLE_STATE_KIND",
    "FeatureStats",
    "RunningEstimates",
    "WindowCumulation",
    "feature_stats_of_batch",
    "horizon_of",
    "known_columns",
    "mle_state_bytes",
    "parse_mle_state",
    "split_by_window",
    "take_rows",
    "when",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MLE_STATE_KIND = "divtransforms.mle_state"
MLE_STATE_VERSION = 2
# Version 2: a feature's entry may hold its sequential detector under "cusum" (and a feature
# without a family an entry with only that); version 1 files read as before, detectors fresh.
MLE_STATE_VERSIONS = (1, 2)


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


@dataclass(frozen=True)
class RunningEstimates:
    """Cumulative MLE accumulators per feature (None for a feature without a family), and each
    feature's sequential detector over the windows seen (``divtransforms.sequential``), with the
    ``scorer`` that turns a window's statistics into the detectors' inputs (None: no detector)."""

    accumulators: Mapping[str, MLEAccumulator | None]
    detectors: Mapping[str, CusumState] = field(default_factory=dict)
    scorer: Scorer | None = None

    @classmethod
    def seed(
        cls,
        features: Mapping[str, FeatureProfile],
        state: Mapping[str, Mapping[str, Any]] | None = None,
        policy: Any = None,
        judge: Any = None,
    ) -> RunningEstimates:
        """Empty accumulators of the features' families, or those of ``state`` (checked); the
        detectors of ``state`` made on the same reference (a new reference starts them afresh),
        set by ``policy`` (``FeaturePolicy.persistent_shift`` / ``persistent_arl``; None: the
        defaults). ``judge``: a windowed reference's ``variation.cusum.JudgedScores``, whose
        null the detectors' scores take."""
        out: dict[str, MLEAccumulator | None] = {}
        detectors: dict[str, CusumState] = {}
        for name, fp in features.items():
            saved = dict((state or {}).get(name) or {})
            detectors[name] = _detector(name, fp, saved.pop(CUSUM_KEY, None))
            if fp.family is None:
                out[name] = None
            elif saved:
                acc = accumulator_from_dict(saved)
                if acc.family != fp.family:
                    raise ValueError(
                        f"feature {name!r}: MLE state is for family {acc.family!r}, "
                        f"the reference uses {fp.family!r}"
                    )
                out[name] = acc
            else:
                out[name] = fp.empty_mle()
        return cls(out, detectors, Scorer.of(features, policy, judge))

    def merge(self, stats: FeatureStats) -> RunningEstimates:
        """These estimates with one more window's statistics (the detectors as they are:
        :meth:`advance` steps them)."""
        return RunningEstimates(
            {
                n: (
                    acc.merge(stats.mle[n])  # type: ignore[arg-type]
                    if acc is not None and stats.mle.get(n) is not None
                    else acc
                )
                for n, acc in self.accumulators.items()
            },
            self.detectors,
            self.scorer,
        )

    def advance(self, start: Any, scores: Mapping[str, WindowScore] | None) -> RunningEstimates:
        """These estimates with the detectors stepped through the window starting at ``start``
        (its ``Scorer.scores``); a window at or before the last one counted changes nothing."""
        # (one constructor call: Beam infers the streaming DoFn's output type from it)
        return RunningEstimates(
            self.accumulators, _advanced(self.detectors, self.scorer, start, scores), self.scorer
        )

    def get(self, name: str) -> MLEAccumulator | None:
        return self.accumulators.get(name)

    def sequential_fields(self, name: str, start: Any) -> dict[str, Any]:
        """The record fields of the feature's detector at the window starting at ``start``
        (``records.DRIFT_RECORD_SCHEMA``'s ``cusum*``; nulls without one)."""
        det = self.detectors.get(name)
        if det is None:
            return dict.fromkeys(RECORD_KEYS)
        return det.record_fields(window_key(start))

    def to_state(self) -> dict[str, dict[str, Any]]:
        """``{feature: accumulator dict}`` (JSON-able) of the features that have a family, with
        the feature's detector under ``"cusum"`` once it has counted a window (features without
        a family then get an entry holding only that)."""
        out: dict[str, dict[str, Any]] = {
            n: acc.to_dict() for n, acc in self.accumulators.items() if acc is not None
        }
        for n, det in self.detectors.items():
            if det.last is not None:
                out.setdefault(n, {})[CUSUM_KEY] = det.to_dict()
        return out


CUSUM_KEY = "cusum"  # a feature's detector in an MLE-state entry (schema version 2)


def _advanced(
    detectors: Mapping[str, CusumState],
    scorer: Scorer | None,
    start: Any,
    scores: Mapping[str, WindowScore] | None,
) -> Mapping[str, CusumState]:
    if not scores or scorer is None:
        return detectors
    key = window_key(start)
    out = dict(detectors)
    for name, score in scores.items():
        det = out.get(name)
        if det is not None:
            out[name] = det.advance(key, score, scorer.settings[name])
    return out


def _detector(name: str, fp: FeatureProfile, saved: Mapping[str, Any] | None) -> CusumState:
    ref = reference_key(fp)
    if saved and saved.get("reference") == ref:
        try:
            return CusumState.from_dict(saved)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"feature {name!r}: bad CUSUM state ({exc})") from None
    return CusumState(reference=ref)


@dataclass
class WindowCumulation:
    """Running estimates over event-time windows that may still change.

    ``observe`` takes the latest statistics (pane) of a window and returns the running estimate
    of that window: the folded windows, then every known window starting at or before it, in
    event-time order (the global window, ``start = None``, comes first). ``fold`` merges windows
    that can no longer change into one accumulator, which keeps the state small. The detectors
    step through the same windows in the same order, each with the scores of its latest pane
    (``scores``, kept beside ``known``).
    """

    folded: RunningEstimates
    known: dict[Any, tuple[Any, int, FeatureStats]] = field(default_factory=dict)
    scores: dict[Any, Mapping[str, WindowScore]] = field(default_factory=dict)
    # window -> (detectors before, scores, detectors after): a window observed and then folded
    # from the same detectors is stepped once
    _stepped: dict[Any, tuple[Any, Any, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _through(self, running: RunningEstimates, start: Any) -> RunningEstimates:
        merged = running.merge(self.known[start][2])
        scores = self.scores.get(start)
        memo = self._stepped.get(start)
        if memo is not None and memo[0] is running.detectors and memo[1] is scores:
            return RunningEstimates(merged.accumulators, memo[2], merged.scorer)
        out = merged.advance(start, scores)
        self._stepped[start] = (running.detectors, scores, out.detectors)
        return out

    def observe(self, start: Any, end: Any, pane: int, stats: FeatureStats) -> RunningEstimates:
        previous = self.known.get(start)
        if previous is None or previous[1] <= pane:
            self.known[start] = (end, pane, stats)
            if start is not None and self.folded.scorer is not None:
                self.scores[start] = self.folded.scorer.scores(stats, start=start)
        running = self.folded
        if None in self.known:
            running = running.merge(self.known[None][2])
        if start is None:
            return running
        for s in sorted(k for k in self.known if k is not None and k <= start):
            running = self._through(running, s)
        return running

    def complete(self, start: Any, end: Any, pane: int, stats: FeatureStats) -> RunningEstimates:
        """:meth:`observe` in a batch run, which gives every window complete and in event-time
        order (the global window first): the windows before ``start`` have all their data, so
        they are folded first. ``compare.WindowDriver`` and Beam's batch cumulation both run
        this."""
        if start is not None:
            self.fold(before=start)
        return self.observe(start, end, pane, stats)

    def fold(self, before: Any, ended_before: Any = None) -> None:
        """Fold the windows starting before ``before`` (and ending before ``ended_before``)."""
        for s in sorted(k for k in self.known if k is not None):
            end = self.known[s][0]
            if s < before and (ended_before is None or end < ended_before):
                self.folded = self._through(self.folded, s)
                del self.known[s]
                self.scores.pop(s, None)
                self._stepped.pop(s, None)

    def latest(self) -> RunningEstimates:
        """The running estimate over everything seen (the state for the next run)."""
        running = self.folded
        if None in self.known:
            running = running.merge(self.known[None][2])
        for s in sorted(k for k in self.known if k is not None):
            running = self._through(running, s)
        return running


# -- the MLE-state file -------------------------------------------------------------------------


def mle_state_bytes(state: Mapping[str, Any], **extra: Any) -> bytes:
    """The MLE-state file: ``{"schema_version", "kind", "features": {feature: accumulator dict},
    **extra}`` as JSON (``extra``: the watcher's files seen, watermark, ...)."""
    doc = {
        "schema_version": MLE_STATE_VERSION,
        "kind": MLE_STATE_KIND,
        "features": dict(state),
        **extra,
    }
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def parse_mle_state(raw: bytes, origin: str) -> dict[str, dict[str, Any]]:
    """``{feature: accumulator dict}`` from an MLE-state file (or a bare ``{feature: ...}``
    object); errors name ``origin``."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"MLE state {origin}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and doc.get("kind") == MLE_STATE_KIND:
        if doc.get("schema_version") not in MLE_STATE_VERSIONS:
            raise ValueError(
                f"MLE state {origin}: schema version {doc.get('schema_version')!r} "
                f"is not supported (expected {MLE_STATE_VERSION})"
            )
        return dict(doc["features"])
    if isinstance(doc, dict):
        return doc
    raise ValueError(f"MLE state {origin}: expected a JSON object")
