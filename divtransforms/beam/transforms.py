"""Beam composites for drift monitoring; each ``expand()`` wires a few steps around one CombineFn.

Elements are batches: ``pyarrow.RecordBatch`` (or ``Table``) or dicts of numpy arrays, never one
element per sample. The data path reads top to bottom:

    batches -> AssignWindows -> BinSamples -> RunningMLE -> ComputeDivergence -> drift records

``DriftMonitor`` is that whole path in one transform;
``divtransforms.beam.reference.BuildReference`` builds the ``ReferenceProfile`` the monitor compares
against. The statistics of a window and the running estimates are the core's
(``divtransforms.window``): these transforms only drive them. Records come from
``divtransforms.drift.drift_record``, so they equal ``divtransforms.compare()`` on the same data
(counts exactly; floating-point sums up to rounding, as batches are merged in another order).

Windowing and streaming (see docs/beam.md):
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

import dataclasses
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger as beam_trigger
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.windowed_value import PaneInfoTiming

from divtransforms.beam.combiners import NAMESPACE, FeatureStatsFn
from divtransforms.columns import num_rows, parse_duration
from divtransforms.drift import RecordStamp, new_run_id, resolve_policy, window_records
from divtransforms.eventtime import Horizon, ImplausibleFile, source_of
from divtransforms.profile import ReferenceProfile
from divtransforms.running import RunningEstimates, WindowCumulation
from divtransforms.settings import CheckSettings
from divtransforms.variation import window_judge
from divtransforms.variation.cusum import judged_scores
from divtransforms.window import EPOCH, FeatureStats, known_columns, split_by_window, when

__all__ = [
    "AssignWindows",
    "BinSamples",
    "ComputeDivergence",
    "DriftMonitor",
    "RunningMLE",
    "WindowStats",
]

_LOG = logging.getLogger(__name__)


def _profile_display(profile: ReferenceProfile) -> dict[str, Any]:
    """What a pipeline's graph (Dataflow's UI) shows of the reference a transform uses."""
    return {
        "reference_id": profile.reference_id,
        "features": ", ".join(profile.features),
    }


def _to_datetime(ts: Any) -> datetime:
    return when(int(ts.micros))


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
        return (0 if self.window_start is None else 1, self.window_start or EPOCH, self.pane)


# -- windows --


class _SplitByWindowFn(beam.DoFn):
    """Rows -> their event-time windows; rows without a usable event time are counted (Beam
    metric ``divtransforms/no_event_time``) and logged once per batch, naming file and row, as
    are rows outside the plausibility ``horizon`` (also ``implausible_event_time``)."""

    def __init__(
        self,
        timestamp_column: str,
        size_micros: int,
        fmt: str | None = None,
        horizon: Horizon | None = None,
    ) -> None:
        self._column, self._size, self._fmt = timestamp_column, size_micros, fmt
        self._horizon = horizon
        self._bad = Metrics.counter(NAMESPACE, "no_event_time")
        self._implausible = Metrics.counter(NAMESPACE, "implausible_event_time")

    def process(self, batch: Any) -> Iterator[beam_window.TimestampedValue]:
        parts, _ = self._split(batch)
        yield from parts

    def _split(self, batch: Any) -> tuple[list[beam_window.TimestampedValue], Any]:
        from apache_beam.utils.timestamp import Timestamp

        parts, bad = split_by_window(batch, self._column, self._size, self._fmt, self._horizon)
        if bad is not None:
            self._bad.inc(bad.count)
            if bad.implausible:
                self._implausible.inc(bad.implausible)
            _LOG.warning("%s", bad.message())
        return [beam_window.TimestampedValue(p, Timestamp(micros=s)) for s, p in parts], bad


class _SplitByWindowPerFileFn(_SplitByWindowFn):
    """:class:`_SplitByWindowFn` that also gives, per batch, ``(file, (rows, rows outside the
    horizon))`` on the output tagged ``files`` (bounded inputs)."""

    def process(self, batch: Any) -> Iterator[Any]:
        parts, bad = self._split(batch)
        yield from parts
        path, _ = source_of(batch)
        if path is not None:
            gone = bad.implausible if bad is not None else 0
            yield beam.pvalue.TaggedOutput(_FILES, (path, (num_rows(batch), gone)))


_FILES = "files"


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    rows = gone = 0
    for n, g in pairs:
        rows, gone = rows + n, gone + g
    return rows, gone


def _fail_implausible_file(item: tuple[str, tuple[int, int]]) -> Iterator[None]:
    """A file every row of which is outside the horizon fails the job, naming the file (the
    monitor then retries and quarantines it)."""
    path, (rows, gone) = item
    if rows and gone == rows:
        raise ImplausibleFile(path, rows)
    return iter(())


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
        timestamp_format: str | None = None,
        horizon: Horizon | None = None,
    ) -> None:
        super().__init__()
        self._seconds = parse_duration(window) if window is not None else None
        self._column = timestamp_column
        self._fmt = timestamp_format
        self._horizon = horizon
        self._lateness = parse_duration(allowed_lateness) if allowed_lateness else 0.0
        self._early = early_firing

    def display_data(self) -> dict[str, Any]:
        return {
            "window_seconds": self._seconds or 0.0,
            "timestamp_column": self._column or "",
            "allowed_lateness_seconds": self._lateness,
        }

    def expand(self, batches):
        if self._seconds is None:
            return batches
        size = round(self._seconds * 1e6)
        if self._column:
            if self._horizon is not None and batches.is_bounded:
                # a file whose rows are all implausible fails the job, by name
                fn = _SplitByWindowPerFileFn(self._column, size, self._fmt, self._horizon)
                split = batches | "SplitByWindow" >> beam.ParDo(fn).with_outputs(
                    _FILES, main="rows"
                )
                batches = split.rows
                _ = (
                    split[_FILES]
                    | "RowsPerFile" >> beam.CombinePerKey(_sum_pairs)
                    | "PlausibleFiles" >> beam.FlatMap(_fail_implausible_file)
                )
            else:
                fn = _SplitByWindowFn(self._column, size, self._fmt, self._horizon)
                batches = batches | "SplitByWindow" >> beam.ParDo(fn)
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


@beam.typehints.with_output_types(WindowStats)
class BinSamples(beam.PTransform):
    """Batches (windowed or not) -> one :class:`WindowStats` per window and pane: every
    feature's histogram on the reference's bins and its window MLE statistics.

    In the global window an empty input still gives (empty) statistics, so every feature gets a
    record saying ``n = 0``.
    """

    def __init__(self, profile: ReferenceProfile, known: Collection[str] | None = None) -> None:
        super().__init__()
        self._profile = profile
        self._known = known

    def display_data(self) -> dict[str, Any]:
        return _profile_display(self._profile)

    def expand(self, batches):
        combine = beam.CombineGlobally(FeatureStatsFn(self._profile, self._known))
        if not isinstance(batches.windowing.windowfn, beam_window.GlobalWindows):
            combine = combine.without_defaults()
        return batches | "Combine" >> combine | "AttachWindow" >> beam.ParDo(_AttachWindowFn())


# -- running MLE --

#: The tag of ``RunningMLE``'s cumulative-state output.
STATE_TAG = "state"


def _with_state_output(dofn: type[beam.DoFn]) -> type[beam.DoFn]:
    """Types a cumulation DoFn's outputs: the main one ``(WindowStats, RunningEstimates)`` and
    the tagged ``RunningMLE.STATE`` one, ``{feature: accumulator dict}``.

    Beam 2.78 and later infer a DoFn's output type from what ``process`` yields, tagged outputs
    included (``Union[TaggedOutput, ...]``), unless each tag is typed with a keyword of
    ``with_output_types`` (tested on 2.77 and 2.78); releases without per-tag hints take the main
    type alone."""
    main = tuple[WindowStats, RunningEstimates]
    if hasattr(beam.typehints.decorators.IOTypeHints, "tagged_output_types"):
        hints = beam.typehints.with_output_types(main, **{STATE_TAG: dict[str, Any]})
    else:  # a Beam without per-tag output hints
        hints = beam.typehints.with_output_types(main)
    return hints(dofn)


@_with_state_output
class _CumulateSortedFn(beam.DoFn):
    """Batch: all windows at once, in event-time order; emits (window, running) and the state."""

    def __init__(self, seed: RunningEstimates) -> None:
        self._seed = seed

    def process(self, windows: list[WindowStats]):
        cumulation = WindowCumulation(self._seed)
        for ws in sorted(windows, key=lambda w: w.sort_key):
            yield (ws, cumulation.complete(ws.window_start, ws.window_end, ws.pane, ws.stats))
        yield beam.pvalue.TaggedOutput(STATE_TAG, cumulation.latest().to_state())


@_with_state_output
class _CumulateStatefulFn(beam.DoFn):
    """Streaming: a :class:`WindowCumulation` in Beam state. When an on-time pane of window W
    arrives the watermark has passed W's end, so windows that ended more than the allowed
    lateness before W's end can no longer change (Beam drops data that late): they are folded.
    """

    STATE = ReadModifyWriteStateSpec("running", PickleCoder())

    def __init__(self, seed: RunningEstimates, lateness: timedelta) -> None:
        self._seed = seed
        self._lateness = lateness

    def process(self, keyed, state=beam.DoFn.StateParam(STATE)):
        _, ws = keyed
        cumulation = state.read() or WindowCumulation(self._seed)
        # the scorer (the profile, a windowed reference's judge) is the DoFn's, not the state's
        cumulation.folded = dataclasses.replace(cumulation.folded, scorer=self._seed.scorer)
        yield (ws, cumulation.observe(ws.window_start, ws.window_end, ws.pane, ws.stats))
        if ws.on_time and ws.window_end is not None and ws.window_start is not None:
            cumulation.fold(before=ws.window_start, ended_before=ws.window_end - self._lateness)
        latest = cumulation.latest().to_state()
        cumulation.folded = dataclasses.replace(cumulation.folded, scorer=None)
        state.write(cumulation)
        yield beam.pvalue.TaggedOutput(STATE_TAG, latest)


@beam.typehints.with_input_types(WindowStats)
class RunningMLE(beam.PTransform):
    """WindowStats -> ``(WindowStats, {feature: running accumulator})`` (main output) and the
    cumulative state ``{feature: accumulator dict}`` (output ``RunningMLE.STATE``).

    The running estimate of a window is ``initial_state`` merged with every window up to and
    including it in event-time order; it differs from the window's own estimate only when there
    are several windows or a seed.
    """

    STATE = STATE_TAG

    def __init__(
        self,
        profile: ReferenceProfile,
        initial_state: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        streaming: bool | None = None,
        allowed_lateness: str | float | timedelta | None = None,
        policy: Any = None,
        judge: Any = None,
    ) -> None:
        super().__init__()
        self._seed = RunningEstimates.seed(profile.features, initial_state, policy, judge)
        self._streaming = streaming
        self._lateness = timedelta(
            seconds=parse_duration(allowed_lateness) if allowed_lateness else 0.0
        )

    def display_data(self) -> dict[str, Any]:
        return {
            "features": ", ".join(n for n, a in self._seed.accumulators.items() if a is not None),
            "allowed_lateness_seconds": self._lateness.total_seconds(),
        }

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
    def __init__(self, profile: ReferenceProfile, settings: CheckSettings) -> None:
        self._features = profile.features
        self._reference_id = profile.reference_id
        self._run_id = settings.run_id or new_run_id()
        self._settings = settings
        # a windowed reference judges each window against its own variation (and season)
        self._judge = window_judge(profile, settings.window_micros, settings.season)

    def process(self, element: tuple[WindowStats, RunningEstimates]):
        ws, running = element
        stamp = RecordStamp(
            self._run_id, self._reference_id, ws.window_start, ws.window_end, ws.pane
        )
        yield from window_records(
            self._features,
            ws.stats,
            running,
            settings=self._settings,
            stamp=stamp,
            judge=self._judge,
        )


@beam.typehints.with_output_types(dict[str, Any])
class ComputeDivergence(beam.PTransform):
    """``(WindowStats, running MLE)`` -> drift records (dicts with ``DRIFT_RECORD_SCHEMA``
    fields), one per feature, window and pane, made by ``drift.window_records``. ``settings``
    (``divtransforms.settings.CheckSettings``) or its fields as keyword arguments: ``run_id``,
    ``alpha``, ``base``, ``policy``, and a windowed reference's ``window`` and ``season``."""

    def __init__(
        self, profile: ReferenceProfile, settings: CheckSettings | None = None, **options: Any
    ) -> None:
        super().__init__()
        self._fn = _RecordsFn(profile, CheckSettings.of(settings, "ComputeDivergence", **options))

    def display_data(self) -> dict[str, Any]:
        return {"run_id": self._fn._run_id, "reference_id": self._fn._reference_id}

    def expand(self, window_stats):
        return window_stats | "Records" >> beam.ParDo(self._fn)


