"""The drift dashboard: one self-contained HTML page (and PNG/SVG charts) from the drift history.

Reads files only (Parquet drift records and ``_alerts.json``); never imports Prefect. The names
below are imported on first use: ``divmon`` registers the ``dashboard`` subcommand
(``flows.dashboard.cli``) for every command, and a reference build or a check should not pay for
the page's imports (jinja2, the chart code).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.dashboard.data import DashboardError, build_payload
    from flows.dashboard.export import render_feature_chart
    from flows.dashboard.page import render_dashboard

__all__ = ["DashboardError", "build_payload", "render_dashboard", "render_feature_chart"]

_WHERE = {
    "DashboardError": "flows.dashboard.data",
    "build_payload": "flows.dashboard.data",
    "render_feature_chart": "flows.dashboard.export",
    "render_dashboard": "flows.dashboard.page",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
