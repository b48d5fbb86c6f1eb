"""Beam composites for drift monitoring; each ``expand()`` wires a few steps around one CombineFn.

Elements are batches: ``pyarrow.RecordBatch`` (or ``Table``) or dicts of numpy arrays, never one
element per sample. The data path reads top to bottom:

    batches -> AssignWindows -> BinSamples -> RunningMLE -> ComputeDivergence -> drift records

``DriftMonitor`` is that whole path in one transform; ``BuildReference`` builds the
``ReferenceProfile`` the monitor compares against. Records come from
``divtransforms.compare.drift_record``, so they equal ``divtransforms.compare()`` on the same data
(counts exactly; floating-point sums up to rounding, as batches are merged in another order).

Windowing and streaming (see docs/readme-beam.md):
- Event-time fixed windows aligned to the epoch (as ``compare()``), from a timestamp column:
  each batch is split by window with vectorised numpy and each part is timestamped at its
  window's start; without a timestamp column the elements' own timestamps are used.
- Trigger: ``AfterWatermark`` with one late firing per late element (optionally early firings
  every ``early_firing`` seconds of processing time), ``ACCUMULATING`` panes and
  ``allowed_lateness``. Each pane carries the whole window so far, so a record for pane k
  supersedes panes < k: records are idempotent per (feature, window, pane), and a reader keeps the
  highest pane of each (feature, window). Data later than the allowed lateness is dropped by Beam
  (counted in the runner's dropped-due-to-lateness metric), not merged into a closed window.
- Running MLE: cumulative over windows in event-time order, seeded by ``initial_state``. In batch
  all windows are sorted first; in streaming a stateful step keeps the latest accumulator of every
  window seen, and the running estimate of window W merges those that start at or before W.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.coders import PickleCoder
from apache_beam.transforms import trigger as beam_trigger
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.windowed_value import PaneInfoTiming

from divtransforms.bins import CategoricalBins, NumericBins
from divtransforms.columns import column_kind, event_time_micros, parse_duration
from divtransforms.combiners import (
    ExactValuesFn,
    FeatureStats,
    FeatureStatsFn,
    NumericSummaryFn,
    VocabularyFn,
    column_of,
)
from divtransforms.compare import DEFAULT_ALPHA, Assessor, drift_record, new_run_id
from divtransforms.histogram import Histogram
from divtransforms.mle import FAMILIES, MLEAccumulator, accumulator_for, accumulator_from_dict
from divtransforms.profile import FeatureProfile, ReferenceProfile

__all__ = [
    "AssignWindows",
    "BinSamples",
    "BuildReference",
    "ComputeDivergence",
    "DriftMonitor",
    "RunningMLE",
    "WindowStats",
    "infer_kinds",
    "merge_running",
    "seed_running",
    "split_by_window",
    "state_dict",
]

_LOG = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_datetime(ts: Any) -> datetime:
    return _EPOCH + timedelta(microseconds=int(ts.micros))


@dataclass(frozen=True)
class WindowStats:
    """One pane of one window: its bounds (None for the global window), pane index and stats."""

    window_start: datetime | None
    window_end: datetime | None
    pane: int
    stats: FeatureStats
    on_time: bool = False  # fired by the watermark passing the window's end

    @property
    def sort_key(self) -> tuple[int, datetime, int]:
        return (0 if self.window_start is None else 1, self.window_start or _EPOCH, self.pane)


# -- windows --


def split_by_window(
    batch: Any, timestamp_column: str, size_micros: int
) -> Iterator[tuple[int, Any]]:
    """``(window_start_micros, part)`` for each window a batch's rows fall in (vectorised)."""
    micros = event_time_micros(column_of(batch, timestamp_column), timestamp_column)
    if micros.size == 0:
        return
    starts = np.floor_divide(micros, size_micros) * size_micros
    first = starts[0]
    if np.all(starts == first):
        yield int(first), batch
        return
    order = np.argsort(starts, kind="stable")
    uniq, idx = np.unique(starts[order], return_index=True)
    bounds = [*idx.tolist(), len(order)]
    for i, start in enumerate(uniq.tolist()):
        yield int(start), _take(batch, order[bounds[i] : bounds[i + 1]])


