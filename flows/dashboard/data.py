"""Turn the drift history and the alert log into the compact JSON the dashboard page draws.

Reads files only (Parquet drift records through :func:`divtransforms.records.read_records`, the
alert log ``<history>/_alerts.json``); no Prefect, no Beam. All per-window work is vectorised with
pyarrow/numpy: a 10,000-window x 50-feature history (500,000 records) is one sort plus one
``numpy`` pass per feature.

Big histories are reduced per feature before they reach the page: the last ``full_windows``
windows stay at full resolution; older windows are grouped into at most ``buckets`` equal-count
buckets, each drawn as its mean with a min/max band (sample counts are summed, the smallest p-value
and the worst severity are kept, running MLE estimates take the bucket's last value, since they are
cumulative). The page says when and how a feature was reduced.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from divtransforms import storage
from divtransforms.inference import FIT_QUALITY
from divtransforms.policy import FeaturePolicy, Policy, judged_values
from divtransforms.records import DRIFT_RECORD_SCHEMA, SEVERITIES, SEVERITY_RANK, read_records
from flows.dashboard.quality import FEED, QUALITY_COLUMNS, quality_payload, stale_periods

_POLICY_DEFAULT = FeaturePolicy()

log = logging.getLogger(__name__)

ALERTS_FILE = "_alerts.json"
#: Defaults follow the alert policy's (``divtransforms.policy.FeaturePolicy``): the same metric
#: and floors the severities in the records were decided with.
DEFAULT_METRIC = _POLICY_DEFAULT.metric
DEFAULT_WARN = _POLICY_DEFAULT.warn
DEFAULT_CRITICAL = _POLICY_DEFAULT.critical
#: Order used to rank features (breaches first) and to pick a bucket's worst severity.
FULL_WINDOWS = 300
BUCKETS = 200
SPARK_POINTS = 60
MAX_ALERT_ROWS = 500
NUMERIC_METRICS = tuple(f.name for f in DRIFT_RECORD_SCHEMA if pa.types.is_float64(f.type))

#: The sequential detector's record fields the page draws (``divtransforms.sequential``).
CUSUM_COLUMNS = [
    "cusum",
    "cusum_threshold",
    "cusum_histogram",
    "cusum_histogram_threshold",
    "cusum_alarm",
    "cusum_change_point",
]
_COLUMNS = [
    "feature",
    "kind",
    "window_start",
    "window_end",
    "pane",
    "created_at",
    "run_id",
    "reference_id",
    "n",
    "n_missing",
    "missing_rate",
    "n_reference",
    "js_divergence",
    "js_corrected",
    "js_bias",
    "p_value",
    "g_statistic",
    "dof",
    "mle_family",
    "mle_p_value",
    "mle_fit",
    "severity",
    "severity_reason",
    *QUALITY_COLUMNS,
    *CUSUM_COLUMNS,
]


def fit_quality(kl_bits: float | None) -> str | None:
    """The label of a family's fit to its reference (``divtransforms.inference.FIT_QUALITY``)."""
    if kl_bits is None or not math.isfinite(kl_bits):
        return None
    return next(label for label, bound in FIT_QUALITY if kl_bits <= bound)


