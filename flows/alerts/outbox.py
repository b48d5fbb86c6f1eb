"""The alert log and outbox: each alert is logged once (by dedup key), delivered until it succeeds.

``<history>/_alerts.json`` (format in docs/architecture.md) is both the log the dashboard reads and
the outbox: an entry stays ``pending``/``failed`` until every target it was addressed to has
accepted it, and every later run tries again. Each target's success is written to the log (an
atomic commit, conditional on the version read: ``divtransforms.storage``) right after it happens,
so a retried or re-run flow never sends it again. Only a crash in the instant between a receiver
accepting a message and that write can repeat one delivery, which is why every message carries
its dedup key (header ``X-Divtransforms-Dedup-Key`` for webhooks, and in the body) for receivers
that want to be strictly idempotent.

Entries carry the contract's fields plus ``deliveries`` (per-target status, attempts, last error
without secrets), ``event_id``/``event_emitted`` and ``reason``.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from divtransforms import storage
from divtransforms.alerting import AlertDecision
from divtransforms.records import json_bytes
from divtransforms.storage import ANY, PreconditionFailed, StorageError, StorageNotFound
from flows.alerts.transport import event_id

ALERT_LOG_VERSION = 1
ALERTS_FILE = "_alerts.json"
INPUT_ERROR = "input-error"  # severity of the alert about quarantined input files
INPUT_ERROR_FEATURE = "(input files)"
FEED = "__feed__"  # the pseudo-feature of a feed's freshness alerts (flows.monitor.freshness)

log = logging.getLogger(__name__)

# A notifier sends one alert to one target and raises on failure. One that takes a keyword
# ``timeout`` (seconds) must finish the attempt within it; others are abandoned after it.
Notifier = Callable[..., None]


class AlertLogError(ValueError):
    """The alert log is unreadable or from an incompatible version."""


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return str(value)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def dedup_key(
    feature: str, window_start: Any, window_end: Any, severity: str, reference_id: str
) -> str:
    """``feature|window_start|window_end|severity|reference_id`` (ISO-8601 UTC, ``-`` for none)."""
    return "|".join(
        [feature, _iso(window_start) or "-", _iso(window_end) or "-", severity, reference_id or "-"]
    )


def decision_key(decision: Any, reference_id: str) -> str:
    """The dedup key of an :class:`~divtransforms.alerting.AlertDecision` in the alert log: a
    window alert's severity, or ``kind:severity`` for another kind (``persistent:persistent``,
    ``persistent:recovered``), so that the kinds of one feature and window never share a key."""
    kind = getattr(decision, "kind", "window")
    severity = decision.severity if kind == "window" else f"{kind}:{decision.severity}"
    return dedup_key(
        decision.feature, decision.window_start, decision.window_end, severity, reference_id
    )


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) != float("inf") else None


def record_summary(record: Mapping[str, Any], persistent: bool = False) -> dict[str, Any]:
    """The record fields an alert message carries (JSON-safe); with ``persistent`` also the
    sequential detector's (``cusum*``)."""
    keys: tuple[str, ...] = (
        "n",
        "n_missing",
        "n_invalid",
        "n_absent",
        "missing_rate",
        "invalid_rate",
        "unseen_rate",
        "quality_severity",
        "quality_reason",
        "js_divergence",
        "js_corrected",
        "js_distance",
        "kl_divergence",
        "psi",
        "g_statistic",
        "p_value",
        "mle_family",
        "mle_kl",
        "mle_p_value",
        "run_id",
    )
    if persistent:
        keys += ("cusum", "cusum_threshold", "cusum_alarm", "cusum_shift", "cusum_windows")
    out: dict[str, Any] = {}
    for k in keys:
        v = record.get(k)
        out[k] = v if isinstance(v, str) or v is None else _num(v)
    if persistent:
        out["cusum_change_point"] = _iso(record.get("cusum_change_point"))
    params = []
    for p in record.get("mle_params") or []:
        params.append(
            {
                "name": p.get("name"),
                "reference": _num(p.get("reference")),
                "window": _num(p.get("window")),
                "z": _num(p.get("z")),
                "p_value": _num(p.get("p_value")),
            }
        )
    out["mle_params"] = params
    out["schema_issues"] = [
        {"code": i.get("code"), "detail": i.get("detail")}
        for i in record.get("schema_issues") or []
    ]
    return out