def _take(batch: Any, idx: np.ndarray) -> Any:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return batch.take(pa.array(idx, type=pa.int64()))
    return {
        k: (
            v.take(pa.array(idx, type=pa.int64()))
            if isinstance(v, pa.Array | pa.ChunkedArray)
            else np.asarray(v)[idx]
        )
        for k, v in batch.items()
    }


class _SplitByWindowFn(beam.DoFn):
    def __init__(self, timestamp_column: str, size_micros: int) -> None:
        self._column, self._size = timestamp_column, size_micros

    def process(self, batch: Any) -> Iterator[beam_window.TimestampedValue]:
        from apache_beam.utils.timestamp import Timestamp

        for start, part in split_by_window(batch, self._column, self._size):
            yield beam_window.TimestampedValue(part, Timestamp(micros=start))


class AssignWindows(beam.PTransform):
    """Batches -> batches in event-time fixed windows (no-op without ``window``).

    Triggering: on the watermark, then once per late element; accumulating panes.
    """

    def __init__(
        self,
        window: str | float | timedelta | None,
        timestamp_column: str | None = None,
        *,
        allowed_lateness: str | float | timedelta | None = None,
        early_firing: float | None = None,
    ) -> None:
        super().__init__()
        self._seconds = parse_duration(window) if window is not None else None
        self._column = timestamp_column
        self._lateness = parse_duration(allowed_lateness) if allowed_lateness else 0.0
        self._early = early_firing

    def expand(self, batches):
        if self._seconds is None:
            return batches
        size = round(self._seconds * 1e6)
        if self._column:
            batches = batches | "SplitByWindow" >> beam.ParDo(_SplitByWindowFn(self._column, size))
        early = beam_trigger.AfterProcessingTime(self._early) if self._early else None
        return batches | "Window" >> beam.WindowInto(
            beam_window.FixedWindows(size / 1e6),
            trigger=beam_trigger.AfterWatermark(early=early, late=beam_trigger.AfterCount(1)),
            accumulation_mode=beam_trigger.AccumulationMode.ACCUMULATING,
            allowed_lateness=self._lateness,
        )


# -- bins + window MLE --


class _AttachWindowFn(beam.DoFn):
    def process(
        self, stats: FeatureStats, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam
    ) -> Iterator[WindowStats]:
        if isinstance(window, beam_window.GlobalWindow):
            yield WindowStats(None, None, 0, stats)
        else:
            yield WindowStats(
                _to_datetime(window.start),
                _to_datetime(window.end),
                int(pane.index),
                stats,
                on_time=pane.timing == PaneInfoTiming.ON_TIME,
            )


class BinSamples(beam.PTransform):
    """Batches (windowed or not) -> one :class:`WindowStats` per window and pane: every
    feature's histogram on the reference's bins and its window MLE statistics.

    In the global window an empty input still gives (empty) statistics, so every feature gets a
    record saying ``n = 0``.
    """

    def __init__(self, profile: ReferenceProfile) -> None:
        super().__init__()
        self._profile = profile

    def expand(self, batches):
        combine = beam.CombineGlobally(FeatureStatsFn(self._profile))
        if not isinstance(batches.windowing.windowfn, beam_window.GlobalWindows):
            combine = combine.without_defaults()
        return batches | "Combine" >> combine | "AttachWindow" >> beam.ParDo(_AttachWindowFn())


# -- running MLE --


def seed_running(
    profile: ReferenceProfile, initial_state: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, MLEAccumulator | None]:
    out: dict[str, MLEAccumulator | None] = {}
    for name, fp in profile.features.items():
        state = (initial_state or {}).get(name)
        if fp.family is None:
            out[name] = None
        elif state:
            acc = accumulator_from_dict(state)
            if acc.family != fp.family:
                raise ValueError(
                    f"feature {name!r}: MLE state is for family {acc.family!r}, "
                    f"the reference uses {fp.family!r}"
                )
            out[name] = acc
        else:
            out[name] = fp.empty_mle()
    return out


