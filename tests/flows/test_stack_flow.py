"""The drift_check flow feeds the monitoring stack: SQL export and node-exporter textfile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.config import load_config
from flows.demo import run as demo
from flows.demo.receiver import AlertReceiver
from flows.monitor.history import read_history


def _value(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return next(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


pytestmark = [pytest.mark.prefect, pytest.mark.beam, pytest.mark.usefixtures("prefect_harness")]


def test_drift_check_exports_to_sql_and_writes_the_textfile(monitor_dir: Path, monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    from flows.check import drift_check
    from flows.stack.sql_history import SqlHistory

    path = monitor_dir / "monitor.toml"
    path.write_text(
        path.read_text()
        + '\n[metrics]\ntextfile = "metrics/divmon.prom"\n'
        + '\n[[export]]\nkind = "sql"\nurl = "sqlite:///drift.db"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    with AlertReceiver() as rx:
        monkeypatch.setenv(demo.WEBHOOK_ENV, rx.url)
        for hours in ([0, 1], [2, 3]):
            for h in hours:
                demo.write_stream_file(monitor_dir / "landing", h, n=1_000, drifted=h >= 2)
            drift_check(str(path))
        text = (monitor_dir / "metrics" / "divmon.prom").read_text()
        before = _value(text, "divtransforms_last_success_timestamp_seconds")
        time.sleep(1.1)
        drift_check(str(path))  # no new data: still a successful run
        after = (monitor_dir / "metrics" / "divmon.prom").read_text()
        assert _value(after, "divtransforms_last_success_timestamp_seconds") > before
        assert abs(_value(after, "divtransforms_last_success_timestamp_seconds") - time.time()) < 60
    history = read_history(config.history_dir)
    with SqlHistory(f"sqlite:///{monitor_dir / 'drift.db'}") as sql:
        rows = sql.read()
    assert len(rows) == history.num_rows == 8
    assert {r["monitor"] for r in rows} == {"demo"}
    assert sorted((r["run_id"], r["feature"], r["window_start"]) for r in rows) == sorted(
        (r["run_id"], r["feature"], r["window_start"]) for r in history.to_pylist()
    )
    text = (monitor_dir / "metrics" / "divmon.prom").read_text()
    severity = {
        s.labels["feature"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "divtransforms_drift_severity"
    }
    latest = {r["feature"]: r for r in history.to_pylist()}  # canonical order: last is newest
    assert severity == {
        f: {"ok": 0, "insufficient": 1, "warning": 2, "critical": 3}[r["severity"]]
        for f, r in latest.items()
    }