@dataclass
class AlertLog:
    """``<history>/_alerts.json``: read, add with dedup, record deliveries. Saved atomically,
    and only over the version opened (or last saved): a concurrent change is an error, never a
    lost update."""

    path: storage.Location
    entries: list[dict[str, Any]] = field(default_factory=list)
    version: str | None = field(default=ANY, repr=False)

    @classmethod
    def open(cls, history_dir: str | Path) -> AlertLog:
        path = storage.join(history_dir, ALERTS_FILE)
        try:
            raw, info = storage.read_versioned(path)
        except StorageNotFound:
            return cls(path, [], None)
        except StorageError as exc:
            raise AlertLogError(f"cannot read alert log: {exc}") from exc
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AlertLogError(f"cannot read alert log {path}: {exc}") from exc
        if doc.get("schema_version") != ALERT_LOG_VERSION:
            raise AlertLogError(
                f"{path}: schema_version {doc.get('schema_version')!r}, expected "
                f"{ALERT_LOG_VERSION}"
            )
        return cls(path, list(doc.get("alerts") or []), info.version)

    def save(self) -> None:
        doc = {"schema_version": ALERT_LOG_VERSION, "alerts": self.entries}
        try:
            self.version = storage.write_atomic(self.path, json_bytes(doc), if_version=self.version)
        except PreconditionFailed as exc:
            raise AlertLogError(
                f"alert log not saved: {exc}; nothing was lost (run again to continue)"
            ) from None

    def keys(self) -> set[str]:
        return {e["dedup_key"] for e in self.entries}

    def get(self, key: str) -> dict[str, Any] | None:
        for e in self.entries:
            if e["dedup_key"] == key:
                return e
        return None

    def add(
        self,
        decisions: Iterable[AlertDecision],
        *,
        reference_id: str,
        metric_for: Callable[[str], str],
        targets: Sequence[str],
        run_id: str,
        reasons: Mapping[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Log new alerts (skipping known dedup keys); returns the new entries. Does not save."""
        known = self.keys()
        new = []
        for i, d in enumerate(decisions):
            kind = getattr(d, "kind", "window")
            key = decision_key(d, reference_id)
            if key in known:
                continue
            metric = metric_for(d.feature)
            entry = {
                "dedup_key": key,
                "feature": d.feature,
                "window_start": _iso(d.window_start),
                "window_end": _iso(d.window_end),
                "severity": d.severity,
                "metric": metric,
                "value": _num(d.record.get(metric)),
                "reference_id": reference_id,
                **_outbox_fields(key, targets, run_id),
                "reason": (reasons or {}).get(i, ""),
                "record": record_summary(d.record, persistent=kind == "persistent"),
                **({"kind": kind} if kind != "window" else {}),
            }
            self.entries.append(entry)
            known.add(key)
            new.append(entry)
        return new

    def add_input_error(
        self, files: Sequence[Mapping[str, Any]], *, targets: Sequence[str], run_id: str
    ) -> dict[str, Any] | None:
        """Log the one ``input-error`` alert of run ``run_id`` (files quarantined by it); its
        dedup key is the run id, which a resumed run keeps, so it is logged exactly once."""
        key = dedup_key(INPUT_ERROR_FEATURE, None, None, INPUT_ERROR, run_id)
        if not files or self.get(key) is not None:
            return None
        names = ", ".join(str(f["file"]) for f in files)
        entry = {
            "dedup_key": key,
            "feature": INPUT_ERROR_FEATURE,
            "window_start": None,
            "window_end": None,
            "severity": INPUT_ERROR,
            "metric": "",
            "value": float(len(files)),
            "reference_id": "",
            **_outbox_fields(key, targets, run_id),
            "reason": f"{len(files)} input file(s) quarantined: {names}",
            "files": [dict(f) for f in files],
            "record": {},
        }
        self.entries.append(entry)
        return entry

    def outstanding(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("status") != "delivered"]


#: The fields of an alert-log entry that summarise it (webhook body: ``messages.Message.plain``;
#: event payload: ``flows.alerts.events``).
ALERT_SUMMARY_FIELDS = (
    "dedup_key",
    "feature",
    "severity",
    "window_start",
    "window_end",
    "metric",
    "value",
    "reference_id",
    "reason",
    "run_id",
    "record",
)


@dataclass
class DeliverySummary:
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # not tried: the run's delivery budget was spent
    errors: list[str] = field(default_factory=list)


#: Per-attempt deadline of a notifier that has no ``timeout`` of its own.
DEFAULT_ATTEMPT_SECONDS = 30.0


def _accepts_timeout(notifier: Notifier) -> bool:
    try:
        return "timeout" in inspect.signature(notifier).parameters
    except (TypeError, ValueError):
        return False


def _attempt(notifier: Notifier, entry: dict[str, Any], seconds: float) -> None:
    """One bounded attempt: ``notifier(entry, timeout=seconds)`` when it takes a deadline (and
    then keeps it itself), else the call is abandoned after ``seconds``."""
    from flows.alerts.transport import call_with_deadline

    if _accepts_timeout(notifier):
        notifier(entry, timeout=seconds)
    else:
        call_with_deadline(lambda: notifier(entry), seconds)


def deliver_outstanding(
    alert_log: AlertLog,
    notifiers: Mapping[str, Notifier],
    *,
    retries: Mapping[str, tuple[int, float]] | None = None,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    budget_seconds: float | None = None,
) -> DeliverySummary:
    """Deliver every outstanding (entry, target); save after each success or final failure.

    ``retries[target] = (extra attempts, delay seconds)`` within this run; a target that still
    fails stays in the outbox (``status: failed``) for the next run. The whole delivery takes at
    most ``budget_seconds``: each attempt's deadline is cut to what is left, and what is not
    tried when the budget is spent stays in the outbox (counted as ``deferred``).
    """
    logger = logger or log
    summary = DeliverySummary()
    t0 = time.monotonic()

    def left() -> float:
        if budget_seconds is None:
            return DEFAULT_ATTEMPT_SECONDS
        return budget_seconds - (time.monotonic() - t0)

    for entry in alert_log.outstanding():
        for target in entry.get("targets", []):
            state = entry.setdefault("deliveries", {}).setdefault(
                target,
                {"status": "pending", "attempts": 0, "delivered_at": None, "last_error": None},
            )
            if state["status"] == "delivered":
                continue
            notifier = notifiers.get(target)
            if notifier is None:
                summary.skipped += 1
                logger.warning(
                    "alert %s: target %r is not configured any more; kept in the outbox",
                    entry["dedup_key"],
                    target,
                )
                continue
            extra, delay = (retries or {}).get(target, (0, 0.0))
            ok = tried = False
            for attempt in range(extra + 1):
                seconds = left()
                if seconds <= 0:
                    break
                tried = True
                state["attempts"] = int(state.get("attempts", 0)) + 1
                entry["attempts"] = int(entry.get("attempts", 0)) + 1
                try:
                    _attempt(notifier, entry, seconds)
                except Exception as exc:  # delivery failures of any kind stay in the outbox
                    state["last_error"] = safe_error(exc)
                    logger.warning(
                        "alert %s -> %s: attempt %d failed: %s",
                        entry["dedup_key"],
                        target,
                        state["attempts"],
                        state["last_error"],
                    )
                    if attempt < extra and delay > 0:
                        time.sleep(max(0.0, min(delay * (2**attempt), left())))
                    continue
                ok = True
                break
            if ok:
                state.update(status="delivered", delivered_at=now_iso(), last_error=None)
                summary.delivered += 1
            elif not tried:
                summary.deferred += 1
                continue
            else:
                state["status"] = "failed"
                summary.failed += 1
                summary.errors.append(f"{entry['dedup_key']} -> {target}: {state['last_error']}")
            _refresh_status(entry)
            alert_log.save()
    if summary.deferred:
        logger.warning(
            "alert delivery budget of %.0f s spent: %d delivery(ies) left in the outbox for the "
            "next run",
            budget_seconds or 0.0,
            summary.deferred,
        )
    return summary


def _refresh_status(entry: dict[str, Any]) -> None:
    states = [
        entry["deliveries"][t]["status"]
        for t in entry.get("targets", [])
        if t in entry.get("deliveries", {})
    ]
    if states and all(s == "delivered" for s in states):
        entry["status"] = "delivered"
        entry["delivered_at"] = max(
            entry["deliveries"][t]["delivered_at"] for t in entry["targets"]
        )
    elif any(s == "failed" for s in states):
        entry["status"] = "failed"
    else:
        entry["status"] = "pending"


def safe_error(exc: BaseException) -> str:
    """A description of a delivery failure that cannot contain a URL, token or header."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return f"{type(exc).__name__}: HTTP {status}"
    return type(exc).__name__


def _outbox_fields(key: str, targets: Sequence[str], run_id: str) -> dict[str, Any]:
    """The delivery state of a new alert-log entry (any kind): pending for each target, or
    delivered at once when there is none; its Prefect event not yet emitted."""
    return {
        "created_at": now_iso(),
        "status": "pending" if targets else "delivered",
        "attempts": 0,
        "delivered_at": None if targets else now_iso(),
        "targets": list(targets),
        "deliveries": {
            t: {"status": "pending", "attempts": 0, "delivered_at": None, "last_error": None}
            for t in targets
        },
        "event_id": str(event_id(key)),
        "event_emitted": False,
        "run_id": run_id,
    }
