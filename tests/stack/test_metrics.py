"""Prometheus metrics: values from the history, conventions, textfile, a real Pushgateway, and a
real Prometheus scraping a running ``divmon serve``."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from divtransforms.records import SEVERITY_RANK
from flows.cli.server import free_port
from flows.stack.metrics import METRIC_NAMES, render_text

from .conftest import start_prometheus, stop, wait_http
from .records import drift_table, populated_monitor

ALLOWED_LABELS = {"monitor", "feature", "metric", "level", "test", "severity", "detector"}


def _families(text: str):
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in _families(text).values():
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _expected_latest() -> dict[str, dict]:
    """The newest window per feature of run-2, computed independently of flows.stack.metrics."""
    rows = drift_table("run-2", hours=3, start=3).to_pylist()
    latest = {}
    for r in rows:
        if r["feature"] not in latest or r["window_end"] > latest[r["feature"]]["window_end"]:
            latest[r["feature"]] = r
    return latest


def _check_values(samples: dict, monitor: str = "orders") -> None:
    def get(name, **labels):
        return samples[(name, frozenset({"monitor": monitor, **labels}.items()))]

    for feature, r in _expected_latest().items():
        for detector, stat in (("mean", "cusum"), ("histogram", "cusum_histogram")):
            if r[stat] is not None:
                labels = {"feature": feature, "detector": detector}
                assert get("divtransforms_cusum", **labels) == pytest.approx(r[stat], rel=1e-12)
                assert get("divtransforms_cusum_threshold", **labels) == pytest.approx(
                    r[f"{stat}_threshold"], rel=1e-12
                )
        assert get("divtransforms_drift_value", feature=feature, metric="js_divergence") == (
            pytest.approx(max(r["js_corrected"], 0.0), rel=1e-12)
        )
        assert get("divtransforms_drift_p_value", feature=feature, test="histogram") == (
            pytest.approx(r["p_value"], rel=1e-12)
        )
        assert get("divtransforms_drift_severity", feature=feature) == SEVERITY_RANK[r["severity"]]
        assert get("divtransforms_window_samples", feature=feature) == r["n"]
        assert get("divtransforms_window_missing_ratio", feature=feature) == pytest.approx(
            r["missing_rate"]
        )
        assert get("divtransforms_window_invalid_ratio", feature=feature) == 0.0
        assert (
            get("divtransforms_quality_severity", feature=feature)
            == (SEVERITY_RANK[r["quality_severity"]])
        )
        assert get("divtransforms_window_end_timestamp_seconds", feature=feature) == (
            r["window_end"].timestamp()
        )
        assert (
            get(
                "divtransforms_drift_threshold",
                feature=feature,
                metric="js_divergence",
                level="critical",
            )
            == 0.03
        )
    assert get("divtransforms_alerts_total", feature="amount", severity="critical") == 1
    assert get("divtransforms_alerts_total", feature="amount", severity="recovered") == 1
    assert get("divtransforms_alerts_outstanding", feature="amount") == 2  # nothing delivered
    assert get("divtransforms_alerts_outstanding", feature="country") == 0
    assert get("divtransforms_last_success_timestamp_seconds") == 1772334300.0 + 3 * 3600
    assert get("divtransforms_history_readable") == 1


def test_values_are_the_latest_windows(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path)
    _check_values(_samples(render_text(config)))


def test_names_and_labels_follow_the_conventions(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path)
    families = _families(render_text(config))
    assert set(families) == {n.removesuffix("_total") for n in METRIC_NAMES}
    for fam in families.values():
        assert re.fullmatch(r"divtransforms_[a-z_]+", fam.name)
        assert fam.documentation
        for s in fam.samples:
            assert set(s.labels) <= ALLOWED_LABELS, s
            for value in s.labels.values():  # no run ids, windows or timestamps in labels
                assert not re.search(r"\d{4}-\d\d-\d\d|run-", value), s
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples)
    # units in the names of the time and ratio gauges
    assert "divtransforms_window_end_timestamp_seconds" in families
    assert "divtransforms_cusum" in families and "divtransforms_cusum_threshold" in families
    assert "divtransforms_window_missing_ratio" in families


def test_unreadable_history_is_reported_not_raised(tmp_path: Path) -> None:
    config = populated_monitor(tmp_path)
    (config.history_dir / "_alerts.json").write_text("{not json", encoding="utf-8")
    samples = _samples(render_text(config))
    assert (
        samples[("divtransforms_history_readable", frozenset({"monitor": "orders"}.items()))] == 0
    )


def test_collector_rereads_when_files_change(tmp_path: Path) -> None:
    from flows.alerts.outbox import AlertLog
    from flows.stack.metrics import registry_for

    config = populated_monitor(tmp_path)
    from prometheus_client import generate_latest

    registry = registry_for(config)
    key = (
        "divtransforms_alerts_outstanding",
        frozenset({"monitor": "orders", "feature": "amount"}.items()),
    )
    assert _samples(generate_latest(registry).decode())[key] == 2
    log = AlertLog.open(config.history_dir)
    for e in log.entries:
        e["status"] = "delivered"
    time.sleep(0.01)
    log.save()
    assert _samples(generate_latest(registry).decode())[key] == 0


def test_textfile_for_node_exporter(tmp_path: Path) -> None:
    from flows.stack.metrics import publish_metrics

    config = populated_monitor(tmp_path, '[metrics]\ntextfile = "textfile/divmon.prom"\n')
    assert publish_metrics(config) == [str(tmp_path / "textfile" / "divmon.prom")]
    text = (tmp_path / "textfile" / "divmon.prom").read_text()
    _check_values(_samples(text))
    assert not list((tmp_path / "textfile").glob("*.tmp*"))  # written through a rename


def test_pushgateway(tmp_path: Path, pushgateway) -> None:
    from flows.stack.metrics import publish_metrics

    config = populated_monitor(tmp_path, '[metrics]\npushgateway_env = "DIVMON_PUSHGATEWAY"\n')
    os.environ["DIVMON_PUSHGATEWAY"] = pushgateway.url
    try:
        assert publish_metrics(config) == ["pushgateway"]
    finally:
        os.environ.pop("DIVMON_PUSHGATEWAY")
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pushed = {}
    for (name, labels), value in _samples(text).items():
        d = dict(labels)
        if d.pop("job", None) == "divtransforms" and name.startswith("divtransforms_"):
            d.pop("instance", None)
            pushed[(name, frozenset(d.items()))] = value
    _check_values(pushed)


def test_pushgateway_down_does_not_fail_the_run(tmp_path: Path, caplog) -> None:
    from flows.stack.metrics import publish_metrics

    url = f"http://127.0.0.1:{free_port()}"
    config = populated_monitor(tmp_path, f'[metrics]\npushgateway = "{url}"\n')
    assert publish_metrics(config) == []
    assert "Pushgateway failed" in caplog.text


def _query(prom_url: str, promql: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{prom_url}/api/v1/query?{q}", timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


@pytest.mark.slow
@pytest.mark.prefect
def test_prometheus_scrapes_divmon_serve(tmp_path: Path) -> None:
    """A real Prometheus scrapes a running ``divmon serve``; the series come back via its API."""
    (tmp_path / "monitor").mkdir()
    populated_monitor(tmp_path / "monitor")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "serve",
            "--config",
            str(tmp_path / "monitor" / "monitor.toml"),
            "--cron",
            "0 0 1 1 *",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    prom = None
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", serve, timeout=120)
        prom = start_prometheus(tmp_path, [f"127.0.0.1:{port}"])
        deadline = time.monotonic() + 60
        while True:
            result = _query(prom.url, 'divtransforms_drift_value{monitor="orders"}')
            if len(result) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        samples = {}
        for name in METRIC_NAMES:
            for series in _query(prom.url, name):
                labels = {
                    k: v
                    for k, v in series["metric"].items()
                    if k not in ("__name__", "job", "instance")
                }
                samples[(series["metric"]["__name__"], frozenset(labels.items()))] = float(
                    series["value"][1]
                )
        _check_values(samples)
        # every PromQL query of the Grafana dashboard parses and finds series in Prometheus
        from .test_grafana import interpolate_promql, targets

        deadline = time.monotonic() + 60  # increase() needs two scrapes
        while not _query(prom.url, "count_over_time(divtransforms_alerts_total[1h]) >= 2"):
            assert time.monotonic() < deadline, "Prometheus did not scrape twice in 60 s"
            time.sleep(0.5)
        for where, t in targets("prometheus"):
            expr = interpolate_promql(t["expr"])
            if expr.startswith("label_values("):  # a Grafana function: ask for the series
                expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
            assert _query(prom.url, expr), f"{where}: {expr} found nothing"
        up = _query(prom.url, 'up{job="divmon"}')
        assert [float(s["value"][1]) for s in up] == [1.0]
        assert all(not math.isnan(v) for k, v in samples.items() if "p_value" not in k[0])
    finally:
        if prom is not None:
            stop(prom.proc)
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
