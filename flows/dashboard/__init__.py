"""The drift dashboard: one self-contained HTML page (and PNG/SVG charts) from the drift history.

Reads files only (Parquet drift records and ``_alerts.json``); never imports Prefect.
"""

from flows.dashboard.data import DashboardError, build_payload
from flows.dashboard.export import render_feature_chart
from flows.dashboard.page import render_dashboard

__all__ = ["DashboardError", "build_payload", "render_dashboard", "render_feature_chart"]