def merge_running(
    running: dict[str, MLEAccumulator | None], stats: FeatureStats
) -> dict[str, MLEAccumulator | None]:
    return {
        n: (acc.merge(stats.mle[n]) if acc is not None and stats.mle.get(n) is not None else acc)  # type: ignore[arg-type]
        for n, acc in running.items()
    }


def state_dict(running: Mapping[str, MLEAccumulator | None]) -> dict[str, dict[str, Any]]:
    """``{feature: accumulator dict}`` (JSON-able) of the features that have an MLE family."""
    return {n: acc.to_dict() for n, acc in running.items() if acc is not None}


class _CumulateSortedFn(beam.DoFn):
    """Batch: all windows at once, sorted by event time; emits (window, running) and the state."""

    def __init__(self, seed: dict[str, MLEAccumulator | None]) -> None:
        self._seed = seed

    def process(self, windows: list[WindowStats]):
        running = dict(self._seed)
        last_pane: dict[Any, int] = {}
        for ws in windows:
            last_pane[ws.window_start] = max(ws.pane, last_pane.get(ws.window_start, -1))
        # Within a window only the last pane holds all its data (accumulating mode).
        for ws in sorted(windows, key=lambda w: w.sort_key):
            cum = merge_running(running, ws.stats)
            if ws.pane == last_pane[ws.window_start]:
                running = cum
            yield (ws, cum)
        yield beam.pvalue.TaggedOutput(RunningMLE.STATE, state_dict(running))


class _CumulateStatefulFn(beam.DoFn):
    """Streaming: keeps the latest pane's stats of every open window; running(W) merges the seed,
    the folded closed windows and the open windows starting <= W.

    When an on-time pane of window W arrives the watermark has passed W's end, so windows that
    ended more than the allowed lateness before W's end can no longer change (Beam drops data
    that late): they are folded into one accumulator, which keeps the state small.
    """

    STATE = ReadModifyWriteStateSpec("running", PickleCoder())

    def __init__(self, seed: dict[str, MLEAccumulator | None], lateness: timedelta) -> None:
        self._seed = seed
        self._lateness = lateness

    def process(self, keyed, state=beam.DoFn.StateParam(STATE)):
        _, ws = keyed
        folded, known = state.read() or (dict(self._seed), {})
        previous = known.get(ws.window_start)
        if previous is None or previous.pane <= ws.pane:
            known[ws.window_start] = ws
        running = folded
        for start in sorted(
            s for s in known if s is not None and (ws.window_start is None or s <= ws.window_start)
        ):
            running = merge_running(running, known[start].stats)
        if ws.window_start is None:
            running = merge_running(running, ws.stats)
        yield (ws, running)
        if ws.on_time and ws.window_end is not None:
            horizon = ws.window_end - self._lateness
            for start in sorted(s for s in known if s is not None):
                if known[start].window_end < horizon and start < ws.window_start:
                    folded = merge_running(folded, known.pop(start).stats)
        state.write((folded, known))
        latest = folded
        for start in sorted(s for s in known if s is not None):
            latest = merge_running(latest, known[start].stats)
        yield beam.pvalue.TaggedOutput(RunningMLE.STATE, state_dict(latest))


class RunningMLE(beam.PTransform):
    """WindowStats -> ``(WindowStats, {feature: running accumulator})`` (main output) and the
    cumulative state ``{feature: accumulator dict}`` (output ``RunningMLE.STATE``).

    The running estimate of a window is ``initial_state`` merged with every window up to and
    including it in event-time order; it differs from the window's own estimate only when there
    are several windows or a seed.
    """

    STATE = "state"

    def __init__(
        self,
        profile: ReferenceProfile,
        initial_state: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        streaming: bool | None = None,
        allowed_lateness: str | float | timedelta | None = None,
    ) -> None:
        super().__init__()
        self._seed = seed_running(profile, initial_state)
        self._streaming = streaming
        self._lateness = timedelta(
            seconds=parse_duration(allowed_lateness) if allowed_lateness else 0.0
        )

    def expand(self, window_stats):
        streaming = self._streaming
        if streaming is None:
            from apache_beam.options.pipeline_options import StandardOptions

            streaming = window_stats.pipeline.options.view_as(StandardOptions).streaming
        regrouped = window_stats | "Global" >> beam.WindowInto(beam_window.GlobalWindows())
        if streaming:
            return (
                regrouped
                | "Key" >> beam.Map(lambda ws: ("", ws))
                | "Cumulate"
                >> beam.ParDo(_CumulateStatefulFn(self._seed, self._lateness)).with_outputs(
                    self.STATE, main="windows"
                )
            )
        return (
            regrouped
            | "Collect" >> beam.combiners.ToList()
            | "Cumulate"
            >> beam.ParDo(_CumulateSortedFn(self._seed)).with_outputs(self.STATE, main="windows")
        )


