"""Alerts from a stream of per-window severities: the tracker's state machine.

``AlertTracker`` turns the severities of a feature's windows into alerts: ``consecutive``
breaching windows before an alert, no repeated alert while a breach lasts (an escalation from
warning to critical is sent), ``cooldown`` windows after an alert before a new one, and one
``recovered`` alert after ``recovery`` windows back under the threshold. Its state is a JSON
document with a schema version (``TRACKER_STATE_VERSION``).

A feature's sequential detector (the records' ``cusum*`` fields, ``divtransforms.sequential``)
raises one alert of kind ``persistent`` when it crosses its threshold ("amount: mean has drifted
by about +0.1 sd since 2026-03-02 14:00") and one ``recovered`` alert of that kind when its alarm
ends; windows the detector did not count (null fields) change nothing. A drift the window alerts
already report (one is open as the detector crosses, and the estimated shift is one a window's
test finds at least half the time) gets no second alert.

Decisions follow event time, not processing order. The tracker remembers, per feature, the end of
the newest window it has seen. A window ending before it (late data, a backfill) is judged on its
own: it goes through a scratch state that starts clean, so late breaching windows still alert
(with ``consecutive`` counted among the late windows themselves), but a late window never
escalates, resolves or re-arms the current incident, and never sends a recovery.

Only *plausible* windows set that clock: one ending more than ``max_future`` (one day by default)
after the wall clock is judged like a late window and never becomes the newest, and a remembered
newest window that far ahead (a state written before the event-time horizon existed, from a file
whose epoch was read in the wrong unit) is forgotten, so one mis-dated window cannot turn every
later real window into late data. Windows carrying numbers rather than times are not judged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from divtransforms.policy import Policy, PolicyError, _num, _require
from divtransforms.records import SEVERITIES, SEVERITY_RANK

__all__ = ["TRACKER_STATE_VERSION", "AlertDecision", "AlertTracker"]

log = logging.getLogger(__name__)

TRACKER_STATE_VERSION = 2
DEFAULT_MAX_FUTURE_SECONDS = 86_400.0  # divtransforms.eventtime.DEFAULT_MAX_FUTURE
_READABLE_VERSIONS = (1, 2)  # version 1 had no ``newest``: every window counts as new


@dataclass(frozen=True)
class AlertDecision:
    """An alert the tracker decided to send for one window of one feature."""

    feature: str
    severity: str  # warning | critical | recovered
    window_start: Any
    window_end: Any
    record: Mapping[str, Any]
    kind: str = "window"  # window (the per-window severity) | persistent (the CUSUM)
    reason: str = ""  # persistent: what drifted, by how much, since when


@dataclass
class _FeatureState:
    streak: int = 0  # breaching windows in a row
    ok_streak: int = 0  # ok windows in a row while alerted
    active: str | None = None  # severity of the open alert
    since_alert: int | None = None  # windows since the last warning/critical alert
    newest: str | float | None = None  # end of the newest window seen (ISO 8601 or a number)
    persistent: str | None = None  # the sequential detector's alarm: mean | histogram | covered
    opened: str | float | None = None  # start of the window that opened the active alert


class AlertTracker:
    """Consecutive-window, cooldown and recovery rules over a stream of per-window severities.

    Feed records in window order per feature with :meth:`update`; it returns the alert to send (or
    ``None``). A record's own ``severity`` is used (records are assessed once, with the monitor's
    policy, where they are made); the tracker's policy gives the rules (consecutive, cooldown,
    recovery, enabled) and assesses records that carry no severity. ``"insufficient"`` windows
    are neutral: they neither extend nor break a streak. ``to_dict()`` / ``from_dict()`` persist
    the state (JSON, ``TRACKER_STATE_VERSION``).

    ``max_future`` (seconds; None: no bound): a window ending later than that after ``now``
    (epoch seconds; default: the wall clock when a record is fed) is not plausible and never
    becomes the feature's newest window (module docstring).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        state: Mapping[str, Any] | None = None,
        *,
        max_future: float | None = DEFAULT_MAX_FUTURE_SECONDS,
        now: float | None = None,
    ):
        self.max_future = max_future
        self.now = now
        self.policy = policy or Policy()
        self._features: dict[str, _FeatureState] = {}
        self._late: dict[str, _FeatureState] = {}  # scratch states of late windows (not saved)
        if state is not None:
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        version = state.get("schema_version")
        if version not in _READABLE_VERSIONS:
            raise PolicyError(
                f"alert tracker state has schema_version {version!r}; "
                f"this version reads {TRACKER_STATE_VERSION}"
            )
        for name, fs in (state.get("features") or {}).items():
            self._features[name] = _FeatureState(
                streak=int(fs.get("streak", 0)),
                ok_streak=int(fs.get("ok_streak", 0)),
                active=fs.get("active"),
                since_alert=fs.get("since_alert"),
                newest=fs.get("newest"),
                persistent=fs.get("persistent"),
                opened=fs.get("opened"),
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": TRACKER_STATE_VERSION,
            "features": {k: asdict(v) for k, v in sorted(self._features.items())},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], policy: Policy | None = None) -> AlertTracker:
        return cls(policy, state)

    def active(self, feature: str) -> str | None:
        fs = self._features.get(feature)
        return fs.active if fs else None

    def update(
        self, record: Mapping[str, Any], severity: str | None = None
    ) -> AlertDecision | None:
        """Advance the feature's state by one window; return the alert to send, if any."""
        feature = _require(record, "feature")
        fp = self.policy.for_feature(feature)
        if severity is None:
            # Records are assessed once, where they are made, with the monitor's policy; one
            # written without a policy (severity None) is assessed here.
            severity = record.get("severity") or self.policy.assess(record)
        if severity not in SEVERITIES:
            raise PolicyError(f"feature {feature!r}: unknown severity {severity!r}")
        live = self._features.setdefault(feature, _FeatureState())
        end, newest = _instant(record.get("window_end")), _instant(live.newest)
        limit = self._limit()
        if limit is not None and isinstance(newest, datetime) and newest > limit:
            log.warning(
                "alert tracker: feature %r's newest window ended %s, beyond the plausibility "
                "horizon (%s); forgotten, so later windows are not taken for late data",
                feature,
                newest.isoformat(),
                limit.isoformat(),
            )
            live.newest, newest = None, None
        implausible = limit is not None and isinstance(end, datetime) and end > limit
        comparable = end is not None and type(end) is type(newest)
        if implausible or (comparable and _earlier(end, newest)):
            late = self._late.setdefault(feature, _FeatureState())
            decision = self._step(late, record, severity, fp)
            return decision if decision is not None and decision.severity != "recovered" else None
        if end is not None and (newest is None or comparable):
            live.newest = _persisted(end)
        return self._step(live, record, severity, fp)

    def update_persistent(self, record: Mapping[str, Any]) -> AlertDecision | None:
        """The feature's sequential detector at this window: a ``persistent`` alert when it
        crosses its threshold, a ``recovered`` one (kind ``persistent``) when it is back below.
        Call after :meth:`update` with the same record; a late window changes nothing."""
        feature = _require(record, "feature")
        fp = self.policy.for_feature(feature)
        live = self._features.setdefault(feature, _FeatureState())
        end, newest = _instant(record.get("window_end")), _instant(live.newest)
        if end is None or newest is None or type(end) is not type(newest) or _earlier(end, newest):
            return None
        if record.get("cusum") is None and record.get("cusum_histogram") is None:
            return None  # the detector did not count this window
        alarm = record.get("cusum_alarm")

        def alert(kind: str, reason: str) -> AlertDecision | None:
            if not fp.enabled:
                return None
            return AlertDecision(
                feature,
                kind,
                record.get("window_start"),
                record.get("window_end"),
                record,
                "persistent",
                reason,
            )

        if alarm and live.persistent is None:
            if _covered(live, record, fp.significance):
                live.persistent = "covered"  # the window alerts have reported it all along
                return None
            live.persistent = str(alarm)
            return alert("persistent", persistent_reason(record))
        if not alarm and live.persistent is not None:
            was, live.persistent = live.persistent, None
            if was == "covered":
                return None
            what = "mean" if was == "mean" else "distribution"
            return alert("recovered", f"{feature}: {what} back within the persistent-drift bound")
        return None

    def _limit(self) -> datetime | None:
        """The latest plausible window end (None: no bound)."""
        if self.max_future is None:
            return None
        now = time.time() if self.now is None else self.now
        return datetime.fromtimestamp(now, UTC) + timedelta(seconds=self.max_future)

    @staticmethod
    def _step(
        fs: _FeatureState, record: Mapping[str, Any], severity: str, fp: Any
    ) -> AlertDecision | None:
        feature = record["feature"]
        if severity == "insufficient":
            return None
        if fs.since_alert is not None:
            fs.since_alert += 1

        def alert(kind: str) -> AlertDecision:
            return AlertDecision(
                feature, kind, record.get("window_start"), record.get("window_end"), record
            )

        if severity == "ok":
            fs.streak = 0
            if fs.active is None:
                return None
            fs.ok_streak += 1
            if fs.ok_streak >= fp.recovery:
                fs.active, fs.ok_streak = None, 0
                return alert("recovered") if fp.enabled else None
            return None
        fs.ok_streak = 0
        fs.streak += 1
        if fs.streak < fp.consecutive or not fp.enabled:
            return None
        if fs.active is None:
            if fs.since_alert is not None and fs.since_alert <= fp.cooldown:
                return None
            fs.active, fs.since_alert = severity, 0
            start = _instant(record.get("window_start"))
            fs.opened = _persisted(start) if start is not None else None
            return alert(severity)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[fs.active]:
            fs.active, fs.since_alert = severity, 0
            return alert(severity)
        return None

    def run(self, records: Iterable[Mapping[str, Any]]) -> list[AlertDecision]:
        """Update with every record (sorted by feature, window end) and collect the alerts.
        Each call starts new scratch states for late windows: the late windows of one call are
        judged together."""
        self._late = {}
        ordered = sorted(
            records,
            key=lambda r: (
                str(r.get("feature")),
                _sort_key(r.get("window_end")),
                _num(r.get("pane"), 0.0),
            ),
        )
        out = []
        for rec in ordered:
            decision = self.update(rec)
            if decision is not None:
                out.append(decision)
            persistent = self.update_persistent(rec)
            if persistent is not None:
                out.append(persistent)
        return out


