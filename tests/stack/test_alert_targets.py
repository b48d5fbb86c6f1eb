"""Alert messages from templates, and deliveries to local receivers that validate each payload
against the API's documented schema: Slack (Block Kit), SendGrid (HTML + text), PagerDuty Events
v2, and a real Prometheus Alertmanager."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from flows.alerts.messages import Message
from flows.alerts.notify import build_notifiers
from flows.alerts.outbox import AlertLog, deliver_outstanding
from flows.alerts.targets import incident_key

from .receivers import ApiReceiver
from .records import add_run, populated_monitor

PD_KEY = "R0UT1NGKEY0123456789abcdef012345"  # 32 characters, like a real integration key
BASE_URL = "https://grafana.example.com/d/divtransforms?var-feature={feature}"


def _notify(slack: str, sendgrid: str, pagerduty: str, alertmanager: str) -> str:
    return f"""
[[notify]]
name = "chat"
type = "slack"
url_env = "DIVMON_TEST_SLACK_URL"

[[notify]]
name = "mail"
type = "email"
api_key_env = "DIVMON_TEST_SENDGRID_KEY"
api_url = "{sendgrid}/v3/mail/send"
sender = "drift@example.com"
to = ["oncall@example.com", "data-team@example.com"]

[[notify]]
name = "pager"
type = "pagerduty"
routing_key_env = "DIVMON_TEST_PD_KEY"
api_url = "{pagerduty}/v2/enqueue"