# -- records --


class _RecordsFn(beam.DoFn):
    def __init__(
        self,
        profile: ReferenceProfile,
        run_id: str,
        alpha: float,
        base: float,
        policy: Assessor | None,
    ) -> None:
        self._features = profile.features
        self._reference_id = profile.reference_id
        self._run_id, self._alpha, self._base, self._policy = run_id, alpha, base, policy

    def process(self, element: tuple[WindowStats, Mapping[str, MLEAccumulator | None]]):
        ws, running = element
        for name, fp in self._features.items():
            yield drift_record(
                fp,
                ws.stats.histograms[name],
                ws.stats.mle.get(name),
                running.get(name),
                window_start=ws.window_start,
                window_end=ws.window_end,
                pane=ws.pane,
                run_id=self._run_id,
                reference_id=self._reference_id,
                alpha=self._alpha,
                base=self._base,
                policy=self._policy,
            )


class ComputeDivergence(beam.PTransform):
    """``(WindowStats, running MLE)`` -> drift records (dicts with ``DRIFT_RECORD_SCHEMA``
    fields), one per feature, window and pane, made by ``compare.drift_record``."""

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        run_id: str | None = None,
        alpha: float = DEFAULT_ALPHA,
        base: float = 2.0,
        policy: Assessor | str | None = "default",
    ) -> None:
        super().__init__()
        self._fn = _RecordsFn(profile, run_id or new_run_id(), alpha, base, policy)

    def expand(self, window_stats):
        return window_stats | "Records" >> beam.ParDo(self._fn)


