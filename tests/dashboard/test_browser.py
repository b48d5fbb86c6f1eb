"""The dashboard opened in a real headless Chromium: loads offline, draws, escapes, scales."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from dash_browser import Page
from dash_histories import (
    alert,
    big_history,
    drifting_history,
    record,
    write_history,
)

from divtransforms.records import records_to_table, write_records_parquet
from flows.dashboard import render_dashboard
from flows.dashboard.serve import DashboardServer

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
UNICODE = "température_°C_温度"
SCRIPT_LABEL = "</script><script>alert(2)</script>"
TITLE = "Drift <script>alert(3)</script> & co"
SCREENSHOTS = Path("/tmp/divtransforms-dashboard-screenshots")

CHART_SIZES = """
Array.from(document.querySelectorAll('article.feature')).flatMap(function (a) {
  return Array.from(a.querySelectorAll('[data-chart]')).map(function (c) {
    var svg = c.querySelector('.main-svg');
    var r = (svg || c).getBoundingClientRect();
    return {feature: a.getAttribute('data-feature-index'), chart: c.getAttribute('data-chart'),
            drawn: !!svg, empty: !!c.querySelector('.empty'), width: r.width, height: r.height,
            plots: c.querySelectorAll('.js-plotly-plot').length +
                   (c.classList.contains('js-plotly-plot') ? 1 : 0)};
  });
})
"""


def open_dashboard(page: Page, path: Path, render_all: bool = True) -> None:
    page.goto(path.resolve().as_uri())
    page.wait_for("window.divtransformsDashboard !== undefined")
    if render_all:
        page.eval("window.divtransformsDashboard.renderAll()")
    page.drain(0.3)


def assert_offline_and_clean(page: Page, url: str) -> None:
    assert page.log.errors() == [], page.log.errors()
    assert url in page.log.requests
    network = [u for u in page.log.requests if u != url and not u.startswith("data:")]
    assert network == [], f"unexpected requests: {network}"
    assert page.eval("performance.getEntriesByType('resource').length") == 0
    assert page.eval("window.divtransformsDashboard.state.errors") == []


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    shot = page.screenshot(tmp_path / name)
    assert shot.stat().st_size > 10_000  # a real rendering, not a blank page
    # A copy outside pytest's rotating tmp dirs, to look at after the run.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / name)
    return shot


@pytest.fixture(scope="module")
def drift_page(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("history")
    names = ["age", XSS, UNICODE, "income"]
    drifting_history(root, names)
    # One more feature whose bin labels try to close the script element.
    rec = record("colour", 0, kind="categorical", js=0.004)
    rec["bin_labels"] = ["red", SCRIPT_LABEL, "blue", "__other__", "__unseen__"]
    write_records_parquet(records_to_table([rec]), root / "date=2026-11-01" / "part-extra.parquet")
    out = render_dashboard(
        root,
        root.parent / "drift.html",
        title=TITLE,
        thresholds={XSS: ("js_divergence", 0.01, 0.05)},
    )
    return out, [*names, "colour"]


def test_page_loads_offline_shows_every_feature_and_draws(page, drift_page, tmp_path):
    path, names = drift_page
    open_dashboard(page, path)
    assert_offline_and_clean(page, path.resolve().as_uri())
    shown = page.eval(
        "Array.from(document.querySelectorAll('#overview-table td.name a'))"
        ".map(function (a) { return a.textContent; })"
    )
    assert sorted(shown) == sorted(names)
    headings = page.eval(
        "Array.from(document.querySelectorAll('article .fname'))"
        ".map(function (e) { return e.textContent; })"
    )
    assert sorted(headings) == sorted(names)
    assert headings[0] == "age"  # the critical feature comes first
    charts = page.eval(CHART_SIZES)
    assert len(charts) == 6 * len(names)  # metric, histogram, MLE, significance, CUSUM, quality
    for c in charts:
        if c["chart"] == "mle" and c["empty"]:
            continue  # categorical features have no MLE family: a message instead
        assert c["drawn"], c
        assert c["width"] > 100 and c["height"] > 100, c
    mle = [c for c in charts if c["chart"] == "mle" and not c["empty"]]
    assert mle and all(c["plots"] == 2 for c in mle)  # normal: mu and sigma
    sparks = page.eval(
        "Array.from(document.querySelectorAll('td.spark svg polyline'))"
        ".map(function (p) { return p.getBoundingClientRect().width; })"
    )
    assert len(sparks) == len(names) and all(w > 0 for w in sparks)
    alert_rows = page.eval("document.querySelectorAll('#alert-table tbody tr').length")
    assert alert_rows == 3
    assert "pending" in page.eval("document.getElementById('alert-table').textContent")
    # Laptop width: nothing wider than the viewport.
    assert page.eval("document.documentElement.scrollWidth") <= 1280
    save_screenshot(page, tmp_path, "dashboard-top.png")
    page.eval("document.getElementById('f-0').scrollIntoView()")
    save_screenshot(page, tmp_path, "dashboard-feature.png")


def test_feature_names_and_labels_render_as_text_and_no_data_script_runs(page, drift_page):
    path, _ = drift_page
    html = path.read_text(encoding="utf-8")
    assert XSS not in html and SCRIPT_LABEL not in html and "<script>alert(3)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # Jinja2 autoescape
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in html  # the JSON block
    open_dashboard(page, path)
    assert page.eval("window.__dialogs") == []
    assert page.eval("document.querySelectorAll('img').length") == 0
    assert page.eval("document.scripts.length") == 3  # data JSON, plotly, the page script
    assert page.eval("document.title") == TITLE
    assert page.eval("document.querySelector('h1').textContent") == TITLE
    names = page.eval(
        "Array.from(document.querySelectorAll('.fname'))"
        ".map(function (e) { return e.textContent; })"
    )
    assert XSS in names and UNICODE in names
    # Plotly draws the bin labels literally (entities, not markup).
    ticks = page.eval(
        "Array.from(document.querySelectorAll('[data-chart=histogram] .xtick'))"
        ".map(function (e) { return e.textContent; })"
    )
    assert SCRIPT_LABEL in ticks
    # The XSS feature's own thresholds were applied (a config keyed by the hostile name).
    xss_index = names.index(XSS)
    meta = page.eval(f"document.querySelector('#f-{xss_index} .meta').textContent")
    assert "warn 0.01" in meta and "critical 0.05" in meta
    # Data travels only as an inert JSON block: parse it back and find the raw strings.
    data = page.eval("JSON.parse(document.getElementById('dashboard-data').textContent)")
    assert {f["name"] for f in data["features"]} >= {XSS, UNICODE}
    assert page.eval("window.__dialogs") == []


def test_empty_history_opens(page, tmp_path):
    root = tmp_path / "history"
    (root / "_state").mkdir(parents=True)
    out = render_dashboard(root, tmp_path / "empty.html")
    open_dashboard(page, out)
    assert_offline_and_clean(page, out.resolve().as_uri())
    assert page.eval("!!document.getElementById('empty-history')")
    assert page.eval("document.querySelectorAll('article.feature').length") == 0
    save_screenshot(page, tmp_path, "dashboard-empty.png")


def test_one_window_opens_and_draws(page, tmp_path):
    root = write_history(tmp_path / "history", [record("only", 0, js=0.01)])
    out = render_dashboard(root, tmp_path / "one.html")
    open_dashboard(page, out)
    assert_offline_and_clean(page, out.resolve().as_uri())
    charts = page.eval(CHART_SIZES)
    assert len(charts) == 6
    for c in charts:  # a hand-made record without quality rates gets a message, not a chart
        if not (c["chart"] in ("quality", "cusum") and c["empty"]):
            assert c["drawn"] and c["width"] > 100 and c["height"] > 100, c


def test_serve_reloads_when_a_run_lands(page, tmp_path):
    root = write_history(tmp_path / "history", [record("first", 0)])
    server = DashboardServer(root, tmp_path / "served.html", port=0, interval=0.2).start()
    try:
        page.goto(server.url)
        page.wait_for("window.divtransformsDashboard !== undefined")
        assert page.eval("document.querySelectorAll('article.feature').length") == 1
        later = record("second", 1)
        later["window_start"] += timedelta(days=1)
        later["window_end"] += timedelta(days=1)
        write_history(root, [later], alerts=[alert("second", 1, "warning", 0.02)])

        def count() -> object:
            try:
                return page.eval("document.querySelectorAll('article.feature').length === 2")
            except RuntimeError:  # evaluated mid-reload
                return False

        deadline_checks = 0
        while not count():
            deadline_checks += 1
            assert deadline_checks < 150, "page did not reload with the new run"
            page.drain(0.1)
        page.drain(0.3)
        assert server.version >= 2
        assert page.log.errors() == []
        hosts = {u.split("/")[2] for u in page.log.requests if not u.startswith("data:")}
        assert hosts == {server.url.split("/")[2]}, page.log.requests
    finally:
        server.stop()


@pytest.mark.slow
def test_ten_thousand_windows_by_fifty_features(page, tmp_path):
    root = big_history(tmp_path / "history", n_windows=10_000, n_features=50)
    out = render_dashboard(root, tmp_path / "big.html")
    size = out.stat().st_size
    assert size < 20_000_000, f"{size / 1e6:.1f} MB"
    payload = json.loads(
        out.read_text(encoding="utf-8").split('id="dashboard-data">', 1)[1].split("</script>")[0]
    )
    assert payload["n_records"] == 500_000
    f0 = payload["features"][0]
    assert f0["n_windows"] == 10_000
    assert len(f0["series"]["t"]) == payload["full_windows"] + f0["n_buckets"]
    assert sum(f0["series"]["size"]) == 10_000
    open_dashboard(page, out, render_all=False)
    assert page.eval("document.querySelectorAll('#overview-table tbody tr').length") == 50
    assert page.eval("document.querySelectorAll('td.spark polyline').length") == 50
    assert page.eval("document.querySelectorAll('.downsampled').length") == 50
    # Lazy drawing: the features near the viewport are drawn at load; then draw them all.
    page.eval("document.getElementById('f-49').scrollIntoView()")
    page.wait_for("document.querySelector('#f-49').getAttribute('data-rendered') === '1'")
    page.eval("window.divtransformsDashboard.renderAll()")
    page.drain(0.3)
    assert_offline_and_clean(page, out.resolve().as_uri())
    charts = page.eval(CHART_SIZES)
    assert len(charts) == 300  # six charts a feature
    assert all(c["drawn"] and c["width"] > 100 and c["height"] > 100 for c in charts)
    page.eval("window.scrollTo(0, 0)")
    save_screenshot(page, tmp_path, "dashboard-big.png")
