"""Judge a windowed reference's own windows, each left out of what judges it.

A windowed reference (``docs/policy.md``, "Feeds that vary from window to window") judges a
window against the reference's own between-window variation. Whether that null fits the feed is
a question the reference can answer about itself: :func:`leave_one_window_out` judges every
reference window as the monitor would judge a new one, against the reference *without* that
window (its counts and moments, and the between-window variation re-estimated from the other
windows), with the default policy. On a feed whose variation the model captures, about 1% of
the windows alert (the policy's level); many more say, before the monitor is deployed, that it
will alert on this feed when nothing changed: between-window deviations with heavier tails than
the model's, odd windows (an outage, a backfill) that a new window may repeat. A change that
lasts a good part of the reference period is absorbed into the variation instead (its windows
are many, and judge each other): the diagnostic does not replace looking at the reference.

Cost: the other windows' statistics come from prefix and suffix merges (no window is merged
more than three times), and the variation is re-estimated by
:func:`divtransforms.variation.estimate_without` (the variances, not the calibrations that
describe the feed as a whole): a few seconds per feature for 28 days of hourly windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from divtransforms.drift import Assessor, RecordStamp, drift_record, new_run_id
from divtransforms.histogram import Histogram
from divtransforms.mle import MLEAccumulator
from divtransforms.profile import FeatureProfile, ReferenceProfile
from divtransforms.records import records_to_table, sort_records
from divtransforms.settings import CheckSettings
from divtransforms.variation import (
    MIN_SEASON_WINDOWS,
    SEASONS,
    FeatureWindows,
    Judged,
    WindowedSummary,
    between_basis,
    estimate,
    estimate_without,
    scale_adjustment,
    season_label,
    season_of,
)

__all__ = ["leave_one_window_out", "own_alert_rate"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _merged(parts: list[tuple[Histogram, MLEAccumulator | None]]) -> tuple[Histogram, Any]:
    h, m = parts[0]
    for ph, pm in parts[1:]:
        h = h.merge(ph)
        m = pm if m is None else m if pm is None else m.merge(pm)  # type: ignore[arg-type]
    return h, m


def _leave_one_out(
    parts: list[tuple[Histogram, MLEAccumulator | None]],
) -> list[tuple[Histogram, MLEAccumulator | None] | None]:
    """For each position, the merge of all the others (prefix and suffix merges); None when
    there is no other."""
    k = len(parts)
    prefix: list[Any] = [None] * (k + 1)
    suffix: list[Any] = [None] * (k + 1)
    for j in range(k):
        prefix[j + 1] = parts[j] if prefix[j] is None else _merged([prefix[j], parts[j]])
    for j in range(k - 1, -1, -1):
        suffix[j] = parts[j] if suffix[j + 1] is None else _merged([parts[j], suffix[j + 1]])
    out: list[Any] = []
    for j in range(k):
        sides = [s for s in (prefix[j], suffix[j + 1]) if s is not None]
        out.append(_merged(sides) if sides else None)
    return out


def _share(n: np.ndarray) -> float:
    total = float(n.sum())
    return float(np.sum(n * n) / total**2) if total > 0 else 0.0


def _note(summary: WindowedSummary, windows: int) -> str:
    unit = (
        f"{summary.size_micros / 1e6:g} s"
        if summary.size_micros is not None
        else f"{summary.chunk} rows"
    )
    return f"leave-one-window-out: judged against the other {windows} reference windows of {unit}"


def _feature_records(
    profile: ReferenceProfile,
    name: str,
    fp: FeatureProfile,
    fw: FeatureWindows,
    season: str | None,
    seasons: np.ndarray | None,
    policy: Assessor | str | None,
    run_id: str,
    created: datetime,
) -> Iterable[dict[str, Any]]:
    summary = profile.windows
    assert summary is not None
    settings = CheckSettings(policy=policy)
    parts = [(summary.window_histogram(fp, name, i), fw.accumulator(fp, i)) for i in range(fw.k)]
    n_i = fw.counts.sum(axis=1).astype(np.float64)
    whole = _leave_one_out(parts)
    full = estimate(fp, fw, None)
    full_seasonal = estimate(fp, fw, seasons) if seasons is not None else None
    bases: dict[str | None, np.ndarray | None] = {
        None: between_basis(fw.counts, np.zeros(fw.k, np.int64))
    }
    if seasons is not None:
        bases["season"] = between_basis(fw.counts, seasons)
    rest_of: dict[int, Any] = {}
    idx_of: dict[int, np.ndarray] = {}
    if seasons is not None:
        for key in np.unique(seasons).tolist():
            idx = np.flatnonzero(seasons == key)
            idx_of[key] = idx
            for j, rest in zip(idx.tolist(), _leave_one_out([parts[i] for i in idx]), strict=True):
                rest_of[j] = rest
    size = summary.size_micros
    for i in range(fw.k):
        leave = np.zeros(fw.k, dtype=bool)
        leave[i] = True
        label = None
        rest = whole[i]
        others = np.flatnonzero(~leave)
        groups: np.ndarray | None = None
        base = full
        if seasons is not None and full_seasonal is not None:
            key = int(seasons[i])
            label = season_label(season or "", key)
            mine = idx_of[key][idx_of[key] != i]
            mine = mine[n_i[mine] > 0]
            if mine.size >= MIN_SEASON_WINDOWS and rest_of.get(i) is not None:
                rest, others, groups, base = rest_of[i], mine, seasons, full_seasonal
            else:
                label = f"{label} pooled"
        if rest is None:
            continue
        basis = bases["season" if groups is not None else None]
        variation = estimate_without(fp, fw, groups, base, leave, basis)
        judged = Judged(
            replace(fp, histogram=rest[0], mle=rest[1]),
            variation,
            _share(n_i[others]),
            label,
            _note(summary, fw.k - 1),
            scale_adjustment(variation, fw, others),
        )
        start = int(summary.starts[i])
        window_start = window_end = None
        if size is not None:
            window_start = _EPOCH + timedelta(microseconds=start)
            window_end = _EPOCH + timedelta(microseconds=start + size)
        yield drift_record(
            judged.fp,
            parts[i][0],
            parts[i][1],
            None,
            settings=settings,
            stamp=RecordStamp(
                run_id=run_id,
                reference_id=profile.reference_id,
                window_start=window_start,
                window_end=window_end,
                pane=0 if size is not None else start,
                created_at=created,
            ),
            judged=judged,
        )


def leave_one_window_out(
    profile: ReferenceProfile,
    *,
    season: str | None = None,
    features: Iterable[str] | None = None,
    policy: Assessor | str | None = "default",
) -> pa.Table:
    """The drift records of a windowed reference's own windows, each judged against the
    reference without it (see the module docstring); ``season`` as in ``compare()``. Records of
    chunk references carry the chunk number in ``pane`` and no window times. Use
    :func:`own_alert_rate` for the share that alerts."""
    summary = profile.windows
    if summary is None:
        raise ValueError(
            f"reference {profile.reference_id} has no windowed summary: build it with a window "
            "(event time) or a chunk size"
        )
    seasons = None
    if season is not None:
        if season not in SEASONS:
            raise ValueError(f"unknown season {season!r} (one of {', '.join(SEASONS)})")
        if summary.size_micros is None:
            raise ValueError("a seasonal reference needs event-time windows, not chunks")
        seasons = np.asarray(season_of(season, summary.starts))
    names = list(features) if features is not None else list(profile.features)
    unknown = [n for n in names if n not in profile.features or n not in summary.features]
    if unknown:
        raise ValueError(f"features {unknown} have no windows in reference {profile.reference_id}")
    run_id, created = new_run_id(), datetime.now(UTC)
    records: list[dict[str, Any]] = []
    for name in names:
        records.extend(
            _feature_records(
                profile,
                name,
                profile.features[name],
                summary.features[name],
                season,
                seasons,
                policy,
                run_id,
                created,
            )
        )
    return sort_records(records_to_table(records))


def own_alert_rate(records: pa.Table) -> float:
    """The share of records whose severity is ``warning`` or ``critical`` (NaN when none)."""
    severity = records.column("severity").to_pylist()
    if not severity:
        return math.nan
    return sum(s in ("warning", "critical") for s in severity) / len(severity)
