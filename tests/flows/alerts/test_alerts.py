"""Alert log, outbox and events without a flow: dedup, retry, never twice, no secrets in errors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from divtransforms.alerting import AlertDecision
from flows.alerts.outbox import (
    AlertLog,
    AlertLogError,
    dedup_key,
    deliver_outstanding,
    event_id,
    safe_error,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _decision(feature="x", hour=0, severity="warning"):
    record = {"feature": feature, "js_divergence": 0.1, "n": 100, "mle_params": []}
    return AlertDecision(
        feature, severity, T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1), record
    )


def _add(log, decisions, targets=("a", "b")):
    return log.add(
        decisions,
        reference_id="ref-1",
        metric_for=lambda f: "js_divergence",
        targets=list(targets),
        run_id="r1",
    )


def test_dedup_key_and_deterministic_event_id():
    key = dedup_key("x", T0, T0 + timedelta(hours=1), "warning", "ref-1")
    assert key == "x|2026-01-01T00:00:00+00:00|2026-01-01T01:00:00+00:00|warning|ref-1"
    assert event_id(key) == event_id(key) and isinstance(event_id(key), uuid.UUID)
    assert event_id(key) != event_id(key.replace("warning", "critical"))


def test_log_adds_each_key_once_and_round_trips(tmp_path):
    log = AlertLog.open(tmp_path)
    assert len(_add(log, [_decision(), _decision(severity="critical")])) == 2
    assert _add(log, [_decision()]) == []
    log.save()
    again = AlertLog.open(tmp_path)
    assert len(again.entries) == 2
    entry = again.entries[0]
    for field in (
        "dedup_key",
        "feature",
        "window_start",
        "window_end",
        "severity",
        "metric",
        "value",
        "reference_id",
        "created_at",
        "status",
        "attempts",
        "delivered_at",
        "targets",
    ):
        assert field in entry
    assert entry["status"] == "pending" and entry["value"] == 0.1
    (tmp_path / "_alerts.json").write_text('{"schema_version": 7, "alerts": []}')
    with pytest.raises(AlertLogError, match="schema_version"):
        AlertLog.open(tmp_path)


def test_outbox_retries_until_delivered_and_never_twice(tmp_path):
    log = AlertLog.open(tmp_path)
    _add(log, [_decision()])
    log.save()
    sent = {"a": [], "b": []}
    b_up = {"ok": False}

    def a(entry):
        sent["a"].append(entry["dedup_key"])

    def b(entry):
        if not b_up["ok"]:
            raise httpx.ConnectError("connection refused to http://secret-host/token123")
        sent["b"].append(entry["dedup_key"])

    s1 = deliver_outstanding(AlertLog.open(tmp_path), {"a": a, "b": b}, retries={"b": (2, 0.0)})
    assert (s1.delivered, s1.failed) == (1, 1)
    entry = AlertLog.open(tmp_path).entries[0]
    assert entry["status"] == "failed"
    assert entry["deliveries"]["a"]["status"] == "delivered"
    assert entry["deliveries"]["b"]["attempts"] == 3
    assert "secret-host" not in entry["deliveries"]["b"]["last_error"]

    b_up["ok"] = True
    s2 = deliver_outstanding(AlertLog.open(tmp_path), {"a": a, "b": b})
    assert (s2.delivered, s2.failed) == (1, 0)
    s3 = deliver_outstanding(AlertLog.open(tmp_path), {"a": a, "b": b})
    assert (s3.delivered, s3.failed) == (0, 0)
    assert len(sent["a"]) == 1 and len(sent["b"]) == 1
    assert AlertLog.open(tmp_path).entries[0]["status"] == "delivered"


def test_missing_target_keeps_the_alert_in_the_outbox(tmp_path):
    log = AlertLog.open(tmp_path)
    _add(log, [_decision()], targets=["gone"])
    log.save()
    summary = deliver_outstanding(AlertLog.open(tmp_path), {})
    assert summary.skipped == 1
    assert AlertLog.open(tmp_path).entries[0]["status"] == "pending"


def test_safe_error_hides_urls():
    request = httpx.Request("POST", "http://127.0.0.1:1/hook?token=abc")
    response = httpx.Response(500, request=request)
    exc = httpx.HTTPStatusError(
        "500 for url http://127.0.0.1:1/hook?token=abc", request=request, response=response
    )
    assert safe_error(exc) == "HTTPStatusError: HTTP 500"
    assert safe_error(ValueError("http://x/token")) == "ValueError"


def test_message_carries_the_dedup_key(tmp_path):
    """The webhook's and notification block's (subject, body), byte for byte."""
    from flows.alerts.messages import Message
    from flows.config import MonitorConfig

    config = MonitorConfig.model_validate({"source": {"paths": ["in"]}, "reference": {"path": "r"}})
    log = AlertLog.open(tmp_path)
    entry = _add(log, [_decision()])[0]
    entry["created_at"] = "2026-01-01T02:00:00+00:00"
    subject, body = Message.of(entry, config).plain()
    window = "2026-01-01T00:00:00+00:00 .. 2026-01-01T01:00:00+00:00"
    assert subject == f"[divtransforms] warning: x ({window})"
    fields = json.loads(body)
    assert body == json.dumps(fields, sort_keys=True)  # keys sorted, json.dumps' separators
    assert fields["dedup_key"] == entry["dedup_key"]
    nulls = dict.fromkeys(
        "g_statistic invalid_rate js_corrected js_distance kl_divergence missing_rate mle_family "
        "mle_kl mle_p_value n_absent n_invalid n_missing p_value psi quality_reason "
        "quality_severity run_id unseen_rate".split()
    )
    assert fields == {
        "created_at": "2026-01-01T02:00:00+00:00",
        "dedup_key": "x|2026-01-01T00:00:00+00:00|2026-01-01T01:00:00+00:00|warning|ref-1",
        "feature": "x",
        "metric": "js_divergence",
        "reason": "",
        "record": {
            **nulls,
            "js_divergence": 0.1,
            "mle_params": [],
            "n": 100.0,
            "schema_issues": [],
        },
        "reference_id": "ref-1",
        "run_id": "r1",
        "severity": "warning",
        "value": 0.1,
        "window_end": "2026-01-01T01:00:00+00:00",
        "window_start": "2026-01-01T00:00:00+00:00",
    }


def test_every_notify_type_has_one_target():
    from typing import get_args

    from flows.alerts.targets import TARGETS
    from flows.config import NotifyConfig

    assert set(get_args(NotifyConfig.model_fields["type"].annotation)) == set(TARGETS)


def test_event_emission(monkeypatch, tmp_path):
    import prefect.events

    from flows.alerts.events import emit_alert_event

    calls = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: calls.append(kw) or object())
    entry = _add(AlertLog.open(tmp_path), [_decision(severity="critical")])[0]
    assert emit_alert_event(entry, "demo")
    (kw,) = calls
    assert kw["event"] == "divtransforms.drift.critical"
    assert kw["resource"]["prefect.resource.id"] == "divtransforms.feature.x"
    assert kw["id"] == event_id(entry["dedup_key"])
    assert kw["payload"]["dedup_key"] == entry["dedup_key"]
