"""Dashboard data, rendering, export, CLI and server, without a browser."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from dash_histories import T0, alert, drifting_history, record, write_history
from hypothesis import given, settings
from hypothesis import strategies as st

from divtransforms.policy import Policy, judged_values
from flows.dashboard import DashboardError, build_payload, render_dashboard, render_feature_chart
from flows.dashboard import cli as dashboard_cli
from flows.dashboard.data import (
    DEFAULT_CRITICAL,
    DEFAULT_WARN,
    thresholds_from_policy,
)
from flows.dashboard.page import script_json
from flows.dashboard.serve import DashboardServer, history_signature

REPO = Path(__file__).resolve().parents[2]


def data_block(html: str) -> dict:
    return json.loads(html.split('id="dashboard-data">', 1)[1].split("</script>", 1)[0])


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_script_json_never_closes_the_script_and_round_trips(text):
    encoded = script_json({"s": text, "k": [text]})
    assert "<" not in encoded and ">" not in encoded and "&" not in encoded
    assert json.loads(encoded) == {"s": text, "k": [text]}


def test_downsampling_keeps_the_tail_and_buckets_the_head_exactly(tmp_path):
    rng = np.random.default_rng(3)
    n = 230
    js = rng.random(n) * 0.1
    records = [record("f", i, js=float(js[i]), rng=rng) for i in range(n)]
    records[10]["severity"] = "critical"
    root = write_history(tmp_path / "h", records)
    p = build_payload(root, full_windows=50, buckets=12)
    f = p["features"][0]
    s = f["series"]
    assert f["n_windows"] == n and f["n_bucketed_windows"] == n - 50
    assert len(s["t"]) == f["n_buckets"] + 50 and sum(s["size"]) == n
    judged = np.maximum(js - 0.002, 0.0)  # js_corrected in the synthetic records
    # Full-resolution tail: the values themselves (6 significant digits).
    np.testing.assert_allclose(s["metric"][-50:], judged[-50:], rtol=1e-5, atol=1e-12)
    # Head: equal-count buckets, mean / min / max of exactly the windows inside.
    bounds = np.cumsum([0, *s["size"][: f["n_buckets"]]])
    for b in range(f["n_buckets"]):
        chunk = judged[bounds[b] : bounds[b + 1]]
        assert s["metric"][b] == pytest.approx(chunk.mean(), rel=1e-5)
        assert s["metric_min"][b] == pytest.approx(chunk.min(), rel=1e-5, abs=1e-12)
        assert s["metric_max"][b] == pytest.approx(chunk.max(), rel=1e-5)
    # Sample counts are summed and the worst severity is kept.
    ns = np.array([r["n"] for r in records], float)
    assert sum(s["n"]) == pytest.approx(ns.sum())
    bucket_of_10 = int(np.searchsorted(bounds, 10, side="right") - 1)
    assert s["severity"][bucket_of_10] == 3
    # Timestamps stay exact (milliseconds) even though values are rounded.
    last_end = T0 + timedelta(hours=n)
    assert s["t"][-1] == int(last_end.timestamp() * 1000)
    assert f["latest"]["window_end"] == int(last_end.timestamp() * 1000)


def test_latest_pane_wins_and_breaches_sort_first(tmp_path):
    early = record("b_ok", 0, js=0.01)
    late_pane = dict(early, pane=1, js_divergence=0.3, js_corrected=0.3, severity="critical")
    other = record("a_fine", 0, js=0.001)
    root = write_history(tmp_path / "h", [early, other])
    write_history(tmp_path / "h2", [late_pane])
    (tmp_path / "h2" / "date=2026-11-01" / "part-x.parquet").rename(
        tmp_path / "h" / "date=2026-11-01" / "part-late.parquet"
    )
    p = build_payload(root)
    assert [f["name"] for f in p["features"]] == ["b_ok", "a_fine"]
    b = p["features"][0]
    assert b["n_windows"] == 1 and b["latest"]["severity"] == "critical" and b["breach"]
    assert p["n_records"] == 3 and p["n_breaches"] == 1


def test_judged_values_are_the_policys():
    numeric = {
        "js_divergence": np.array([0.01, 0.02, np.nan]),
        "js_corrected": np.array([0.008, np.nan, np.nan]),
        "js_bias": np.array([0.002, 0.025, 0.0]),
        "psi": np.array([1.0, 2.0, 3.0]),
    }
    out = judged_values(numeric, "js_divergence")
    assert out[0] == pytest.approx(0.008) and out[1] == 0.0 and np.isnan(out[2])
    assert judged_values(numeric, "psi").tolist() == numeric["psi"].tolist()
    # the very values Policy.explain reports as the histogram effect
    record = {k: float(v[0]) for k, v in numeric.items()}
    record.update(feature="f", n=300, dof=3, tests=[{"name": "histogram", "kind": "histogram"}])
    assert Policy().explain(record)["tests"][0]["effect"] == pytest.approx(out[0])


def test_thresholds_default_to_the_policy_and_are_validated(tmp_path):
    root = drifting_history(tmp_path / "h", ["a", "b", "c"], n_windows=4)
    p = build_payload(root)
    assert p["default_threshold"]["warn"] == DEFAULT_WARN
    assert p["default_threshold"]["critical"] == DEFAULT_CRITICAL
    custom = thresholds_from_policy(
        {"default": {"warn": 0.01, "critical": 0.1}, "features": {"b": {"metric": "psi"}}}
    )
    p = build_payload(root, thresholds=custom)
    by_name = {f["name"]: f for f in p["features"]}
    assert by_name["a"]["threshold"] == {"metric": "js_divergence", "warn": 0.01, "critical": 0.1}
    assert by_name["b"]["threshold"]["metric"] == "psi" and by_name["b"]["series"]["raw"] is None
    with pytest.raises(DashboardError, match="unknown metric 'nope'"):
        build_payload(root, thresholds={"*": ("nope", 0.1, 0.2)})
    with pytest.raises(DashboardError, match=r"thresholds\['a'\].*above critical"):
        build_payload(root, thresholds={"a": ("js_divergence", 0.3, 0.2)})
    with pytest.raises(DashboardError, match="expected \\(metric, warn, critical\\)"):
        build_payload(root, thresholds={"a": 0.3})


def test_bad_alert_log_is_a_clear_error(tmp_path):
    root = drifting_history(tmp_path / "h", ["a"], n_windows=2)
    (root / "_alerts.json").write_text("{not json")
    with pytest.raises(DashboardError, match="cannot read alert log .*_alerts.json"):
        render_dashboard(root, tmp_path / "x.html")
    (root / "_alerts.json").write_text(json.dumps({"schema_version": 9, "alerts": []}))
    with pytest.raises(DashboardError, match="unsupported schema_version 9"):
        render_dashboard(root, tmp_path / "x.html")
    bad = alert("a", 0, "warning", 0.1)
    bad["window_end"] = "yesterday"
    (root / "_alerts.json").write_text(json.dumps({"schema_version": 1, "alerts": [bad]}))
    with pytest.raises(DashboardError, match="entry 0 has a bad timestamp 'yesterday'"):
        render_dashboard(root, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_missing_history_is_an_error(tmp_path):
    with pytest.raises(DashboardError, match="does not exist"):
        render_dashboard(tmp_path / "nowhere", tmp_path / "x.html")


def test_page_is_self_contained_and_escapes_config_values(tmp_path):
    root = drifting_history(tmp_path / "h", ["a", "<b>bold</b>"], n_windows=3)
    out = render_dashboard(root, tmp_path / "d.html", title='<i>"T"</i> & more')
    html = out.read_text(encoding="utf-8")
    assert "<title>&lt;i&gt;&#34;T&#34;&lt;/i&gt; &amp; more</title>" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    # No external resources at all: no src/href to anything but in-page anchors.
    markup = html.split('<script type="application/json"', 1)[0]  # everything but scripts
    assert " src=" not in markup and "url(" not in markup
    hrefs = {h.split('"')[0] for h in markup.split('href="')[1:]}
    assert all(h.startswith("#") for h in hrefs), hrefs
    csp = html.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"', 1)[0]
    assert "default-src &#39;none&#39;" in csp and "connect-src &#39;none&#39;" in csp
    assert html.count("<script") == 3
    payload = data_block(html)
    assert {f["name"] for f in payload["features"]} == {"a", "<b>bold</b>"}


def test_feature_chart_export_png_and_svg(tmp_path):
    root = drifting_history(tmp_path / "h", ["a", "$x$ <b>", "cat"], n_windows=6)
    png = render_feature_chart(root, "a", tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    svg = render_feature_chart(root, "$x$ <b>", tmp_path / "x.svg")
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "<b>" not in text
    render_feature_chart(root, "cat", tmp_path / "cat.png")  # categorical: no MLE panel data
    with pytest.raises(DashboardError, match="feature 'zzz' has no drift records"):
        render_feature_chart(root, "zzz", tmp_path / "z.png")
    with pytest.raises(DashboardError, match=r"must end in \.png or \.svg"):
        render_feature_chart(root, "a", tmp_path / "a.gif")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="divmon")
    sub = parser.add_subparsers(dest="command", required=True)
    dashboard_cli.register(sub)
    return parser


def test_cli_writes_the_page_and_a_chart(tmp_path, capsys):
    root = drifting_history(tmp_path / "h", ["a", "b"], n_windows=4)
    (tmp_path / "policy.json").write_text(json.dumps({"default": {"warn": 0.004}}))
    out = tmp_path / "drift.html"
    args = _parser().parse_args(
        [
            "dashboard",
            "--history",
            str(root),
            "--output",
            str(out),
            "--policy",
            str(tmp_path / "policy.json"),
            "--critical",
            "0.5",
        ]
    )
    assert args.handler(args, []) == 0
    payload = data_block(out.read_text(encoding="utf-8"))
    assert payload["default_threshold"] == {
        "metric": "js_divergence",
        "warn": 0.004,
        "critical": 0.5,
    }
    assert "wrote" in capsys.readouterr().out
    args = _parser().parse_args(
        [
            "dashboard",
            "--history",
            str(root),
            "--chart",
            "a",
            "--chart-output",
            str(tmp_path / "a.svg"),
        ]
    )
    assert args.handler(args, []) == 0 and (tmp_path / "a.svg").stat().st_size > 1000


def test_divmon_entry_point_runs_dashboard(tmp_path):
    """Through the real root CLI (flows/cli/divmon.py), in a fresh interpreter without Prefect."""
    root = drifting_history(tmp_path / "h", ["a"], n_windows=2)
    out = tmp_path / "d.html"
    code = (
        "import sys; from flows.cli.divmon import main; rc = main(sys.argv[1:]); "
        "assert 'prefect' not in sys.modules, 'dashboard imported prefect'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "dashboard", "--history", str(root), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.exists() and "wrote" in done.stdout


def test_server_rerenders_when_a_run_lands(tmp_path):
    root = write_history(tmp_path / "h", [record("a", 0)])
    versions: list[int] = []
    server = DashboardServer(
        root, tmp_path / "s.html", port=0, interval=0.05, on_render=versions.append
    ).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url, timeout=10) as r:
            first = data_block(r.read().decode())
        assert first["live"] == {"url": "/version", "version": 1, "interval_ms": 50}
        sig = history_signature(root)
        write_history(
            root,
            [
                dict(
                    record("b", 1),
                    window_start=T0 + timedelta(days=3),
                    window_end=T0 + timedelta(days=3, hours=1),
                )
            ],
        )
        assert history_signature(root) != sig
        deadline = time.monotonic() + 20
        while server.version < 2:
            assert time.monotonic() < deadline, "no re-render"
            time.sleep(0.05)
        with urllib.request.urlopen(server.url + "version", timeout=10) as r:
            assert json.loads(r.read())["version"] == server.version
        with urllib.request.urlopen(server.url, timeout=10) as r:
            assert {f["name"] for f in data_block(r.read().decode())["features"]} == {"a", "b"}
        # A broken alert log keeps the last good page and reports the error.
        (root / "_alerts.json").write_text("{")
        deadline = time.monotonic() + 20
        while server.last_error is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with urllib.request.urlopen(server.url + "version", timeout=10) as r:
            assert "cannot read alert log" in json.loads(r.read())["error"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "etc/passwd", timeout=10)
        assert versions == [1, 2]
    finally:
        server.stop()


def test_server_refuses_foreign_host_headers(tmp_path):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends Host: evil.example."""
    import http.client

    root = write_history(tmp_path / "h", [record("a", 0)])
    server = DashboardServer(root, tmp_path / "s.html", port=0, interval=5).start()
    port = server.httpd.server_address[1]
    try:

        def status(host: str | None) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("GET", "/version", skip_host=True)
            if host is not None:
                conn.putheader("Host", host)
            conn.endheaders()
            code = conn.getresponse().status
            conn.close()
            return code

        for good in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert status(good) == 200, good
        for bad in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", "127.0.0.1.evil", None):
            assert status(bad) == 421, bad
    finally:
        server.stop()


