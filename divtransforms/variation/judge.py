"""Judging a monitor's windows against a windowed (and maybe seasonal) reference.

**Seasons** (:data:`SEASONS`): ``hour_of_day``, ``day_of_week`` or ``hour_of_week``. A window is
compared with the reference's windows of the same season (their counts and moments merged), and
the variation is estimated within seasons. A season with fewer than :data:`MIN_SEASON_WINDOWS`
reference windows is judged against the whole reference (pooled), and the record says so.
:func:`window_judge` is the one entry point every driver (``compare()``, the in-process engine,
the Beam transforms, the watcher) uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from divtransforms.variation.model import (
    MIN_WINDOWS,
    FeatureVariation,
    ScaleAdjustment,
    estimate,
    scale_adjustment,
)

if TYPE_CHECKING:
    from divtransforms.features import FeatureProfile
    from divtransforms.features import ProfileView as ReferenceProfile
    from divtransforms.variation.summary import FeatureWindows, WindowedSummary

__all__ = [
    "DAY",
    "HOUR",
    "MIN_SEASON_WINDOWS",
    "SEASONS",
    "Judged",
    "WindowJudge",
    "season_label",
    "season_of",
    "window_judge",
]

_log = logging.getLogger(__name__)

MIN_SEASON_WINDOWS = 2  # reference windows a season needs to be its own reference
HOUR = 3_600_000_000
DAY = 24 * HOUR
SEASONS = ("hour_of_day", "day_of_week", "hour_of_week")


def season_of(season: str, start_micros: Any) -> Any:
    """The season index of window starts (epoch microseconds, UTC): ``hour_of_day`` 0-23,
    ``day_of_week`` 0-6 (Monday = 0), ``hour_of_week`` 0-167 (Monday 00:00 = 0)."""
    s = np.asarray(start_micros, dtype=np.int64)
    hour = np.floor_divide(s, HOUR) % 24
    dow = (np.floor_divide(s, DAY) + 3) % 7  # 1970-01-01 was a Thursday
    if season == "hour_of_day":
        return hour
    if season == "day_of_week":
        return dow
    if season == "hour_of_week":
        return dow * 24 + hour
    raise ValueError(f"unknown season {season!r} (one of {', '.join(SEASONS)})")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def season_label(season: str, index: int) -> str:
    """``hour_of_day=13h``, ``day_of_week=Mon``, ``hour_of_week=Mon 13h``."""
    if season == "day_of_week":
        return f"{season}={_DAYS[index]}"
    if season == "hour_of_week":
        return f"{season}={_DAYS[index // 24]} {index % 24:02d}h"
    return f"{season}={index:02d}h"


@dataclass
class Judged:
    """What judges one feature's window: the reference (seasonal or whole), its variation, the
    share ``sum n_i^2 / N^2`` of its windows, the record's ``season`` and ``variation``, and
    what the window's own location adds to its scale statistic (``scale``)."""

    fp: FeatureProfile
    variation: FeatureVariation | None
    share: float
    season: str | None
    note: str
    scale: ScaleAdjustment | None = None