class DriftMonitor(beam.PTransform):
    """Batches -> drift records: windows, bins, window and running MLE, divergences.

    How it windows and judges is a :class:`divtransforms.settings.CheckSettings`: ``settings``,
    or its fields as keyword arguments (which win), e.g.
    ``DriftMonitor(profile, window="1h", timestamp_column="ts", allowed_lateness="10m")``.
    ``window`` with ``timestamp_column`` gives event-time fixed windows; without ``window``
    there is one global window. ``initial_state`` seeds the running MLE; ``early_firing``
    (seconds of processing time) fires early panes; ``streaming`` (default: the pipeline's
    option) picks the streaming cumulation. With ``with_mle_state=True`` the output is
    ``{"records": ..., "mle_state": ..., "window_stats": ...}`` (the cumulative MLE
    state for the next run; each window's :class:`WindowStats`).
    A windowed reference (``divtransforms.variation``) judges every window against the
    reference's own between-window variation; ``season`` against the same season's windows.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        settings: CheckSettings | None = None,
        *,
        initial_state: Mapping[str, Mapping[str, Any]] | None = None,
        early_firing: float | None = None,
        streaming: bool | None = None,
        with_mle_state: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        s = CheckSettings.of(settings, "DriftMonitor", **options)
        self._profile = profile
        self._windows = AssignWindows(
            s.window,
            s.timestamp_column,
            allowed_lateness=s.allowed_lateness,
            early_firing=early_firing,
            timestamp_format=s.timestamp_format,
            horizon=s.horizon(),
        )
        # Columns a check expects besides the features (not reported as new columns).
        self._known = known_columns(profile, s.timestamp_column)
        self._running = RunningMLE(
            profile,
            initial_state,
            streaming=streaming,
            allowed_lateness=s.allowed_lateness,
            policy=resolve_policy(s.policy),
            judge=judged_scores(window_judge(profile, s.window_micros, s.season)),  # records' null
        )
        self._records = ComputeDivergence(profile, s)
        self._with_state = with_mle_state

    def display_data(self) -> dict[str, Any]:
        return {**_profile_display(self._profile), **self._windows.display_data()}

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
        stats = (
            batches
            | "AssignWindows" >> self._windows
            | "BinSamples" >> BinSamples(self._profile, self._known)
        )
        running = stats | "RunningMLE" >> self._running
        records = running.windows | "ComputeDivergence" >> self._records
        if self._with_state:
            # "window_stats": every window's and pane's statistics (a rolling reference keeps
            # them: pipelines.check_job)
            return {
                "records": records,
                "mle_state": running[RunningMLE.STATE],
                "window_stats": stats,
            }
        return records