def _earlier(a: datetime | float | None, b: datetime | float | None) -> bool:
    """``a < b`` for two instants of the same kind (two datetimes or two numbers)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a < b
    return isinstance(a, float) and isinstance(b, float) and a < b


def _covered(fs: _FeatureState, record: Mapping[str, Any], significance: float) -> bool:
    """Whether the window alerts already report this drift: a window alert is open as the
    detector crosses, and the estimated shift is one the window's own test finds at least half
    the time (``|shift| / se`` beyond the test's two-sided critical value at ``significance``).
    A histogram alarm with a window alert open counts as reported."""
    if fs.active is None:
        return False
    if record.get("cusum_alarm") != "mean":
        return True
    shift, n, n_ref = record.get("cusum_shift"), record.get("n"), record.get("n_reference")
    if shift is None or n is None or n_ref is None:
        return False
    try:
        z = abs(float(shift)) / math.sqrt(1.0 / float(n) + 1.0 / float(n_ref))
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return z >= NormalDist().inv_cdf(1.0 - significance / 2.0)


def persistent_reason(record: Mapping[str, Any]) -> str:
    """The persistent alert's text from a record's detector fields: "amount: mean has drifted
    by about +0.1 sd since 2026-03-02 14:00" (or "the distribution has drifted persistently
    since ...")."""
    feature = record.get("feature")
    since = _instant(record.get("cusum_change_point"))
    when = (
        since.strftime("%Y-%m-%d %H:%M")
        if isinstance(since, datetime)
        else "the start of the stream"
    )
    shift = record.get("cusum_shift")
    if record.get("cusum_alarm") == "mean" and shift is not None and shift == shift:
        return f"{feature}: mean has drifted by about {float(shift):+.2g} sd since {when}"
    return f"{feature}: the distribution has drifted persistently since {when}"


def _instant(value: Any) -> datetime | float | None:
    """A window bound as something ordered: an aware datetime (from a datetime or ISO text;
    naive means UTC), or a number; None when it is absent or not understood."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _persisted(value: datetime | float) -> str | float:
    return value.isoformat() if isinstance(value, datetime) else value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    return (1, value.isoformat() if hasattr(value, "isoformat") else str(value))