[[notify]]
name = "am"
type = "alertmanager"
api_url = "{alertmanager}"
labels = {{ team = "data" }}
"""


def _dashboard() -> str:
    return f'[dashboard]\nbase_url = "{BASE_URL}"\n'


@pytest.fixture()
def secrets(monkeypatch):
    monkeypatch.setenv("DIVMON_TEST_SENDGRID_KEY", "SG.secret-key")
    monkeypatch.setenv("DIVMON_TEST_PD_KEY", PD_KEY)


def _am_alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true", timeout=10) as resp:
        return json.loads(resp.read())


def test_message_says_what_on_call_needs(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path, _dashboard())
    entry = AlertLog.open(config.history_dir).entries[0]
    assert entry["severity"] == "critical"
    msg = Message.of(entry, config)
    rec = entry["record"]
    text, html = msg.text(), msg.html()
    assert msg.subject.startswith("[divtransforms] CRITICAL: amount in orders drifted")
    for body in (text, html):
        assert "amount" in body and "orders" in body
        judged = max(rec["js_corrected"], 0.0)  # js_divergence is judged bias-corrected
        assert f"js_divergence (bias-corrected) = {judged:.4g}" in body.replace(
            "<strong>", ""
        ).replace("</strong>", "")  # the judged value ...
        assert "0.03" in body and "0.002" in body  # ... against its thresholds
        assert f"{rec['p_value']:.2g}" in body
        assert f"{int(rec['n']):,}" in body
        assert "2026-03-01 02:00 – 03:00 UTC" in body
        assert entry["reference_id"] in body
        assert "https://grafana.example.com/d/divtransforms?var-feature=amount" in body
        assert "file://" not in body
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "js_divergence" in msg.summary and "critical 0.03" in msg.summary


def test_templates_are_files_in_the_package() -> None:
    import flows

    folder = Path(flows.__file__).parent / "templates"
    from flows.alerts.messages import TEMPLATES

    assert sorted(p.name for p in folder.glob("*.j2")) == sorted(TEMPLATES)


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path, _dashboard())
    entry = dict(AlertLog.open(config.history_dir).entries[0])
    entry["feature"] = "<img src=x onerror=alert(1)>&co"
    entry["reason"] = "<b>bold</b>"
    msg = Message.of(entry, config)
    html = msg.html()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;&amp;co" in html
    assert "<b>bold" not in html
    slack = msg.slack()
    section = slack["blocks"][1]["text"]["text"]
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;co" in section
    # the dashboard link quotes the feature name
    assert "var-feature=%3Cimg%20src%3Dx" in json.dumps(slack)


def test_deliveries_match_the_apis_and_recovery_resolves(
    tmp_path: Path, secrets, monkeypatch, alertmanager
) -> None:
    with (
        ApiReceiver("slack_incoming_webhook", answer="ok") as slack,
        ApiReceiver("sendgrid_mail_send", status=202) as sendgrid,
        ApiReceiver(
            "pagerduty_events_v2",
            status=202,
            answer=lambda b: {"status": "success", "dedup_key": b["dedup_key"]},
        ) as pagerduty,
    ):
        monkeypatch.setenv("DIVMON_TEST_SLACK_URL", f"{slack.url}/services/T0/B0/XYZ")
        notify = _notify(slack.url, sendgrid.url, pagerduty.url, alertmanager.url)
        config = populated_monitor(tmp_path, _dashboard(), runs=1, notify_toml=notify)
        log = AlertLog.open(config.history_dir)
        assert [e["severity"] for e in log.entries] == ["critical"]
        opened = log.entries[0]["dedup_key"]
        summary = deliver_outstanding(log, build_notifiers(config))
        assert (summary.delivered, summary.failed) == (4, 0), summary.errors
        # the incident is open in Alertmanager, with our labels
        active = [a for a in _am_alerts(alertmanager.url) if a["labels"]["dedup_key"] == opened]
        assert len(active) == 1
        assert active[0]["labels"] | {} == {
            "alertname": "DataDrift",
            "monitor": "orders",
            "feature": "amount",
            "severity": "critical",
            "dedup_key": opened,
            "team": "data",
        }
        assert active[0]["annotations"]["dashboard"].endswith("var-feature=amount")

        new = add_run(config, 1)  # hours 3-5: the shift ends, the feature recovers
        assert [e["severity"] for e in new] == ["recovered"]
        log = AlertLog.open(config.history_dir)
        summary = deliver_outstanding(log, build_notifiers(config))
        assert (summary.delivered, summary.failed) == (4, 0), summary.errors
        assert all(e["status"] == "delivered" for e in AlertLog.open(config.history_dir).entries)

        # PagerDuty: trigger, then resolve with the same dedup key
        events = pagerduty.bodies()
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {opened}
        assert events[0]["payload"]["severity"] == "critical"
        assert events[0]["links"][0]["href"].startswith("https://grafana.example.com/")
        assert pagerduty.rejected == []
        # Alertmanager: the recovered alert resolved the one it opened
        assert [a for a in _am_alerts(alertmanager.url) if a["labels"]["dedup_key"] == opened] == []
        # Slack: blocks; SendGrid: text first, then HTML; both carry the facts
        assert slack.rejected == [] and sendgrid.rejected == []
        first = slack.bodies()[0]
        assert first["blocks"][0]["type"] == "header" and "critical drift" in first["text"]
        assert "CRITICAL" in first["blocks"][0]["text"]["text"]
        assert slack.requests[0]["path"] == "/services/T0/B0/XYZ"
        mail = sendgrid.bodies()[1]
        assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
        assert "recovered" in mail["subject"].lower()
        assert sendgrid.requests[0]["headers"]["Authorization"] == "Bearer SG.secret-key"


def test_escalation_keeps_one_incident_and_recovery_resolves_both(
    tmp_path: Path, secrets, alertmanager
) -> None:
    entries = [
        {"dedup_key": "amount|w1|warning", "feature": "amount", "severity": "warning"},
        {"dedup_key": "country|w1|critical", "feature": "country", "severity": "critical"},
        {"dedup_key": "amount|w2|critical", "feature": "amount", "severity": "critical"},
        {"dedup_key": "amount|w3|recovered", "feature": "amount", "severity": "recovered"},
        {"dedup_key": "amount|w5|warning", "feature": "amount", "severity": "warning"},
    ]
    keys = [incident_key(entries, e) for e in entries]
    assert keys == [
        "amount|w1|warning",
        "country|w1|critical",
        "amount|w1|warning",  # the escalation updates the open incident
        "amount|w1|warning",  # the recovery resolves it
        "amount|w5|warning",  # a new breach opens a new one
    ]
    with ApiReceiver("pagerduty_events_v2", status=202) as pagerduty:
        notify = _notify("http://unused", "http://unused", pagerduty.url, alertmanager.url)
        config = populated_monitor(tmp_path, runs=1, notify_toml=notify)
        base = AlertLog.open(config.history_dir).entries[0]
        full = [{**base, **e, "deliveries": {**base["deliveries"]}} for e in entries]
        log = AlertLog(config.history_dir / "_alerts.json", full)
        log.save()
        from flows.alerts.targets import send_alertmanager, send_pagerduty

        pd_cfg, am_cfg = config.notify[2], config.notify[3]

        def send(e: dict) -> None:  # as deliver_outstanding does: send, then log the success
            for cfg, sender in ((pd_cfg, send_pagerduty), (am_cfg, send_alertmanager)):
                sender(config, cfg, e)
                e["deliveries"][cfg.name] = {"status": "delivered", "attempts": 1}
                log.save()

        full = log.entries
        for e in full[:3]:
            send(e)
        active = {
            (a["labels"]["feature"], a["labels"]["severity"]) for a in _am_alerts(alertmanager.url)
        }
        assert active == {("amount", "critical"), ("country", "critical")}  # warning resolved
        send(full[3])
        assert {a["labels"]["feature"] for a in _am_alerts(alertmanager.url)} == {"country"}
        actions = [(b["event_action"], b["dedup_key"]) for b in pagerduty.bodies()]
        assert actions == [
            ("trigger", "amount|w1|warning"),
            ("trigger", "country|w1|critical"),
            ("trigger", "amount|w1|warning"),
            ("resolve", "amount|w1|warning"),
        ]


def test_rejected_payload_stays_in_the_outbox_without_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIVMON_TEST_PD_KEY", "too-short-key")  # the API wants 32 characters
    with ApiReceiver("pagerduty_events_v2", status=202) as pagerduty:
        notify = (
            '[[notify]]\nname = "pager"\ntype = "pagerduty"\n'
            f'routing_key_env = "DIVMON_TEST_PD_KEY"\napi_url = "{pagerduty.url}/v2/enqueue"\n'
        )
        config = populated_monitor(tmp_path, runs=1, notify_toml=notify)
        log = AlertLog.open(config.history_dir)
        summary = deliver_outstanding(log, build_notifiers(config))
        assert (summary.delivered, summary.failed) == (0, 1)
        assert pagerduty.rejected and "routing_key" in pagerduty.rejected[0][0]
    entry = AlertLog.open(config.history_dir).entries[0]
    assert entry["status"] == "failed"
    assert entry["deliveries"]["pager"]["last_error"] == "HTTPStatusError: HTTP 400"
    assert "too-short-key" not in json.dumps(entry)


def test_a_resolve_never_overtakes_its_trigger(tmp_path: Path, secrets) -> None:
    """PagerDuty is down when the incident opens; the recovery arrives before it is back: the
    resolve waits in the outbox until the trigger got through, then follows it."""
    with ApiReceiver("pagerduty_events_v2", status=202) as pagerduty:
        notify = (
            '[[notify]]\nname = "pager"\ntype = "pagerduty"\n'
            f'routing_key_env = "DIVMON_TEST_PD_KEY"\napi_url = "{pagerduty.url}/v2/enqueue"\n'
        )
        config = populated_monitor(tmp_path, runs=1, notify_toml=notify)
        pagerduty.fail_status = 503
        summary = deliver_outstanding(AlertLog.open(config.history_dir), build_notifiers(config))
        assert (summary.delivered, summary.failed) == (0, 1)
        add_run(config, 1)  # the recovery, while PagerDuty is still down
        summary = deliver_outstanding(AlertLog.open(config.history_dir), build_notifiers(config))
        assert (summary.delivered, summary.failed) == (0, 2)
        waiting = AlertLog.open(config.history_dir).entries[1]["deliveries"]["pager"]
        assert waiting["last_error"] == "IncidentNotOpenedYet"
        pagerduty.fail_status = None
        summary = deliver_outstanding(AlertLog.open(config.history_dir), build_notifiers(config))
        assert (summary.delivered, summary.failed) == (2, 0)
        assert [b["event_action"] for b in pagerduty.bodies()] == ["trigger", "resolve"]


def test_a_stale_feed_is_an_incident_of_its_own(tmp_path: Path, secrets, alertmanager) -> None:
    """flows.monitor.freshness logs ``stale`` / ``recovered`` on the pseudo-feature ``__feed__``:
    the messages say what happened (no drift numbers), and the recovery resolves the incident."""
    from flows.monitor.freshness import FEED

    with (
        ApiReceiver("slack_incoming_webhook", answer="ok") as slack,
        ApiReceiver("pagerduty_events_v2", status=202) as pagerduty,
    ):
        import os

        os.environ["DIVMON_TEST_SLACK_URL"] = slack.url
        try:
            notify = _notify(slack.url, "http://unused", pagerduty.url, alertmanager.url)
            config = populated_monitor(tmp_path, _dashboard(), runs=0, notify_toml=notify)
            targets = [t.name for t in config.notify if t.name != "mail"]
            base = {
                "feature": FEED,
                "metric": "idle_runs",
                "value": 3.0,
                "reference_id": "ref-1",
                "record": {"idle_runs": 3, "n": 0},
                "targets": targets,
                "status": "pending",
                "deliveries": {
                    t: {"status": "pending", "attempts": 0, "delivered_at": None} for t in targets
                },
            }
            stale = {
                **base,
                "dedup_key": f"{FEED}|2026-03-01T06:00:00+00:00|-|stale|ref-1",
                "severity": "stale",
                "window_start": "2026-03-01T06:00:00+00:00",
                "window_end": None,
                "reason": "no new data for 3 run(s) since 2026-03-01 06:00:00+00:00",
            }
            log = AlertLog(config.history_dir / "_alerts.json", [stale])
            log.save()
            msg = Message.of(stale, config)
            assert msg.subject.startswith("[divtransforms] STALE: no new data for orders")
            text = msg.text()
            assert "no new data since 2026-03-01 06:00 UTC" in text
            assert "Judged value" not in text and "Judged value" not in msg.html()
            summary = deliver_outstanding(log, build_notifiers(config))
            assert (summary.delivered, summary.failed) == (3, 0), summary.errors
            firing = [a["labels"] for a in _am_alerts(alertmanager.url)]
            assert [(a["feature"], a["severity"]) for a in firing] == [(FEED, "stale")]
            recovered = {
                **base,
                "deliveries": {
                    t: {"status": "pending", "attempts": 0, "delivered_at": None} for t in targets
                },
                "dedup_key": f"{FEED}|2026-03-01T06:00:00+00:00|2026-03-01T09:00:00+00:00|"
                "recovered|ref-1",
                "severity": "recovered",
                "window_start": "2026-03-01T06:00:00+00:00",
                "window_end": "2026-03-01T09:00:00+00:00",
                "reason": "data arrived again after 3 idle run(s)",
            }
            log = AlertLog.open(config.history_dir)
            log.entries.append(recovered)
            log.save()
            summary = deliver_outstanding(log, build_notifiers(config))
            assert (summary.delivered, summary.failed) == (3, 0), summary.errors
        finally:
            os.environ.pop("DIVMON_TEST_SLACK_URL")
    assert _am_alerts(alertmanager.url) == []
    events = pagerduty.bodies()
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", stale["dedup_key"]),
        ("resolve", stale["dedup_key"]),
    ]
    assert events[0]["payload"]["severity"] == "error"
    assert slack.rejected == [] and pagerduty.rejected == []
    assert "stale" in slack.bodies()[0]["blocks"][1]["text"]["text"]
    assert "arrives again" in slack.bodies()[1]["blocks"][1]["text"]["text"]


def test_quality_and_schema_findings_are_in_the_message(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path, _dashboard())
    entry = dict(AlertLog.open(config.history_dir).entries[0])
    entry["record"] = {
        **entry["record"],
        "quality_severity": "critical",
        "quality_reason": "missing_rate 0.4 vs reference 0.01 (p=1e-30)",
        "schema_issues": [{"code": "type_change", "detail": "amount: <float> -> <string>"}],
    }
    msg = Message.of(entry, config)
    text, html, slack = msg.text(), msg.html(), msg.slack()
    assert "its data quality changed (critical)" in text
    assert "Data quality : critical: missing_rate 0.4 vs reference 0.01" in text
    assert "Schema       : type_change: amount: <float> -> <string>" in text
    assert "type_change: amount: &lt;float&gt; -&gt; &lt;string&gt;" in html
    assert "<float>" not in html
    fields = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert any(f.startswith("*Data quality*") for f in fields)
    assert any("&lt;float&gt;" in f for f in fields if f.startswith("*Schema*"))
    from .receivers import validator

    assert list(validator("slack_incoming_webhook").iter_errors(slack)) == []