def test_cli_reads_the_monitor_config(tmp_path):
    drifting_history(tmp_path / "hist", ["a", "<img src=x>"], n_windows=3)
    (tmp_path / "m.toml").write_text(
        'name = "orders"\n[source]\npaths = ["landing/*.parquet"]\n'
        '[reference]\npath = "reference.json"\n[history]\ndir = "hist"\n'
        '[dashboard]\npath = "out/drift.html"\ntitle = "Orders <drift>"\n'
        '[policy.default]\nwarn = 0.004\n[policy.features."<img src=x>"]\ncritical = 0.5\n',
        encoding="utf-8",
    )
    args = _parser().parse_args(["dashboard", "--config", str(tmp_path / "m.toml")])
    assert args.handler(args, []) == 0
    html = (tmp_path / "out" / "drift.html").read_text(encoding="utf-8")
    assert "<title>Orders &lt;drift&gt;</title>" in html
    by_name = {f["name"]: f for f in data_block(html)["features"]}
    assert by_name["a"]["threshold"]["warn"] == 0.004
    assert by_name["<img src=x>"]["threshold"]["critical"] == 0.5
    args = _parser().parse_args(["dashboard"])
    with pytest.raises(ValueError, match="give --history"):
        args.handler(args, [])


def test_real_records_from_compare(tmp_path):
    """Records made by the core (compare + policy) render: bins, tails, MLE, severities."""
    import pyarrow as pa

    from divtransforms.compare import compare
    from divtransforms.policy import Policy
    from divtransforms.profile import ReferenceProfile
    from divtransforms.records import write_records_parquet

    rng = np.random.default_rng(0)
    ref = pa.table({"amount": rng.normal(10, 2, 4000), "country": rng.choice(["DE", "FR"], 4000)})
    profile = ReferenceProfile.build(ref, families={"amount": "normal"}, n_bins=8)
    ts = np.datetime64("2026-11-01T00:00:00") + np.sort(rng.integers(0, 6 * 3600, 6000)).astype(
        "timedelta64[s]"
    )
    shifted = np.r_[rng.normal(10, 2, 3000), rng.normal(13, 2, 3000)]
    cur = pa.table(
        {
            "ts": pa.array(ts.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
            "amount": shifted,
            "country": rng.choice(["DE", "FR", "<XX>"], 6000),
        }
    )
    table = compare(profile, cur, timestamp_column="ts", window="1h", policy=Policy(), run_id="r")
    write_records_parquet(table, tmp_path / "h" / "date=2026-11-01" / "part-r.parquet")
    p = build_payload(tmp_path / "h")
    by_name = {f["name"]: f for f in p["features"]}
    amount, country = by_name["amount"], by_name["country"]
    assert amount["n_windows"] == 6 and amount["breach"]
    assert p["features"][0]["breach"]  # breaches first
    assert amount["histogram"]["labels"] == profile.features["amount"].bins.labels
    assert amount["histogram"]["tail"] == [0, len(amount["histogram"]["labels"]) - 1]
    assert [q["name"] for q in amount["mle"]["params"]] == ["mu", "sigma"]
    mu = amount["mle"]["params"][0]
    assert mu["reference"] == pytest.approx(float(ref["amount"].to_numpy().mean()), rel=1e-5)
    fit = profile.features["amount"].fit
    assert amount["mle"]["fit"] == fit["kl_bits"] and amount["mle"]["fit_quality"] == "good"
    assert "mean: p=" in amount["latest"]["reason"]  # the last hour is shifted
    assert amount["latest"]["severity"] == "critical"
    labels = country["histogram"]["labels"]
    assert [labels[i] for i in country["histogram"]["tail"]] == ["__other__", "__unseen__"]
    assert country["histogram"]["counts"][labels.index("__unseen__")] > 0
    out = render_dashboard(tmp_path / "h", tmp_path / "real.html")
    html = out.read_text(encoding="utf-8")
    assert data_block(html)["n_records"] == table.num_rows
    assert "fit to the reference\n      good" in html and "Why critical:" in html


def test_alert_markers_sit_at_their_windows_judged_value(tmp_path):
    rng = np.random.default_rng(9)
    records = [record("f", i, js=0.01 * (i + 1), rng=rng) for i in range(5)]
    logged = alert("f", 3, "warning", value=0.04)  # the log keeps the plain js_divergence
    root = write_history(tmp_path / "h", records, alerts=[logged])
    f = build_payload(root)["features"][0]
    (marker,) = f["alerts"]
    # window 3's judged (bias-corrected) value, as plotted, not the logged plain value
    assert marker["value"] == pytest.approx(0.04 - 0.002)


def test_quality_lane_and_stale_periods(tmp_path):
    import numpy as np

    from divtransforms import ReferenceProfile, compare
    from divtransforms.records import write_records_parquet

    rng = np.random.default_rng(2)
    profile = ReferenceProfile.build({"x": rng.normal(size=2000)})
    x = rng.normal(size=600)
    x[400:] = np.nan  # the last window loses two thirds of its values
    ts = 1_700_000_000 + np.arange(600) * 36.0  # 600 rows over 6 hours
    table = compare(profile, {"x": x, "ts": ts}, timestamp_column="ts", window="2h", run_id="q")
    history = tmp_path / "h"
    write_records_parquet(table, history / "part-q.parquet")
    alerts = [
        {
            "feature": "__feed__",
            "severity": "stale",
            "window_start": "2023-11-15T00:00:00+00:00",
            "window_end": None,
            "created_at": "2023-11-15T03:00:00+00:00",
            "status": "delivered",
        },
        {
            "feature": "__feed__",
            "severity": "recovered",
            "window_start": "2023-11-15T00:00:00+00:00",
            "window_end": "2023-11-15T06:00:00+00:00",
            "created_at": "2023-11-15T06:00:00+00:00",
            "status": "delivered",
        },
    ]
    (history / "_alerts.json").write_text(json.dumps({"schema_version": 1, "alerts": alerts}))
    p = build_payload(history)
    (f,) = p["features"]
    q = f["quality"]
    assert q["series"]["missing_rate"][-1] == pytest.approx(1.0)
    assert q["series"]["severity"][-1] == 3 and q["latest"]["severity"] == "critical"
    assert "values missing" in q["latest"]["reason"]
    assert p["stale"] == [{"start": 1700006400000, "end": 1700028000000}]
    assert f["alerts"] == []  # the feed's alerts are not a feature's
    html = render_dashboard(history, tmp_path / "d.html").read_text(encoding="utf-8")
    assert 'data-chart="quality"' in html


def test_the_reference_section_says_when_the_reference_rolled(tmp_path):
    rolled = '<b>ref-"rolled"</b>'  # a hostile id: escaped like the rest of the page
    records = [record("x", i) for i in range(6)] + [record("y", i) for i in range(6)]
    for r in records:
        if r["feature"] == "x" and r["window_start"] >= T0 + timedelta(hours=4):
            r["reference_id"] = rolled
    root = write_history(tmp_path / "h", records)
    by_name = {f["name"]: f for f in build_payload(root)["features"]}
    change = by_name["x"]["reference_changes"]
    assert change["count"] == 1 and change["from"] == "ref0123" and change["to"] == rolled
    assert change["window_start"] == int((T0 + timedelta(hours=4)).timestamp() * 1000)
    assert by_name["y"]["reference_changes"] is None
    html = render_dashboard(root, tmp_path / "d.html").read_text(encoding="utf-8")
    assert html.count('class="meta reference-rolled"') == 1
    assert "Reference changed\n      1 time in this" in html
    assert rolled not in html.split('<script type="application/json"', 1)[0]
    assert "&lt;b&gt;ref-&#34;rolled&#34;&lt;/b&gt;" in html