class DashboardError(ValueError):
    """The history, the alert log or the thresholds cannot be turned into a dashboard."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    warn: float
    critical: float


def resolve_thresholds(
    thresholds: Mapping[str, Any] | None,
) -> tuple[Threshold, dict[str, Threshold]]:
    """Validate ``{feature: (metric, warn, critical)}`` (key ``"*"`` = default)."""
    default = Threshold(DEFAULT_METRIC, DEFAULT_WARN, DEFAULT_CRITICAL)
    per_feature: dict[str, Threshold] = {}
    for key, value in (thresholds or {}).items():
        try:
            metric, warn, critical = value
            item = Threshold(str(metric), float(warn), float(critical))
        except (TypeError, ValueError) as exc:
            raise DashboardError(
                f"thresholds[{key!r}]: expected (metric, warn, critical), got {value!r}"
            ) from exc
        if item.metric not in NUMERIC_METRICS:
            raise DashboardError(
                f"thresholds[{key!r}]: unknown metric {item.metric!r}; one of {NUMERIC_METRICS}"
            )
        if not (math.isfinite(item.warn) and math.isfinite(item.critical)):
            raise DashboardError(f"thresholds[{key!r}]: warn/critical must be finite numbers")
        if item.warn > item.critical:
            raise DashboardError(
                f"thresholds[{key!r}]: warn {item.warn} is above critical {item.critical}"
            )
        if key == "*":
            default = item
        else:
            per_feature[str(key)] = item
    return default, per_feature


def load_alerts(path: str | Path) -> list[dict[str, Any]]:
    """Read the alert log (``{"schema_version": 1, "alerts": [...]}``); missing file = no alerts."""
    try:
        doc = json.loads(storage.read_bytes(path).decode("utf-8"))
    except storage.StorageNotFound:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DashboardError(f"cannot read alert log {path}: {exc}") from exc
    if isinstance(doc, list):  # tolerate a bare list of alerts
        alerts = doc
    elif isinstance(doc, dict):
        version = doc.get("schema_version", 1)
        if version != 1:
            raise DashboardError(f"alert log {path}: unsupported schema_version {version!r}")
        alerts = doc.get("alerts", [])
    else:
        raise DashboardError(f"alert log {path}: expected an object with 'alerts'")
    if not isinstance(alerts, list):
        raise DashboardError(f"alert log {path}: 'alerts' must be a list")
    rows = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise DashboardError(f"alert log {path}: entry {i} is not an object")
        value = alert.get("value")
        rows.append(
            {
                "time": _epoch_ms(
                    alert.get("window_end") or alert.get("window_start") or alert.get("created_at"),
                    path,
                    i,
                ),
                "created_at": _epoch_ms(alert.get("created_at"), path, i),
                "window_start": _epoch_ms(alert.get("window_start"), path, i),
                "window_end": _epoch_ms(alert.get("window_end"), path, i),
                "feature": str(alert.get("feature", "")),
                "severity": str(alert.get("severity", "")),
                "metric": str(alert.get("metric", "")),
                "value": _num(value) if isinstance(value, int | float) else None,
                "status": str(alert.get("status", "")),
                "attempts": alert.get("attempts")
                if isinstance(alert.get("attempts"), int)
                else None,
                "targets": [str(t) for t in alert.get("targets") or []],
            }
        )
    rows.sort(key=lambda r: r["created_at"] or r["time"] or 0, reverse=True)
    return rows


def _epoch_ms(value: Any, path: str | Path, i: int) -> int | None:
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise DashboardError(f"alert log {path}: entry {i} has a bad timestamp {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _num(value: Any) -> float | None:
    """A JSON-safe float with 6 significant digits (None for NaN/inf/None)."""
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


def _nums(arr: np.ndarray) -> list[float | None]:
    return [_num(v) for v in np.asarray(arr, dtype=float).tolist()]


def _times(arr: np.ndarray) -> list[int | None]:
    """Epoch milliseconds as exact integers (None for NaN): never rounded like metric values."""
    return [round(v) if math.isfinite(v) else None for v in np.asarray(arr, dtype=float).tolist()]


def _ts_ms(column: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as float epoch milliseconds (NaN for null)."""
    arr = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
    values = np.asarray(arr, dtype=float)
    if column.null_count:
        values[np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False))] = np.nan
    return values / 1000.0  # us -> ms


def _float_col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False), float)


def _bucket_bounds(n_old: int, buckets: int) -> np.ndarray:
    """Start offsets of at most ``buckets`` equal-count buckets over ``n_old`` windows."""
    k = min(buckets, n_old)
    return np.unique(np.linspace(0, n_old, k + 1).astype(int)[:-1])


