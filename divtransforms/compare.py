"""One call for notebooks and scripts: compare current data with a reference, get drift records.

:class:`WindowDriver` is the one loop over a check's windows without Beam. ``compare()`` (one
table in memory), the in-process engine (``pipelines.local``: files in passes of column groups)
and the watcher (``pipelines.watch``: new files as they appear) read differently but do the same
with what they read, here:

    batch -> split (event-time windows of the settings) -> FeatureStats merged per window
          -> running estimates in event-time order -> drift.window_records

A batch run adds every window's statistics and then makes all records at once
(:meth:`WindowDriver.records`: one pane per window, the running estimates folded in time order);
a watcher re-emits the windows new data touched, each with its next pane
(:meth:`WindowDriver.emit`), as the streaming ``DriftMonitor`` does. The Beam transforms
(``divtransforms.beam.transforms``) drive the same per-window core (``running.WindowCumulation``
and ``drift.window_records``) from Beam's windows and panes.

The records themselves (``drift_record``, ``window_records``, ``RecordStamp``, ...) are made in
:mod:`divtransforms.drift`; this module re-exports them, so ``divtransforms.compare``'s names
are unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from divtransforms.columns import as_columns, batch_columns
from divtransforms.drift import (
    DEFAULT_ALPHA,
    Assessor,
    RecordStamp,
    drift_record,
    new_column_record,
    new_run_id,
    resolve_policy,
    window_records,
)
from divtransforms.eventtime import BadEventTimes
from divtransforms.profile import FeatureProfile, ReferenceProfile
from divtransforms.records import records_to_table, sort_records
from divtransforms.running import RunningEstimates, WindowCumulation
from divtransforms.settings import CheckSettings
from divtransforms.variation import WindowJudge, window_judge
from divtransforms.variation.cusum import judged_scores
from divtransforms.window import (
    FeatureStats,
    feature_stats_of_batch,
    known_columns,
    split_by_window,
    when,
)

__all__ = [
    "DEFAULT_ALPHA",
    "Assessor",
    "CheckSettings",
    "RecordStamp",
    "WindowDriver",
    "compare",
    "drift_record",
    "new_column_record",
    "new_run_id",
    "resolve_policy",
    "window_records",
]

_log = logging.getLogger(__name__)


class WindowDriver:
    """The windows of one check against ``profile`` with ``settings`` (see the module
    docstring): the features, the known columns, the windows' size, the plausible event times,
    a windowed reference's judge, the run id, and the windows' statistics so far.

    ``features`` (default: all the profile's) are the features checked; ``mle_state`` seeds the
    running estimates (``{feature: accumulator dict}``); ``created_at`` stamps every record
    (``None``: each record's own time). ``settings.run_id`` None gets a new run id.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        settings: CheckSettings,
        *,
        features: Mapping[str, FeatureProfile] | None = None,
        mle_state: Mapping[str, Mapping[str, Any]] | None = None,
        created_at: datetime | None = None,
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.features = profile.features if features is None else features
        self.size = settings.window_micros
        self.horizon = settings.horizon()
        self.known = known_columns(profile, settings.timestamp_column)
        self.judge = _judge(profile, self.size, settings)
        self.run_id = settings.run_id or new_run_id()
        self._stamp = RecordStamp(self.run_id, profile.reference_id, created_at=created_at)
        seed = RunningEstimates.seed(
            self.features, mle_state, resolve_policy(settings.policy), judged_scores(self.judge)
        )
        self.cumulation = WindowCumulation(seed)
        self.windows: dict[int | None, FeatureStats] = {}
        self.panes: dict[int | None, int] = {}  # the last pane emitted per window (emit)

    def split(self, batch: Any) -> tuple[list[tuple[int | None, Any]], BadEventTimes | None]:
        """``[(window start in epoch microseconds, rows)]`` in time order and the rows without
        a plausible event time (``window.split_by_window``); without a window, the batch as the
        global window (start None)."""
        if self.size is None:
            return [(None, batch)], None
        s = self.settings
        parts, bad = split_by_window(
            batch, s.timestamp_column or "", self.size, s.timestamp_format, self.horizon
        )
        return list(parts), bad

    def add(self, start: int | None, stats: FeatureStats) -> None:
        """Merge ``stats`` into window ``start``'s statistics (the first are kept as given)."""
        have = self.windows.get(start)
        self.windows[start] = stats if have is None else have.merge(stats)

    def records(self) -> list[dict[str, Any]]:
        """The records of every window, in event-time order (the global window first), one pane
        each: the windows are complete, so each earlier window is folded into the running
        estimates before the next (``WindowCumulation.complete``, as Beam's batch check).
        :meth:`state` is then the state for the next run."""
        out: list[dict[str, Any]] = []
        for start in sorted(self.windows, key=lambda s: (s is not None, s or 0)):
            out += self._records_of(start, 0, complete=True)
        return out

    def emit(self, starts: Iterable[int | None]) -> list[dict[str, Any]]:
        """The records of the windows ``starts`` (whose data changed), each with its next pane
        and all its data so far; the running estimates of window W merge the seed and every
        window starting at or before W (a streaming check: nothing is folded)."""
        out: list[dict[str, Any]] = []
        for start in starts:
            pane = self.panes[start] = self.panes.get(start, -1) + 1
            out += self._records_of(start, pane, complete=False)
        return out

    def state(self) -> dict[str, dict[str, Any]]:
        """The running estimates' state for the next run (``{feature: accumulator dict}``)."""
        return self.cumulation.latest().to_state()

    def _records_of(self, start: int | None, pane: int, complete: bool) -> list[dict[str, Any]]:
        stats = self.windows[start]
        ws = we = None
        if start is not None:
            ws, we = when(start), when(start + (self.size or 0))
        cumulate = self.cumulation.complete if complete else self.cumulation.observe
        running = cumulate(start, we, pane, stats)
        stamp = RecordStamp(
            self._stamp.run_id, self._stamp.reference_id, ws, we, pane, self._stamp.created_at
        )
        return window_records(
            self.features, stats, running, settings=self.settings, stamp=stamp, judge=self.judge
        )


def _judge(profile: ReferenceProfile, size: int | None, s: CheckSettings) -> WindowJudge | None:
    """A windowed reference's judge (``variation.window_judge``); ``between_windows`` False:
    none (today's tests), True: required."""
    if s.between_windows is None:
        return window_judge(profile, size, s.season)
    return WindowJudge(profile, size, s.season) if s.between_windows else None


def compare(
    reference: ReferenceProfile | Any,
    current: Any,
    settings: CheckSettings | None = None,
    *,
    features: Iterable[str] | None = None,
    mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> pa.Table:
    """Drift records of ``current`` against ``reference``, one per feature (and window).

    ``reference`` is a :class:`ReferenceProfile` or data to build one from (pyarrow Table, pandas
    DataFrame, dict of arrays); ``current`` is data of the same kinds. How the check windows and
    judges is a :class:`divtransforms.settings.CheckSettings`: ``settings``, or its fields as
    keyword arguments (which win over ``settings``), e.g.
    ``compare(reference, current, timestamp_column="ts", window="1h", policy=None)``.

    With ``window`` (``"1h"``, seconds, a timedelta) and ``timestamp_column``, rows go to
    event-time fixed windows aligned to the epoch, and the running MLE accumulates over the
    windows in time order, starting from ``mle_state`` (``{feature: accumulator dict}``) when
    given. Event times are parsed as ``divtransforms.eventtime.parse_event_times`` does
    (``timestamp_format`` for other layouts); rows without a usable one are left out, counted
    in the table's metadata (``divtransforms.excluded_rows``) and logged, as are rows whose event
    time is later than ``max_future`` after now or, with ``max_age``, earlier than that before
    now (durations; both off by default here, a monitor's ``[source] max_future`` is one day:
    docs/reliability.md). Each record's ``severity`` comes from ``policy`` (the default
    :class:`divtransforms.policy.Policy` unless given; ``None`` leaves it empty); ``alpha`` and
    ``base`` are the divergences' pseudo-counts and logarithm base; ``run_id`` names the run.

    A feature the data lacks gets a record with a ``missing_column`` schema issue; a column the
    reference does not know gets a record of kind ``unprofiled`` (``new_column``). Returns a
    ``pyarrow.Table`` with ``records.DRIFT_RECORD_SCHEMA`` (``.to_pandas()`` for a DataFrame).

    A windowed reference (``ReferenceProfile.build(..., window=...)`` or ``chunk``) judges each
    window against the reference's own between-window variation (``between_windows``, default
    on for such a reference; ``False``: today's tests); ``season`` (``hour_of_day``,
    ``day_of_week``, ``hour_of_week``) compares each window with the reference's windows of the
    same season (``divtransforms.variation``).
    """
    s = CheckSettings.of(settings, "compare", **options)
    # Arrow data stays Arrow (its schema metadata may name columns a reader left unread).
    cols = current if isinstance(current, pa.Table | pa.RecordBatch) else as_columns(current)
    if not isinstance(reference, ReferenceProfile):
        exclude = [s.timestamp_column] if s.timestamp_column else []
        reference = ReferenceProfile.build(reference, exclude=exclude)
    names = list(features) if features is not None else list(reference.features)
    unknown = [n for n in names if n not in reference.features]
    if unknown:
        raise ValueError(
            f"features {unknown} are not in the reference profile {reference.reference_id}"
        )
    if s.window is not None and s.timestamp_column is None:
        raise ValueError("a window needs a timestamp_column to read event times from")
    created = datetime.now(UTC)
    if s.season is not None and s.window is None:
        raise ValueError("a seasonal reference needs a window and a timestamp_column")
    between = s.between_windows if s.between_windows is not None else reference.windows is not None
    if s.season is not None and not between:
        raise ValueError("a seasonal reference needs a windowed reference (between_windows)")
    if s.window is not None and s.timestamp_column not in batch_columns(cols):
        raise ValueError(
            f"timestamp column {s.timestamp_column!r} is not in the data "
            f"(columns: {batch_columns(cols)})"
        )
    driver = WindowDriver(
        reference,
        replace(s, now=created.timestamp()) if s.now is None else s,
        features={name: reference.features[name] for name in names},
        mle_state=mle_state,
        created_at=created,
    )
    parts, bad = driver.split(cols)
    if bad is not None:
        _log.warning("%s", bad.message())
    for start, part in parts:
        driver.add(start, feature_stats_of_batch(driver.features, part, known=driver.known))
    table = sort_records(records_to_table(driver.records()))
    if bad is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"divtransforms.excluded_rows"] = json.dumps(
            {"count": bad.count, "reason": bad.message()}
            | ({"implausible": bad.implausible} if bad.implausible else {})
        ).encode()
        table = table.replace_schema_metadata(meta)
    return table
