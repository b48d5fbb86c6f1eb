"""``divmon alerts test`` and ``divmon alerts list`` against local receivers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from flows.cli.divmon import main
from flows.cli.server import free_port
from flows.demo.receiver import AlertReceiver

from .receivers import ApiReceiver
from .records import populated_monitor

PD_KEY = "R0UT1NGKEY0123456789abcdef012345"


def test_alerts_test_reaches_every_target_and_leaves_no_open_incident(
    tmp_path: Path, monkeypatch, capsys, alertmanager
) -> None:
    monkeypatch.setenv("DIVMON_TEST_PD_KEY", PD_KEY)
    with (
        ApiReceiver("slack_incoming_webhook", answer="ok") as slack,
        ApiReceiver("pagerduty_events_v2", status=202) as pagerduty,
        AlertReceiver() as webhook,
    ):
        monkeypatch.setenv("DIVMON_TEST_SLACK_URL", slack.url)
        monkeypatch.setenv("DIVMON_TEST_WEBHOOK_URL", webhook.url)
        notify = f"""
[[notify]]
name = "chat"
type = "slack"
url_env = "DIVMON_TEST_SLACK_URL"

[[notify]]
name = "hook"
type = "webhook"
url_env = "DIVMON_TEST_WEBHOOK_URL"

[[notify]]
name = "pager"
type = "pagerduty"
routing_key_env = "DIVMON_TEST_PD_KEY"
api_url = "{pagerduty.url}/v2/enqueue"

[[notify]]
name = "am"
type = "alertmanager"
api_url = "{alertmanager.url}"
"""
        populated_monitor(tmp_path, runs=0, notify_toml=notify)
        assert main(["alerts", "test", "--config", str(tmp_path / "monitor.toml")]) == 0
        out = capsys.readouterr().out
        assert out.splitlines() == ["chat: ok", "hook: ok", "pager: ok", "am: ok"]
        assert slack.rejected == [] and pagerduty.rejected == []
        assert slack.bodies()[0]["text"].startswith("[TEST]")
        assert webhook.alerts()[0]["feature"] == "divmon-alerts-test"
        actions = [(b["event_action"], b["dedup_key"]) for b in pagerduty.bodies()]
        assert [a for a, _ in actions] == ["trigger", "resolve"]
        assert actions[0][1] == actions[1][1]
        assert "[TEST]" in pagerduty.bodies()[0]["payload"]["summary"]
    with urllib.request.urlopen(f"{alertmanager.url}/api/v2/alerts?active=true") as resp:
        assert json.loads(resp.read()) == []  # the test incident was resolved


def test_alerts_test_reports_a_failing_target(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DIVMON_TEST_PD_KEY", PD_KEY)
    notify = f"""
[[notify]]
name = "pager"
type = "pagerduty"
routing_key_env = "DIVMON_TEST_PD_KEY"
api_url = "http://127.0.0.1:{free_port()}/v2/enqueue"

[[notify]]
name = "mail"
type = "email"
api_key_env = "DIVMON_TEST_UNSET_KEY"
sender = "a@example.com"
to = ["b@example.com"]
"""
    populated_monitor(tmp_path, runs=0, notify_toml=notify)
    assert main(["alerts", "test", "--config", str(tmp_path / "monitor.toml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pager: FAILED: ConnectError"
    assert (
        out[1]
        == "mail: FAILED: notify 'mail': environment variable DIVMON_TEST_UNSET_KEY is not set"
    )


def test_alerts_list(tmp_path: Path, capsys) -> None:
    config = populated_monitor(tmp_path)
    path = str(tmp_path / "monitor.toml")
    assert main(["alerts", "list", "--config", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "critical" in lines[0] and "amount" in lines[0] and "[pd=pending]" in lines[0]
    assert main(["alerts", "list", "--config", path, "--json", "--outstanding"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["severity"] for r in rows] == ["critical", "recovered"]
    from flows.alerts.outbox import AlertLog

    log = AlertLog.open(config.history_dir)
    for e in log.entries:
        e["status"] = "delivered"
    log.save()
    assert main(["alerts", "list", "--config", path, "--outstanding"]) == 0
    assert capsys.readouterr().out.strip() == "no alerts outstanding in the alert log"