def _reduce(values: np.ndarray, starts: np.ndarray, how: str) -> np.ndarray:
    """Per-bucket reduction ignoring NaN (NaN when a bucket has no finite value)."""
    if values.size == 0:
        return values
    finite = np.isfinite(values)
    if how == "last":
        return values[np.r_[starts[1:], values.size] - 1]
    if how == "sum":
        return np.add.reduceat(np.where(finite, values, 0.0), starts)
    if how == "mean":
        total = np.add.reduceat(np.where(finite, values, 0.0), starts)
        count = np.add.reduceat(finite.astype(float), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fill = np.inf if how == "min" else -np.inf
    ufunc = np.minimum if how == "min" else np.maximum
    out = ufunc.reduceat(np.where(finite, values, fill), starts)
    return np.where(np.isfinite(out), out, np.nan)


class _Series:
    """One feature's windows in time order, reduced for the page (full tail + bucketed head)."""

    def __init__(self, times: np.ndarray, full_windows: int, buckets: int) -> None:
        self.n_windows = times.size
        self.n_old = max(0, times.size - full_windows)
        self.starts = _bucket_bounds(self.n_old, buckets) if self.n_old else np.array([], int)
        self.n_buckets = int(self.starts.size)

    def reduce(self, values: np.ndarray, how: str = "mean") -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if not self.n_old:
            return values
        head = _reduce(values[: self.n_old], self.starts, how)
        return np.concatenate([head, values[self.n_old :]])

    def bucket_sizes(self) -> list[int]:
        if not self.n_old:
            return [1] * self.n_windows
        sizes = np.diff(np.r_[self.starts, self.n_old]).tolist()
        return sizes + [1] * (self.n_windows - self.n_old)


def _latest_per_window(table: pa.Table) -> pa.Table:
    """Keep one record per (feature, window): the latest pane / the latest written run."""
    if table.num_rows == 0:
        return table
    table = table.sort_by(
        [
            ("feature", "ascending"),
            ("window_start", "ascending"),
            ("window_end", "ascending"),
            ("pane", "ascending"),
            ("created_at", "ascending"),
        ]
    )
    feat = table["feature"].to_numpy(zero_copy_only=False)
    ws = _ts_ms(table["window_start"])
    we = _ts_ms(table["window_end"])
    created = _ts_ms(table["created_at"])
    # Records of the single global window (no start/end) are distinct runs: keep each one.
    ws_key = np.where(np.isnan(ws), -1.0, ws)
    we_key = np.where(np.isnan(we) & np.isnan(ws), created, np.where(np.isnan(we), -1.0, we))
    same_next = np.zeros(table.num_rows, dtype=bool)
    same_next[:-1] = (
        (feat[:-1] == feat[1:]) & (ws_key[:-1] == ws_key[1:]) & (we_key[:-1] == we_key[1:])
    )
    keep = np.flatnonzero(~same_next)
    return table.take(pa.array(keep))


def _mle_series(table: pa.Table, rows: np.ndarray, series: _Series) -> dict[str, Any] | None:
    """Running/window MLE parameters over time for one feature's rows (in time order)."""
    sub = table.select(["mle_params", "mle_family", "mle_fit"]).take(pa.array(rows))
    params = sub["mle_params"].combine_chunks()
    if params.null_count == len(params):
        return None
    flat = pc.list_flatten(params)
    if len(flat) == 0:
        return None
    parent = np.asarray(pc.list_parent_indices(params).to_numpy(zero_copy_only=False))
    names = np.asarray(flat.field("name").to_numpy(zero_copy_only=False), dtype=object)
    fields = {
        f: np.asarray(pc.cast(flat.field(f), pa.float64()).to_numpy(zero_copy_only=False), float)
        for f in (
            "reference",
            "reference_se",
            "window",
            "window_se",
            "running",
            "running_se",
            "z",
            "p_value",
        )
    }
    family = next((f for f in sub["mle_family"].to_pylist()[::-1] if f), None)
    fit = next((f for f in sub["mle_fit"].to_pylist()[::-1] if f is not None), None)
    out = []
    for name in dict.fromkeys(names.tolist()):
        mask = names == name
        idx = parent[mask]
        full = {f: np.full(rows.size, np.nan) for f in fields}
        for f, values in fields.items():
            full[f][idx] = values[mask]
        last = idx.max()
        out.append(
            {
                "name": str(name),
                "reference": _num(full["reference"][last]),
                "reference_se": _num(full["reference_se"][last]),
                "running": _nums(series.reduce(full["running"], "last")),
                "running_se": _nums(series.reduce(full["running_se"], "last")),
                "window": _nums(series.reduce(full["window"], "mean")),
                "latest_z": _num(full["z"][last]),
                "latest_p": _num(full["p_value"][last]),
            }
        )
    return {"family": family, "params": out, "fit": fit, "fit_quality": fit_quality(fit)}


def _cusum_series(table: pa.Table, rows: np.ndarray, series: _Series) -> dict[str, Any] | None:
    """The sequential detector's path (``divtransforms.sequential``): each detector's statistic
    and threshold per window (a bucket: its largest), and the latest alarm with its change point.
    None when no window was counted by a detector."""
    cols = {c: _float_col(table, c)[rows] for c in CUSUM_COLUMNS[:4]}
    if not (np.isfinite(cols["cusum"]).any() or np.isfinite(cols["cusum_histogram"]).any()):
        return None
    last = int(rows[-1])
    change = _ts_ms(table["cusum_change_point"].slice(last, 1))
    return {
        "statistic": _nums(series.reduce(cols["cusum"], "max")),
        "threshold": _nums(series.reduce(cols["cusum_threshold"], "max")),
        "histogram": _nums(series.reduce(cols["cusum_histogram"], "max")),
        "histogram_threshold": _nums(series.reduce(cols["cusum_histogram_threshold"], "max")),
        "alarm": table["cusum_alarm"][last].as_py(),
        "change_point": _times(change)[0],
    }


def _sparkline(values: np.ndarray, points: int) -> list[float | None]:
    """The metric over time squeezed to ``points`` values (bucket maxima, so spikes show)."""
    values = np.asarray(values, dtype=float)
    if values.size <= points:
        return _nums(values)
    return _nums(_reduce(values, _bucket_bounds(values.size, points), "max"))


def build_payload(
    history_dir: str | Path,
    *,
    thresholds: Mapping[str, Any] | None = None,
    alerts_path: str | Path | None = None,
    title: str = "Drift dashboard",
    full_windows: int = FULL_WINDOWS,
    buckets: int = BUCKETS,
    features: Collection[str] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data (no HTML).

    ``features`` restricts the output to those feature names (default: all).
    """
    history_dir = storage.location(history_dir)
    if not storage.isdir(history_dir):
        raise DashboardError(f"history directory {history_dir} does not exist")
    default, per_feature = resolve_thresholds(thresholds)
    alerts_file = (
        storage.location(alerts_path)
        if alerts_path is not None
        else storage.join(history_dir, ALERTS_FILE)
    )
    alerts = load_alerts(alerts_file)
    table = read_records(history_dir)
    if features is not None:
        table = table.filter(pc.is_in(table["feature"], pa.array(list(features), pa.string())))
    n_records = table.num_rows
    table = _latest_per_window(table)
    metrics_needed = {t.metric for t in [default, *per_feature.values()]}
    table = table.select(
        list(
            dict.fromkeys(
                [
                    *_COLUMNS,
                    *sorted(metrics_needed),
                    "counts",
                    "reference_counts",
                    "bin_labels",
                    "mle_params",
                ]
            )
        )
    )

    out_features: list[dict[str, Any]] = []
    if table.num_rows:
        feat = table["feature"].to_numpy(zero_copy_only=False)
        ws, we, created = (_ts_ms(table[c]) for c in ("window_start", "window_end", "created_at"))
        t = np.where(np.isnan(we), np.where(np.isnan(ws), created, ws), we)
        numeric = {
            c: _float_col(table, c)
            for c in (
                "n",
                "n_missing",
                "missing_rate",
                "js_divergence",
                "js_corrected",
                "js_bias",
                "p_value",
                "n_reference",
                *metrics_needed,
            )
        }
        # Records written without a policy carry no severity: say so rather than "ok".
        severity = np.asarray(
            [s or "unassessed" for s in table["severity"].to_pylist()], dtype=object
        )
        sev_code = np.array(
            [SEVERITIES.index(s) if s in SEVERITIES else 0 for s in severity], dtype=float
        )
        order = np.lexsort((t, feat))
        feat_sorted = feat[order]
        bounds = np.flatnonzero(np.r_[True, feat_sorted[1:] != feat_sorted[:-1], True])
        alerts_by_feature: dict[str, list[dict[str, Any]]] = {}
        for a in alerts:
            if a["feature"] != FEED:
                alerts_by_feature.setdefault(a["feature"], []).append(a)
        for lo, hi in itertools.pairwise(bounds):
            rows = order[lo:hi]
            name = str(feat_sorted[lo])
            thr = per_feature.get(name, default)
            out_features.append(
                _feature_payload(
                    table,
                    name,
                    rows,
                    t,
                    numeric,
                    severity,
                    sev_code,
                    thr,
                    alerts_by_feature.get(name, []),
                    full_windows,
                    buckets,
                )
            )
        out_features.sort(
            key=lambda f: (
                -SEVERITY_RANK.get(f["latest"]["severity"], 0),
                -(f["latest"]["metric"] or 0.0),
                f["name"],
            )
        )
    n_alert_rows = len(alerts)
    return {
        "schema_version": 1,
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": str(history_dir),
        "n_records": n_records,
        "n_features": len(out_features),
        "n_breaches": sum(f["breach"] for f in out_features),
        "full_windows": full_windows,
        "buckets": buckets,
        "default_threshold": {
            "metric": default.metric,
            "warn": default.warn,
            "critical": default.critical,
        },
        "features": out_features,
        "alerts": alerts[:MAX_ALERT_ROWS],
        "n_alerts": n_alert_rows,
        "stale": stale_periods(alerts),
        "n_alerts_pending": sum(a["status"] != "delivered" for a in alerts),
    }


def judged_label(metric: str) -> str:
    return "js_divergence, bias-corrected" if metric == "js_divergence" else metric


def thresholds_from_policy(policy: Policy | Mapping[str, Any]) -> dict[str, tuple]:
    """``{feature: (metric, warn, critical)}`` (``"*"`` = default) from an alert policy.

    ``policy`` is a ``divtransforms.policy.Policy`` or its dict form
    (``{"default": {...}, "features": {...}}``).
    """
    if not isinstance(policy, Policy):
        policy = Policy.from_dict(policy)
    out = {"*": (policy.default.metric, policy.default.warn, policy.default.critical)}
    for name, fp in policy.features.items():
        out[name] = (fp.metric, fp.warn, fp.critical)
    return out


def _reference_changes(table, rows) -> dict[str, Any] | None:
    """When the reference that judged a feature's windows changed (a rolling reference rolled,
    or the seed was rebuilt): how many times in the history, and the latest change: the first
    window judged by the new reference, and the reference before it (None: never changed)."""
    ids = np.asarray(
        table["reference_id"].take(pa.array(rows, pa.int64())).to_numpy(zero_copy_only=False),
        dtype=object,
    )
    at = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    if not at.size:
        return None
    k = int(at[-1])
    start = _times(_ts_ms(table["window_start"].slice(int(rows[k]), 1)))[0]
    return {"count": int(at.size), "window_start": start, "to": ids[k], "from": ids[k - 1]}


def _feature_payload(
    table, name, rows, t, numeric, severity, sev_code, thr, alerts, full_windows, buckets
) -> dict[str, Any]:
    times = t[rows]
    series = _Series(times, full_windows, buckets)
    metric = judged_values(numeric, thr.metric)[rows]
    raw = numeric[thr.metric][rows] if thr.metric == "js_divergence" else None
    last = int(rows[-1])
    kind = table["kind"][last].as_py()
    labels = table["bin_labels"][last].as_py() or []
    counts = table["counts"][last].as_py() or []
    ref_counts = table["reference_counts"][last].as_py() or []
    latest_sev = str(severity[last])
    # An alert is drawn at its window's judged value (the log keeps the plain metric value).
    judged_at = dict(zip(times.tolist(), metric.tolist(), strict=True))
    return {
        "name": name,
        "kind": kind,
        "threshold": {"metric": thr.metric, "warn": thr.warn, "critical": thr.critical},
        "judged": judged_label(thr.metric),
        "breach": latest_sev in ("warning", "critical"),
        "n_windows": int(rows.size),
        "n_buckets": series.n_buckets,
        "n_bucketed_windows": series.n_old,
        "latest": {
            "time": _times(t[last : last + 1])[0],
            "window_start": _times(_ts_ms(table["window_start"].slice(last, 1)))[0],
            "window_end": _times(_ts_ms(table["window_end"].slice(last, 1)))[0],
            "severity": latest_sev,
            "metric": _num(metric[-1]),
            "js_divergence": _num(numeric["js_divergence"][last]),
            "js_corrected": _num(numeric["js_corrected"][last]),
            "p_value": _num(numeric["p_value"][last]),
            "n": _num(numeric["n"][last]),
            "n_reference": _num(numeric["n_reference"][last]),
            "missing_rate": _num(numeric["missing_rate"][last]),
            "run_id": table["run_id"][last].as_py(),
            "reference_id": table["reference_id"][last].as_py(),
            "reason": table["severity_reason"][last].as_py(),
        },
        "reference_changes": _reference_changes(table, rows),
        "spark": _sparkline(metric, SPARK_POINTS),
        "series": {
            "t": _times(series.reduce(times, "mean")),
            "metric": _nums(series.reduce(metric, "mean")),
            "metric_min": _nums(series.reduce(metric, "min")),
            "metric_max": _nums(series.reduce(metric, "max")),
            "raw": _nums(series.reduce(raw, "mean")) if raw is not None else None,
            "n": _nums(series.reduce(numeric["n"][rows], "sum")),
            "p_value": _nums(series.reduce(numeric["p_value"][rows], "min")),
            "severity": [
                int(v) if np.isfinite(v) else 0
                for v in series.reduce(sev_code[rows], "max").tolist()
            ],
            "size": series.bucket_sizes(),
        },
        "histogram": {
            "labels": [str(x) for x in labels],
            "counts": [int(c or 0) for c in counts],
            "reference_counts": [int(c or 0) for c in ref_counts],
            "tail": _tail_bins(kind, labels),
        },
        "mle": _mle_series(table, rows, series),
        "cusum": _cusum_series(table, rows, series),
        "quality": quality_payload(table, rows, series),
        "alerts": [
            {
                "time": a["time"],
                "severity": a["severity"],
                "value": _num(judged_at.get(float(a["time"]), a["value"])),
                "status": a["status"],
            }
            for a in alerts
            if a["time"] is not None
        ],
    }


def _tail_bins(kind: str | None, labels: list[Any]) -> list[int]:
    """Indices of the bins outside the reference's range: under/overflow, other/unseen."""
    k = len(labels)
    if k == 0:
        return []
    if kind == "categorical":
        return [i for i, lab in enumerate(labels) if str(lab) in ("__other__", "__unseen__")]
    return sorted({0, k - 1}) if k >= 2 else [0]
