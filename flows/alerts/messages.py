"""Alert messages an on-call person can act on, rendered from the Jinja2 templates in
``flows/templates/`` (shipped in the package; edit them there, not in Python).

:func:`alert_context` turns an alert-log entry into the template variables: the feature, the
severity, the judged value against its threshold, the p-value, n, the window, the reference and a
dashboard link built from ``[dashboard] base_url`` (an http(s) URL another machine can open; a
``{feature}`` placeholder in it is replaced by the URL-quoted feature name, otherwise the link
points at the dashboard's alert log). :class:`Message`, the one renderer every target uses
(``flows.alerts.targets``), renders the subject, a one-line summary, the plain-text and HTML
bodies, Slack blocks and the webhook's plain subject and JSON body. HTML output escapes every
string (autoescape); Slack text escapes ``&``, ``<``, ``>`` as Slack's docs require.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, cached_property
from typing import Any

from divtransforms.policy import judged_values
from flows.alerts.outbox import ALERT_SUMMARY_FIELDS, FEED
from flows.config import MonitorConfig

TEMPLATES = (
    "_headline.j2",
    "subject.txt.j2",
    "summary.txt.j2",
    "body.txt.j2",
    "body.html.j2",
    "slack.json.j2",
)
_COLOURS = {
    "critical": "#cf222e",
    "warning": "#bf8700",
    "stale": "#8250df",
    "persistent": "#bc4c00",
    "recovered": "#1a7f37",
}
_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "stale": ":hourglass:",
    "persistent": ":chart_with_upwards_trend:",
    "recovered": ":white_check_mark:",
}


def _num(value: Any, spec: str = ".4g") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else format(v, spec)


def _pval(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    return "< 1e-16" if v < 1e-16 else format(v, ".2g")


def _count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "n/a"


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else f"{100 * v:.2g}%"


def _slack(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@cache
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("flows", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters.update(num=_num, pval=_pval, count=_count, pct=_pct, slack=_slack)
    return env


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def format_window(start: Any, end: Any) -> str:
    """``2026-03-01 02:00 – 03:00 UTC`` (dates repeated when the window spans days)."""
    s, e = _when(start), _when(end)
    if s is None and e is None:
        return "whole run (no event-time window)"
    if s is None or e is None:
        return f"{start or '…'} – {end or '…'}"
    fmt = "%Y-%m-%d %H:%M:%S" if (s.second or e.second) else "%Y-%m-%d %H:%M"
    end_fmt = fmt[9:] if s.date() == e.date() else fmt
    return f"{s.strftime(fmt)} – {e.strftime(end_fmt)} UTC"


def dashboard_link(base_url: str | None, feature: str) -> str | None:
    if not base_url:
        return None
    if "{feature}" in base_url:
        return base_url.replace("{feature}", urllib.parse.quote(feature, safe=""))
    return base_url.split("#", 1)[0] + "#alerts"


def judged_value(entry: Mapping[str, Any], metric: str) -> float | None:
    """The value the policy compared with the thresholds (``js_divergence``: bias-corrected)."""
    record = entry.get("record") or {}
    if metric == "js_divergence" and record.get("js_divergence") is not None:
        cols = {k: [_float(record.get(k))] for k in ("js_divergence", "js_bias", "js_corrected")}
        value = float(judged_values(cols, metric)[0])
        return None if math.isnan(value) else value
    return entry.get("value")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def alert_context(
    entry: Mapping[str, Any], config: MonitorConfig, *, test: bool = False
) -> dict[str, Any]:
    """The template variables of one alert-log entry."""
    feature = str(entry["feature"])
    severity = str(entry["severity"])
    record = entry.get("record") or {}
    fp = config.build_policy().for_feature(feature)
    critical = severity == "critical"
    metric = entry.get("metric") or fp.metric
    is_feed = feature == FEED
    window = format_window(entry.get("window_start"), entry.get("window_end"))
    if is_feed:  # a stale feed: the window is the time without data
        since = _when(entry.get("window_start"))
        window = "no new data since " + (since.strftime("%Y-%m-%d %H:%M UTC") if since else "-")
        if entry.get("window_end"):
            back = _when(entry.get("window_end"))
            window += ", until " + (back.strftime("%Y-%m-%d %H:%M UTC") if back else "-")
    return {
        "monitor": config.name,
        "feature": feature,
        "severity": severity,
        "severity_label": severity.upper(),
        "is_recovery": severity == "recovered",
        "is_feed": is_feed,
        "test": test,
        "colour": _COLOURS.get(severity, "#59636e"),
        "emoji": _EMOJI.get(severity, ":grey_question:"),
        "metric": metric,
        "metric_label": f"{metric} (bias-corrected)" if metric == "js_divergence" else metric,
        "value": judged_value(entry, metric),
        "warn": fp.warn,
        "critical": fp.critical,
        "threshold": fp.critical if critical else fp.warn,
        "threshold_name": "critical" if critical else "warning",
        "p_value": record.get("p_value"),
        "mle_p_value": record.get("mle_p_value"),
        "n": record.get("n"),
        "n_missing": record.get("n_missing"),
        "n_invalid": record.get("n_invalid"),
        "quality_severity": record.get("quality_severity"),
        "quality_reason": record.get("quality_reason"),
        "quality_alert": record.get("quality_severity") in ("warning", "critical"),
        "schema_issues": [
            {"code": str(i.get("code") or ""), "detail": str(i.get("detail") or "")}
            for i in record.get("schema_issues") or []
        ],
        "missing_rate": record.get("missing_rate"),
        "window_start": entry.get("window_start"),
        "window_end": entry.get("window_end"),
        "window": window,
        "reference_id": entry.get("reference_id") or "-",
        "run_id": entry.get("run_id") or record.get("run_id"),
        "reason": entry.get("reason") or "",
        "dedup_key": entry.get("dedup_key"),
        "created_at": entry.get("created_at"),
        "dashboard_url": dashboard_link(config.dashboard.base_url, feature),
    }


@dataclass(frozen=True)
class Message:
    """The rendered forms of one alert-log entry: every target's message comes from here.

    :meth:`plain` is the webhook's and the notification block's (subject, JSON body), from the
    entry alone; the others are rendered from the templates with :func:`alert_context` (computed
    once, on first use).
    """

    entry: Mapping[str, Any]
    config: MonitorConfig
    test: bool = False

    @classmethod
    def of(cls, entry: Mapping[str, Any], config: MonitorConfig, *, test: bool = False) -> Message:
        return cls(entry, config, test)

    @cached_property
    def context(self) -> dict[str, Any]:
        """The template variables, with the rendered ``subject`` and ``summary``."""
        ctx = alert_context(self.entry, self.config, test=self.test)
        env = environment()
        ctx["subject"] = env.get_template("subject.txt.j2").render(ctx).strip()
        ctx["summary"] = env.get_template("summary.txt.j2").render(ctx).strip()
        return ctx

    def _render(self, name: str) -> str:
        return environment().get_template(name).render(self.context)

    @property
    def subject(self) -> str:
        return self.context["subject"]

    @property
    def summary(self) -> str:
        return self.context["summary"]

    def plain(self) -> tuple[str, str]:
        """(subject, body) of webhook and notification-block targets: ``[divtransforms]
        <severity>: <feature> (<window_start> .. <window_end>)``, and as the body the JSON of the
        entry's summary fields and ``created_at`` (with the dedup key), keys sorted."""
        entry = self.entry
        sev = entry["severity"]
        window = f"{entry.get('window_start') or '-'} .. {entry.get('window_end') or '-'}"
        subject = f"[divtransforms] {sev}: {entry['feature']} ({window})"
        body = json.dumps(
            {k: entry.get(k) for k in (*ALERT_SUMMARY_FIELDS, "created_at")},
            sort_keys=True,
        )
        return subject, body

    def text(self) -> str:
        return self._render("body.txt.j2").strip() + "\n"

    def html(self) -> str:
        return self._render("body.html.j2")

    def slack(self) -> dict[str, Any]:
        """``{"text", "blocks"}`` for a Slack incoming webhook (Block Kit)."""
        return json.loads(self._render("slack.json.j2"))
