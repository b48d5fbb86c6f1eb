"""Freshness: a feed that stops is an alert, and so is its return.

A scheduled run that finds no new files counts one idle interval. When ``[freshness]`` says the
feed is stale (``stale_after_runs`` idle runs in a row, or no new data for ``stale_after``), one
``stale`` alert goes to the alert log; the first run that finds data again logs one
``recovered`` alert for it. Both ride the same outbox, dedup keys, Prefect events and exactly-once
delivery as drift alerts: the dedup key holds when the data stopped (and, for the recovery, when
it came back), so a run that crashes and is retried logs nothing twice.

The feed's pseudo-feature in alerts is ``FEED`` (``__feed__``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from divtransforms.alerting import AlertDecision
from divtransforms.columns import parse_duration
from flows.alerts.outbox import FEED, AlertLog
from flows.config import MonitorConfig
from flows.monitor.state import MonitorState, StateStore

__all__ = ["FEED", "freshness_stage"]


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def freshness_stage(
    config: MonitorConfig,
    state: MonitorState,
    store: StateStore,
    *,
    found_data: bool,
    reference_id: str,
    run_id: str,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Update the feed's freshness after discovery; log ``stale``/``recovered`` alerts (new
    entries returned) and commit the state."""
    now = now or _now()
    fresh = dict(state.freshness or {})
    fresh.setdefault("last_data_at", None)
    fresh.setdefault("idle_runs", 0)
    fresh.setdefault("stale_since", None)
    cfg = config.freshness
    decisions: list[AlertDecision] = []
    if found_data:
        if fresh["stale_since"] is not None:
            decisions.append(_decision("recovered", fresh, now, idle=fresh["idle_runs"]))
            logger.warning(
                "feed recovered: new data after %d idle run(s) since %s",
                fresh["idle_runs"],
                fresh["stale_since"],
            )
        fresh.update(last_data_at=now.isoformat(), idle_runs=0, stale_since=None)
    else:
        fresh["idle_runs"] += 1
        if fresh["last_data_at"] is None:  # never saw data: idle since the first run
            fresh["first_idle_at"] = fresh.get("first_idle_at") or now.isoformat()
        since = _parse(fresh["last_data_at"]) or _parse(fresh["first_idle_at"]) or now
        too_long = cfg.stale_after is not None and now - since >= timedelta(
            seconds=parse_duration(cfg.stale_after)
        )
        if fresh["stale_since"] is None and (
            fresh["idle_runs"] >= cfg.stale_after_runs or too_long
        ):
            fresh["stale_since"] = since.isoformat()
            decisions.append(_decision("stale", fresh, None, idle=fresh["idle_runs"]))
            logger.warning(
                "feed stale: no new data under %s for %d run(s) (since %s)",
                ", ".join(config.source.paths),
                fresh["idle_runs"],
                fresh["stale_since"],
            )
    new: list[dict[str, Any]] = []
    if decisions:
        alert_log = AlertLog.open(config.history_dir)
        new = alert_log.add(
            decisions,
            reference_id=reference_id,
            metric_for=lambda _: "idle_runs",
            targets=[t.name for t in config.notify],
            run_id=run_id,
            reasons={
                i: (
                    f"no new data for {d.record['idle_runs']} run(s) since {d.window_start}"
                    if d.severity != "recovered"
                    else f"data arrived again after {d.record['idle_runs']} idle run(s)"
                )
                for i, d in enumerate(decisions)
            },
        )
        alert_log.save()  # before the state: a crash in between re-adds the same dedup key
    state.freshness = fresh
    store.save(state)
    return new


def _decision(
    severity: str, fresh: dict[str, Any], returned: datetime | None, *, idle: int
) -> AlertDecision:
    return AlertDecision(
        FEED,
        severity,
        _parse(fresh["stale_since"]),
        returned,
        {"idle_runs": idle, "n": 0, "last_data_at": fresh.get("last_data_at")},
    )
