"""The dashboard's quality lane: data-quality rates, quality severities, schema issues, stale feeds.

Per feature (``quality_payload``): the missing, invalid and unseen rates and the quality severity
per window (bucketed like the other series: rates averaged, the worst severity kept), and the
latest window's quality verdict and schema issues. For the monitor (``stale_periods``): the
periods a feed was stale, from the alert log's ``stale`` and ``recovered`` alerts of ``__feed__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from divtransforms.records import SEVERITIES

__all__ = ["FEED", "QUALITY_COLUMNS", "quality_payload", "stale_periods"]

FEED = "__feed__"  # flows.alerts.outbox.FEED (the dashboard does not import the flows' modules)
QUALITY_COLUMNS = [
    "quality_severity",
    "quality_reason",
    "invalid_rate",
    "unseen_rate",
    "schema_issues",
]


def _rates(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(
        table[name].to_numpy(zero_copy_only=False), dtype=np.float64
    )  # nulls (old records) -> NaN


def quality_payload(table: pa.Table, rows: np.ndarray, series: Any) -> dict[str, Any]:
    """``{"series": {...}, "latest": {...}}`` of one feature's rows (``_feature_payload``)."""
    last = int(rows[-1])
    codes = np.array(
        [
            SEVERITIES.index(s) if s in SEVERITIES else 0
            for s in table["quality_severity"].take(pa.array(rows)).to_pylist()
        ],
        dtype=float,
    )

    def reduced(name: str) -> list[float | None]:
        values = series.reduce(_rates(table, name)[rows], "mean")
        return [float(v) if np.isfinite(v) else None for v in values.tolist()]

    issues = table["schema_issues"][last].as_py() or []
    return {
        "series": {
            "missing_rate": reduced("missing_rate"),
            "invalid_rate": reduced("invalid_rate"),
            "unseen_rate": reduced("unseen_rate"),
            "severity": [int(v) for v in series.reduce(codes, "max").tolist()],
        },
        "latest": {
            "severity": table["quality_severity"][last].as_py() or "unassessed",
            "reason": table["quality_reason"][last].as_py(),
            "issues": [f"{i['code']}: {i['detail']}" for i in issues],
        },
    }


def stale_periods(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"start": ms, "end": ms or None}]``: when the feed was stale (None: still is)."""
    feed = [a for a in alerts if a.get("feature") == FEED]
    ended = {
        a.get("window_start"): a.get("window_end") for a in feed if a["severity"] == "recovered"
    }
    out = [
        {"start": a.get("window_start"), "end": ended.get(a.get("window_start"))}
        for a in feed
        if a["severity"] == "stale" and a.get("window_start") is not None
    ]
    return sorted(out, key=lambda p: p["start"])
