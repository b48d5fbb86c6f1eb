"""Render the drift history as one self-contained HTML page (Jinja2 + inlined Plotly.js)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from divtransforms.records import atomic_write_bytes
from divtransforms.storage import Location
from flows.dashboard.assets import APP_JS, PAGE_TEMPLATE, STYLE_CSS
from flows.dashboard.data import BUCKETS, FULL_WINDOWS, build_payload

log = logging.getLogger(__name__)

_JSON_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def script_json(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e`` and ``\\u0026`` (still the same JSON
    value), so no string in the data can close the script element or open a comment.
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_ESCAPES)


@lru_cache(maxsize=1)
def _plotly() -> tuple[str, str]:
    """The bundled plotly.min.js (from the plotly wheel; no network) and its version."""
    import plotly
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    # Defensive: the bundle must not be able to end its own <script> element.
    js = js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return js, plotly.__version__


def _fmt_num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e6:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _fmt_count(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{int(value):,}"


def _fmt_pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.1%}"


def _fmt_ts(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return datetime.fromtimestamp(float(value) / 1000.0, UTC).strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_fmt_num, cnt=_fmt_count, pct=_fmt_pct, ts=_fmt_ts)
    return env


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(payload: Mapping[str, Any], *, live: Mapping[str, Any] | None = None) -> str:
    """The page for a payload from :func:`flows.dashboard.data.build_payload`."""
    plotly_js, plotly_version = _plotly()
    data = dict(payload)
    if live is not None:
        data["live"] = dict(live)
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(plotly_js)} {_sha256(APP_JS)}",
            "style-src 'unsafe-inline'",
            "img-src data:",
            "font-src data:",
            "connect-src 'self'" if live else "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    template = _environment().from_string(PAGE_TEMPLATE)
    return template.render(
        p=payload,
        csp=csp,
        css=Markup(STYLE_CSS),
        data_json=Markup(script_json(data)),
        plotly_js=Markup(plotly_js),
        app_js=Markup(APP_JS),
        plotly_version=plotly_version,
    )


def render_dashboard(
    history_dir: str | Path,
    output_path: str | Path,
    *,
    thresholds: Mapping[str, Any] | None = None,
    alerts_path: str | Path | None = None,
    title: str = "Drift dashboard",
    full_windows: int = FULL_WINDOWS,
    buckets: int = BUCKETS,
    live: Mapping[str, Any] | None = None,
) -> Location:
    """Write the drift dashboard for ``history_dir`` to ``output_path`` (one HTML file).

    ``history_dir`` holds drift records (``date=YYYY-MM-DD/part-*.parquet``) and optionally the
    alert log ``_alerts.json`` (or pass ``alerts_path``). ``thresholds`` maps a feature (``"*"``
    for the default) to ``(metric, warn, critical)``; the metric is any float column of the
    records (default ``js_divergence``). Per feature, the last ``full_windows`` windows are drawn
    at full resolution and older ones in at most ``buckets`` buckets. ``live`` (used by
    ``divmon dashboard --serve``: ``{"url", "version", "interval_ms"}``) makes the page poll the
    server and reload when a new version is rendered.

    The file is self-contained (inline scripts and styles, nothing fetched) and written
    atomically. Returns the output path.
    """
    started = time.perf_counter()
    payload = build_payload(
        history_dir,
        thresholds=thresholds,
        alerts_path=alerts_path,
        title=title,
        full_windows=full_windows,
        buckets=buckets,
    )
    html = render_html(payload, live=live)
    out = atomic_write_bytes(output_path, html.encode("utf-8"))
    log.info(
        "dashboard: %d features, %d records, %d alerts -> %s (%.1f MB, %.2f s)",
        payload["n_features"],
        payload["n_records"],
        payload["n_alerts"],
        out,
        len(html.encode("utf-8")) / 1e6,
        time.perf_counter() - started,
    )
    return out
