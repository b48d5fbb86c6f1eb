"""Static PNG/SVG export of one feature's charts (for e-mail and Slack alerts), with matplotlib.

Uses ``matplotlib.figure.Figure`` with the Agg/SVG canvases directly (no pyplot, no GUI backend,
no global state). Every ``$`` in user text is escaped, so mathtext never interprets a feature name
or a bin label (``$x$`` is shown as typed).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from divtransforms import storage
from divtransforms.records import atomic_write_bytes
from flows.dashboard.data import DashboardError, build_payload

_COLORS = {
    "ok": "#2e7d32",
    "insufficient": "#6d6d6d",
    "warning": "#ef8a00",
    "critical": "#c62828",
    "recovered": "#2e7d32",
}


def _plain(text: object) -> str:
    """User text shown literally by matplotlib (``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


def _dates(ms: list[float | None]) -> list[datetime | None]:
    return [datetime.fromtimestamp(v / 1000.0, UTC) if v is not None else None for v in ms]


def _xy(xs: list[Any], ys: list[Any]) -> tuple[list[Any], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def render_feature_chart(
    history_dir: str | Path,
    feature: str,
    path: str | Path,
    *,
    thresholds: Mapping[str, Any] | None = None,
    alerts_path: str | Path | None = None,
    dpi: int = 110,
) -> storage.Location:
    """Write ``feature``'s charts (metric, histogram, first MLE parameter, p-value/n) to ``path``.

    The format follows the suffix: ``.png`` or ``.svg``. Written atomically; returns the path.
    Raises :class:`DashboardError` when the feature has no records in ``history_dir``.
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    path = storage.location(path)
    fmt = storage.name(path).rsplit(".", 1)[-1].lower() if "." in storage.name(path) else ""
    if fmt not in ("png", "svg"):
        raise DashboardError(f"chart export: {path} must end in .png or .svg")
    payload = build_payload(
        history_dir, thresholds=thresholds, alerts_path=alerts_path, features=[feature]
    )
    if not payload["features"]:
        raise DashboardError(f"feature {feature!r} has no drift records in {history_dir}")
    f = payload["features"][0]
    s = f["series"]
    thr = f["threshold"]
    t = _dates(s["t"])
    with rc_context({"font.size": 8}):
        fig = Figure(figsize=(11, 6.2), layout="constrained")
        axes = fig.subplots(2, 2)
        fig.suptitle(
            _plain(
                f"{f['name']}: {f['latest']['severity']} "
                f"({f['judged']} {_fmt(f['latest']['metric'])})"
            ),
            color=_COLORS.get(f["latest"]["severity"], "black"),
            fontsize=11,
        )

        ax = axes[0][0]
        x, y = _xy(t, s["metric"])
        ax.plot(x, y, color="#1f5fbf", lw=1.2, label=_plain(f["judged"]))
        if f["n_buckets"]:
            xb, lo = _xy(t, s["metric_min"])
            _, hi = _xy(t, s["metric_max"])
            if len(lo) == len(hi):
                ax.fill_between(xb, lo, hi, color="#1f5fbf", alpha=0.15, lw=0)
        ax.axhline(thr["warn"], color=_COLORS["warning"], ls="--", lw=1, label="warn")
        ax.axhline(thr["critical"], color=_COLORS["critical"], ls="--", lw=1, label="critical")
        for a in f["alerts"]:
            if a["value"] is not None:
                ax.scatter(
                    _dates([a["time"]]),
                    [a["value"]],
                    marker="D",
                    s=28,
                    facecolors="none",
                    edgecolors=_COLORS.get(a["severity"], "black"),
                )
        ax.set_title(_plain(f"{f['judged']} over time"), fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        ax.tick_params(axis="x", labelrotation=20)

        ax = axes[0][1]
        h = f["histogram"]
        if h["labels"]:
            idx = list(range(len(h["labels"])))
            for counts, offset, color, label in (
                (h["reference_counts"], -0.2, "#9aa3b2", "reference"),
                (h["counts"], 0.2, "#1f5fbf", "latest window"),
            ):
                total = sum(counts) or 1
                bars = ax.bar(
                    [i + offset for i in idx],
                    [c / total for c in counts],
                    width=0.4,
                    color=color,
                    label=label,
                )
                for i in h["tail"]:
                    bars[i].set_hatch("///")
            ax.set_xticks(
                idx, [_plain(x) for x in h["labels"]], rotation=60, ha="right", fontsize=6
            )
            ax.legend(fontsize=7)
        ax.set_title(
            "latest window vs reference (share per bin; hatched = tails/unseen)", fontsize=9
        )

        ax = axes[1][0]
        mle = f["mle"]
        if mle and mle["params"]:
            prm = mle["params"][0]
            x, y = _xy(t, prm["running"])
            ax.plot(x, y, color="#1f5fbf", lw=1.2, label=_plain(f"running {prm['name']}"))
            band = [
                (tt, r - 1.96 * se, r + 1.96 * se)
                for tt, r, se in zip(t, prm["running"], prm["running_se"], strict=True)
                if tt is not None and r is not None and se is not None
            ]
            if band:
                ax.fill_between(
                    [b[0] for b in band],
                    [b[1] for b in band],
                    [b[2] for b in band],
                    color="#1f5fbf",
                    alpha=0.15,
                    lw=0,
                )
            if prm["reference"] is not None:
                ax.axhline(prm["reference"], color="black", ls=":", lw=1, label="reference")
            ax.legend(fontsize=7)
            ax.set_title(_plain(f"running MLE {mle['family']} {prm['name']} ±1.96 SE"), fontsize=9)
        else:
            ax.set_title("no MLE family configured", fontsize=9)
        ax.tick_params(axis="x", labelrotation=20)

        ax = axes[1][1]
        x, n = _xy(t, s["n"])
        ax2 = ax.twinx()
        if x:
            ax2.plot(x, n, color="#9aa3b2", lw=1, label="n")
        x, p = _xy(t, s["p_value"])
        p = [max(v, 1e-300) for v in p]
        if x:
            ax.plot(x, p, color="#7b1fa2", lw=1.2, label="p-value")
            ax.set_yscale("log")
        ax.axhline(0.05, color="#7b1fa2", ls=":", lw=0.8)
        ax.set_ylabel("p-value")
        ax2.set_ylabel("n")
        ax.set_title("p-value and sample size", fontsize=9)
        ax.tick_params(axis="x", labelrotation=20)

        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"