class DriftMonitor(beam.PTransform):
    """Batches -> drift records: windows, bins, window and running MLE, divergences.

    ``window`` (``"1h"``, seconds, timedelta) with ``timestamp_column`` gives event-time fixed
    windows; without ``window`` there is one global window. With ``with_mle_state=True`` the
    output is ``{"records": ..., "mle_state": ...}`` (the cumulative MLE state for the next run).
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        window: str | float | timedelta | None = None,
        timestamp_column: str | None = None,
        allowed_lateness: str | float | timedelta | None = None,
        early_firing: float | None = None,
        initial_state: Mapping[str, Mapping[str, Any]] | None = None,
        run_id: str | None = None,
        alpha: float = DEFAULT_ALPHA,
        base: float = 2.0,
        policy: Assessor | str | None = "default",
        streaming: bool | None = None,
        with_mle_state: bool = False,
    ) -> None:
        super().__init__()
        self._profile = profile
        self._windows = AssignWindows(
            window, timestamp_column, allowed_lateness=allowed_lateness, early_firing=early_firing
        )
        self._running = RunningMLE(
            profile, initial_state, streaming=streaming, allowed_lateness=allowed_lateness
        )
        self._records = ComputeDivergence(
            profile, run_id=run_id, alpha=alpha, base=base, policy=policy
        )
        self._with_state = with_mle_state

    def expand(self, batches):
        from apache_beam.options.pipeline_options import StandardOptions

        streaming = batches.pipeline.options.view_as(StandardOptions).streaming
        if (
            streaming
            and self._windows._seconds is None
            and isinstance(batches.windowing.windowfn, beam_window.GlobalWindows)
        ):
            raise ValueError(
                "a streaming DriftMonitor needs a window (e.g. window='5m'): the "
                "global window of an unbounded input never closes"
            )
        running = (
            batches
            | "AssignWindows" >> self._windows
            | "BinSamples" >> BinSamples(self._profile)
            | "RunningMLE" >> self._running
        )
        records = running.windows | "ComputeDivergence" >> self._records
        if self._with_state:
            return {"records": records, "mle_state": running[RunningMLE.STATE]}
        return records


# -- reference --


def infer_kinds(
    schema: pa.Schema,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
) -> dict[str, str]:
    """``{feature: numeric|categorical}`` from an Arrow schema (timestamps are skipped)."""
    kinds = dict(kinds or {})
    names = list(features) if features else [n for n in schema.names if n not in set(exclude)]
    out = {}
    for name in names:
        if name in kinds:
            out[name] = kinds[name]
            continue
        idx = schema.get_field_index(name)
        if idx < 0:
            raise ValueError(
                f"feature {name!r} is not in the data (columns: {', '.join(schema.names)})"
            )
        kind = column_kind(pa.array([], type=schema.field(idx).type))
        if kind == "temporal":
            if features:
                raise ValueError(f"feature {name!r} holds timestamps: exclude it or give its kind")
            continue
        out[name] = kind
    return out


def _numeric_values(batch: Any, names: Sequence[str]) -> Iterator[tuple[str, list[float]]]:
    from divtransforms.bins import to_float_array

    for name in names:
        x, _ = to_float_array(column_of(batch, name), name)
        x = x[np.isfinite(x)]
        if x.size:
            yield name, x


def _make_specs(_, *, kinds, n_bins, strategy, top_n, edges, exact, approx, vocab, summary):
    specs: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind == "categorical":
            counts = vocab.get(name) or {}
            if not counts:
                raise ValueError(
                    f"feature {name!r}: no non-missing values to build a vocabulary from"
                )
            specs[name] = CategoricalBins.from_value_counts(counts, top_n=top_n)
        elif name in edges:
            specs[name] = NumericBins.from_edges(edges[name])
        elif name in exact:
            specs[name] = NumericBins.from_finite(
                exact[name], strategy=strategy, n_bins=n_bins, feature=name
            )
        elif strategy == "uniform":
            s = summary.get(name)
            if s is None or s.n == 0:
                raise ValueError(f"feature {name!r}: no finite values to place bin edges on")
            specs[name] = (
                NumericBins.from_edges([s.lo])
                if s.lo == s.hi
                else NumericBins.from_edges(np.linspace(s.lo, s.hi, n_bins + 1))
            )
        else:
            if name not in approx:
                raise ValueError(f"feature {name!r}: no finite values to place bin edges on")
            specs[name] = NumericBins.from_edges(approx[name])
    return specs


def _make_profile(stats_list, *, specs, kinds, families, summary, exact, source):
    from divtransforms.families import choose_family, family_center
    from divtransforms.moments import ValueSummary

    features: dict[str, FeatureProfile] = {}
    for name, kind in kinds.items():
        fam = families.get(name, "auto")
        reason = None if fam is None else "set by the user"
        s = None
        if kind == "numeric":
            s = ValueSummary.of(exact[name]) if name in exact else summary.get(name)
            s = s if s is not None else ValueSummary()
        if fam == "auto":
            if kind == "categorical":
                fam, reason = "categorical", "categorical feature"
            else:
                choice = choose_family(s)
                fam, reason = choice.family, choice.reason
        acc = None
        if fam == "categorical":
            acc = accumulator_for(fam, specs[name])
        elif fam is not None:
            acc = accumulator_for(fam).with_center(family_center(fam, s))
        features[name] = FeatureProfile(name, kind, Histogram.empty(specs[name]), fam, acc, reason)
    return features


class _StatsWithSpecsFn(beam.DoFn):
    """Per batch: histograms + MLE statistics on the specs (a side input) -> FeatureStats."""

    def process(self, batch, features):
        from divtransforms.combiners import feature_stats_of_batch

        yield feature_stats_of_batch(features, batch)


def _finish_profile(stats: FeatureStats, features, source: str) -> ReferenceProfile:
    from divtransforms.profile import finish_feature

    out = {}
    for name, fp in features.items():
        out[name] = finish_feature(
            name, fp.kind, stats.histograms[name], fp.family, stats.mle.get(name), fp.reason
        )
    return ReferenceProfile(out, source=source)


class _MergeStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, stats):
        return stats if acc is None else acc.merge(stats)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            if a is not None:
                out = a if out is None else out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


class BuildReference(beam.PTransform):
    """Batches -> a PCollection holding one :class:`ReferenceProfile`.

    Two passes over the data: (1) numeric bin edges from Beam's ``ApproximateQuantiles``
    (``exact=True``: all finite values of a feature gathered on one worker and
    ``numpy.quantile``, as ``ReferenceProfile.build``; for small data), vocabularies from exact
    value counts, ranges and family hints from mergeable moments; (2) histograms and MLE
    statistics on those bins. ``families``: ``{feature: family|None}``, default inferred.
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        *,
        families: Mapping[str, str | None] | None = None,
        n_bins: int = 32,
        strategy: str = "quantile",
        top_n: int = 50,
        edges: Mapping[str, Sequence[float]] | None = None,
        exact: bool = False,
        source: str = "",
    ) -> None:
        super().__init__()
        bad = {n: k for n, k in kinds.items() if k not in ("numeric", "categorical")}
        if bad:
            raise ValueError(f"unknown feature kinds {bad} (numeric or categorical)")
        if strategy not in ("quantile", "uniform"):
            raise ValueError(f"unknown bin strategy {strategy!r} (quantile or uniform)")
        for name, fam in (families or {}).items():
            if fam not in (*FAMILIES, None, "auto"):
                raise ValueError(f"feature {name!r}: unknown MLE family {fam!r}")
        self._kinds = dict(kinds)
        self._families = dict(families or {})
        self._n_bins, self._strategy, self._top_n = n_bins, strategy, top_n
        self._edges = {k: list(v) for k, v in (edges or {}).items()}
        self._exact, self._source = exact, source

    def expand(self, batches):
        numeric = [n for n, k in self._kinds.items() if k == "numeric"]
        categorical = [n for n, k in self._kinds.items() if k == "categorical"]
        need_edges = [n for n in numeric if n not in self._edges]
        values = batches | "NumericValues" >> beam.FlatMap(_numeric_values, need_edges)
        if self._exact:
            exact = beam.pvalue.AsDict(
                values | "ExactValues" >> beam.CombinePerKey(ExactValuesFn())
            )
            approx = beam.pvalue.AsDict(batches.pipeline | "NoApprox" >> beam.Create([]))
        else:
            exact = beam.pvalue.AsDict(batches.pipeline | "NoExact" >> beam.Create([]))
            approx = beam.pvalue.AsDict(
                values
                | "AsLists" >> beam.MapTuple(lambda k, x: (k, x.tolist()))
                | "Quantiles"
                >> beam.ApproximateQuantiles.PerKey(self._n_bins + 1, input_batched=True)
            )
        vocab = beam.pvalue.AsSingleton(
            batches | "Vocabulary" >> beam.CombineGlobally(VocabularyFn(categorical))
        )
        summary = beam.pvalue.AsSingleton(
            batches | "Summary" >> beam.CombineGlobally(NumericSummaryFn(numeric))
        )
        start = batches.pipeline | "Start" >> beam.Create([None])
        specs = beam.pvalue.AsSingleton(
            start
            | "Specs"
            >> beam.Map(
                _make_specs,
                kinds=self._kinds,
                n_bins=self._n_bins,
                strategy=self._strategy,
                top_n=self._top_n,
                edges=self._edges,
                exact=exact,
                approx=approx,
                vocab=vocab,
                summary=summary,
            )
        )
        features = beam.pvalue.AsSingleton(
            start
            | "Features"
            >> beam.Map(
                _make_profile,
                specs=specs,
                kinds=self._kinds,
                families=self._families,
                summary=summary,
                exact=exact,
                source=self._source,
            )
        )
        return (
            batches
            | "Stats" >> beam.ParDo(_StatsWithSpecsFn(), features)
            | "Merge" >> beam.CombineGlobally(_MergeStatsFn())
            | "Profile" >> beam.Map(_empty_if_none, features, self._source)
        )


def _empty_if_none(stats: FeatureStats | None, features, source: str) -> ReferenceProfile:
    if stats is None:
        stats = FeatureStats.empty(features)
    return _finish_profile(stats, features, source)
