"""Synthetic drift histories for the dashboard tests, written with divtransforms.records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from divtransforms.records import (
    DRIFT_RECORD_SCHEMA,
    atomic_write_json,
    records_to_table,
    write_records_parquet,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NUMERIC_LABELS = ["< 0", *[f"[{i}, {i + 1})" for i in range(8)], "> 8"]
CATEGORY_LABELS = ["red", "green", "blue", "__other__", "__unseen__"]


def _params(rng: np.random.Generator, i: int, shift: float) -> list[dict]:
    out = []
    for name, ref, se in (("mu", 4.0, 0.02), ("sigma", 1.5, 0.015)):
        window = ref + shift * (name == "mu") + rng.normal(0, se * 3)
        running = ref + shift * (name == "mu") * 0.5 + rng.normal(0, se)
        z = (window - ref) / (se * 3)
        out.append(
            {
                "name": name,
                "reference": ref,
                "reference_se": se,
                "window": window,
                "window_se": se * 3,
                "running": running,
                "running_se": se / np.sqrt(i + 1),
                "z": z,
                "p_value": float(np.exp(-abs(z))),
            }
        )
    return out


def record(
    feature: str,
    i: int,
    *,
    kind: str = "numeric",
    js: float = 0.01,
    severity: str = "ok",
    rng: np.random.Generator | None = None,
    minutes: int = 60,
) -> dict:
    """One drift record for window ``i`` (``minutes`` long, starting at T0)."""
    rng = rng or np.random.default_rng(i)
    labels = NUMERIC_LABELS if kind == "numeric" else CATEGORY_LABELS
    ref = rng.integers(50, 200, len(labels)).tolist()
    cur = rng.integers(10, 200, len(labels)).tolist()
    start = T0 + timedelta(minutes=minutes * i)
    n = int(sum(cur))
    return {
        "run_id": f"run-{i}",
        "reference_id": "ref0123",
        "feature": feature,
        "kind": kind,
        "window_start": start,
        "window_end": start + timedelta(minutes=minutes),
        "pane": 0,
        "n": n,
        "n_missing": 3,
        "n_invalid": 0,
        "missing_rate": 3 / (n + 3),
        "n_reference": int(sum(ref)),
        "base": 2.0,
        "alpha": 0.5,
        "js_divergence": js,
        "js_distance": float(np.sqrt(js)),
        "js_corrected": max(js - 0.002, 0.0),
        "psi": js * 4,
        "hellinger": float(np.sqrt(js)),
        "g_statistic": 10.0,
        "dof": 9,
        "p_value": float(min(1.0, 0.001 / max(js, 1e-6))),
        "counts": cur,
        "reference_counts": ref,
        "bin_labels": labels,
        "mle_family": "normal" if kind == "numeric" else None,
        "mle_params": _params(rng, i, js * 5) if kind == "numeric" else [],
        "severity": severity,
        "created_at": start + timedelta(minutes=minutes + 1),
        # the sequential detector: a path that grows with the drift (threshold 4.5)
        "cusum": min(js * 200.0, 6.5),
        "cusum_threshold": 4.5,
        "cusum_histogram": min(js * 100.0, 12.0),
        "cusum_histogram_threshold": 11.0,
        "cusum_alarm": "mean" if js * 200.0 > 4.5 else None,
        "cusum_change_point": T0 + timedelta(minutes=minutes * max(i - 3, 0))
        if js * 200.0 > 4.5
        else None,
        "cusum_windows": i + 1,
    }


def write_history(root: Path, records: list[dict], alerts: list[dict] | None = None) -> Path:
    """Write records under ``root/date=YYYY-MM-DD/part-x.parquet`` (one file per day)."""
    by_day: dict[str, list[dict]] = {}
    for r in records:
        by_day.setdefault(r["window_start"].strftime("%Y-%m-%d"), []).append(r)
    root.mkdir(parents=True, exist_ok=True)
    for day, rows in by_day.items():
        write_records_parquet(records_to_table(rows), root / f"date={day}" / "part-x.parquet")
    if alerts is not None:
        atomic_write_json(root / "_alerts.json", {"schema_version": 1, "alerts": alerts})
    return root


def alert(feature: str, i: int, severity: str, value: float, status: str = "delivered") -> dict:
    end = T0 + timedelta(hours=i + 1)
    return {
        "dedup_key": f"{feature}|{i}|{severity}",
        "feature": feature,
        "window_start": (end - timedelta(hours=1)).isoformat(),
        "window_end": end.isoformat(),
        "severity": severity,
        "metric": "js_divergence",
        "value": value,
        "reference_id": "ref0123",
        "created_at": end.isoformat(),
        "status": status,
        "attempts": 1,
        "delivered_at": end.isoformat() if status == "delivered" else None,
        "targets": ["webhook"],
    }


def drifting_history(root: Path, features: list[str], n_windows: int = 48) -> Path:
    """A few features; the first drifts into critical in the last quarter, the second warns."""
    records, alerts = [], []
    for k, name in enumerate(features):
        kind = "categorical" if k == 2 else "numeric"
        rng = np.random.default_rng(k)
        for i in range(n_windows):
            js = 0.003 + 0.002 * rng.random()
            severity = "ok"
            if k == 0 and i >= 3 * n_windows // 4:
                js, severity = 0.2 + 0.02 * rng.random(), "critical"
            elif k == 1 and i >= n_windows - 3:
                js, severity = 0.02, "warning"
            records.append(record(name, i, kind=kind, js=js, severity=severity, rng=rng))
            if severity != "ok" and (i == 3 * n_windows // 4 or i == n_windows - 3):
                alerts.append(
                    alert(name, i, severity, js, status="pending" if k == 1 else "delivered")
                )
    return write_history(root, records, alerts)


def big_history(root: Path, n_windows: int = 10_000, n_features: int = 50) -> Path:
    """``n_windows`` x ``n_features`` records built column-wise (fast) and written per month."""
    rng = np.random.default_rng(7)
    n = n_windows * n_features
    feature = np.repeat([f"feature_{k:02d}" for k in range(n_features)], n_windows)
    idx = np.tile(np.arange(n_windows), n_features)
    start_us = int(T0.timestamp() * 1e6) + idx.astype(np.int64) * 3_600_000_000
    js = np.abs(rng.normal(0.02, 0.01, n))
    js[idx > n_windows - 20] += 0.2 * (np.arange(n)[idx > n_windows - 20] % 3 == 0)
    severity = np.where(js > 0.15, "critical", np.where(js > 0.05, "warning", "ok"))
    labels = NUMERIC_LABELS
    k = len(labels)
    counts = rng.integers(10, 200, (n, k))
    ref_counts = np.tile(rng.integers(50, 200, k), (n, 1))

    def lists(values: np.ndarray, typ: pa.DataType) -> pa.Array:
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1]), pa.int32())
        return pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), typ))

    mu = 4.0 + rng.normal(0, 0.05, n)
    sigma = 1.5 + rng.normal(0, 0.03, n)
    struct = pa.StructArray.from_arrays(
        [
            pa.array(np.repeat([["mu", "sigma"]], n, 0).ravel()),
            pa.array(np.tile([4.0, 1.5], n)),
            pa.array(np.tile([0.02, 0.015], n)),
            pa.array(np.column_stack([mu, sigma]).ravel()),
            pa.array(np.full(2 * n, 0.05)),
            pa.array(np.column_stack([mu, sigma]).ravel()),
            pa.array(np.full(2 * n, 0.01)),
            pa.array(rng.normal(0, 1, 2 * n)),
            pa.array(rng.random(2 * n)),
        ],
        fields=list(DRIFT_RECORD_SCHEMA.field("mle_params").type.value_type),
    )
    params = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()), struct)
    cols = {
        "run_id": pa.array(np.char.add("run-", idx.astype(str))),
        "reference_id": pa.array(np.full(n, "ref0123")),
        "feature": pa.array(feature),
        "kind": pa.array(np.full(n, "numeric")),
        "window_start": pa.array(start_us, pa.timestamp("us", tz="UTC")),
        "window_end": pa.array(start_us + 3_600_000_000, pa.timestamp("us", tz="UTC")),
        "pane": pa.array(np.zeros(n, np.int64)),
        "n": pa.array(counts.sum(1)),
        "n_missing": pa.array(np.zeros(n, np.int64)),
        "missing_rate": pa.array(np.zeros(n)),
        "n_reference": pa.array(ref_counts.sum(1)),
        "js_divergence": pa.array(js),
        "js_corrected": pa.array(js),
        "p_value": pa.array(rng.random(n)),
        "counts": lists(counts, pa.int64()),
        "reference_counts": lists(ref_counts, pa.int64()),
        "bin_labels": lists(np.tile(np.array(labels, dtype=object), (n, 1)), pa.string()),
        "mle_family": pa.array(np.full(n, "normal")),
        "mle_params": params,
        "severity": pa.array(severity),
        "created_at": pa.array(start_us + 3_700_000_000, pa.timestamp("us", tz="UTC")),
        "cusum": pa.array(np.minimum(js * 40.0, 6.5)),
        "cusum_threshold": pa.array(np.full(n, 4.5)),
        "cusum_histogram": pa.array(np.minimum(js * 20.0, 12.0)),
        "cusum_histogram_threshold": pa.array(np.full(n, 11.0)),
    }
    table = pa.table(
        {f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in DRIFT_RECORD_SCHEMA},
        schema=DRIFT_RECORD_SCHEMA,
    )
    month = (start_us // (3_600_000_000 * 24 * 30)).astype(np.int64)
    for m in np.unique(month):
        part = table.filter(pa.array(month == m))
        day = datetime.fromtimestamp(int(start_us[month == m][0]) / 1e6, UTC).strftime("%Y-%m-%d")
        write_records_parquet(part, root / f"date={day}" / "part-x.parquet")
    atomic_write_json(
        root / "_alerts.json",
        {
            "schema_version": 1,
            "alerts": [
                alert(f"feature_{k:02d}", n_windows - 5, "critical", 0.21) for k in range(0, 50, 3)
            ],
        },
    )
    return root


def read_alerts(root: Path) -> list[dict]:
    return json.loads((root / "_alerts.json").read_text())["alerts"]