@dataclass
class WindowJudge:
    """Judges windows of a monitor against a windowed (and maybe seasonal) reference.

    ``window_micros``: the monitor's window (the summary is regrouped to it when it is a multiple
    of the reference's); ``season``: one of :data:`SEASONS` or None.
    """

    profile: ReferenceProfile
    window_micros: int | None = None
    season: str | None = None
    _cache: dict[Any, dict[str, Judged]] = field(default_factory=dict)
    _within_seasons: dict[str, FeatureVariation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        summary = self.profile.windows
        if summary is None:
            raise ValueError(
                f"reference {self.profile.reference_id} has no windowed summary: build it with "
                "a window (event time) or a chunk size"
            )
        if self.season is not None:
            if self.season not in SEASONS:
                raise ValueError(f"unknown season {self.season!r} (one of {', '.join(SEASONS)})")
            if summary.size_micros is None:
                raise ValueError("a seasonal reference needs event-time windows, not chunks")
        if self.window_micros and summary.size_micros and self.window_micros != summary.size_micros:
            if self.window_micros % summary.size_micros == 0:
                summary = summary.regrouped(self.window_micros, self.profile)
            else:
                _log.warning(
                    "reference windows of %g s are not a divisor of the monitor's %g s: the "
                    "between-window variation is that of the reference's windows",
                    summary.size_micros / 1e6,
                    self.window_micros / 1e6,
                )
        if self.window_micros is None and summary.size_micros is not None:
            _log.warning(
                "reference %s: windows of %g s judge a check without windows: the whole data "
                "is one window, and their between-window variation is applied to it as is",
                self.profile.reference_id,
                summary.size_micros / 1e6,
            )
        self._summary = summary
        self._seasons = season_of(self.season, summary.starts) if self.season is not None else None

    def judged(self, start_micros: int | None) -> dict[str, Judged]:
        """Per feature: what judges the window starting at ``start_micros``."""
        if self.season is None or start_micros is None:
            key: Any = None
        else:
            key = int(season_of(self.season, start_micros))
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = self._judged(key)
        return out

    def _judged(self, key: int | None) -> dict[str, Judged]:
        s = self._summary
        out: dict[str, Judged] = {}
        seasons = self._seasons
        for name, fp in self.profile.features.items():
            fw = s.features.get(name)
            if fw is None:
                continue
            if key is None or seasons is None:
                out[name] = self._whole(fp, fw, None)
                continue
            label = season_label(self.season or "", key)
            mine = np.flatnonzero((seasons == key) & (fw.counts.sum(axis=1) > 0))
            if mine.size < MIN_SEASON_WINDOWS:
                whole = self._whole(fp, fw, None)
                whole.season = f"{label} pooled"
                whole.note = (
                    f"{label}: {mine.size} reference window(s) < {MIN_SEASON_WINDOWS}, judged "
                    f"against the whole reference; {whole.note}"
                )
                out[name] = whole
                continue
            variation = self._within_seasons.get(name)
            if variation is None:
                variation = self._within_seasons[name] = estimate(fp, fw, seasons)
            hist = s.window_histogram(fp, name, int(mine[0]))
            mle = fw.accumulator(fp, int(mine[0]))
            for i in mine[1:].tolist():
                hist = hist.merge(s.window_histogram(fp, name, i))
                m = fw.accumulator(fp, i)
                mle = m if mle is None else mle if m is None else mle.merge(m)
            seasonal = replace(fp, histogram=hist, mle=mle)
            n_i = fw.counts[mine].sum(axis=1).astype(np.float64)
            share = float(np.sum(n_i * n_i) / n_i.sum() ** 2)
            out[name] = Judged(
                seasonal, variation, share, label, _note(variation, s, mine.size),
                scale_adjustment(variation, fw, mine),
            )  # fmt: skip
        return out

    def _whole(self, fp: FeatureProfile, fw: FeatureWindows, groups: Any) -> Judged:
        variation = estimate(fp, fw, groups)
        n_i = fw.counts.sum(axis=1).astype(np.float64)
        share = float(np.sum(n_i * n_i) / n_i.sum() ** 2) if n_i.sum() > 0 else 0.0
        return Judged(
            fp, variation, share, None, _note(variation, self._summary, fw.k),
            scale_adjustment(variation, fw, np.arange(fw.k)),
        )  # fmt: skip


def _note(v: FeatureVariation, s: WindowedSummary, k: int) -> str:
    unit = f"{s.size_micros / 1e6:g} s" if s.size_micros is not None else f"{s.chunk} rows"
    if not v.estimated:
        return (
            f"reference too short to estimate the between-window variation ({v.dof} residual "
            f"windows < {MIN_WINDOWS}): tests as for independent samples"
        )
    return f"between-window variation from {v.windows} reference windows of {unit} ({k} judging)"


def window_judge(
    profile: ReferenceProfile, window_micros: int | None = None, season: str | None = None
) -> WindowJudge | None:
    """The judge every driver uses: a windowed reference's :class:`WindowJudge`, None for a
    reference without windows (today's tests); a ``season`` needs a windowed reference."""
    if profile.windows is None:
        if season is not None:
            raise ValueError(
                f"season {season!r} needs a windowed reference: build {profile.reference_id} "
                "with a window (event time)"
            )
        return None
    return WindowJudge(profile, window_micros, season)
