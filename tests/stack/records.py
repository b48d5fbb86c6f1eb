"""Realistic drift records for the stack tests: compare() over hourly windows with a shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from divtransforms.compare import compare

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def drift_table(run_id: str = "run-1", hours: int = 4, seed: int = 7) -> pa.Table:
    """Records of ``amount`` (normal, shifted from hour 2 on) and ``country`` (categorical)."""
    rng = np.random.default_rng(seed)
    reference = {
        "amount": rng.normal(100, 10, 5_000),
        "country": rng.choice(["de", "fr", "it", "es"], 5_000, p=[0.4, 0.3, 0.2, 0.1]),
    }
    n = 600
    ts = [T0 + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, hours * 3600, n))]
    hour = np.array([(t - T0).total_seconds() // 3600 for t in ts])
    amount = rng.normal(100, 10, n) + np.where(hour >= 2, 8.0, 0.0)
    amount[::50] = np.nan  # some missing values
    current = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "amount": amount,
        "country": rng.choice(["de", "fr", "it", "es"], n, p=[0.4, 0.3, 0.2, 0.1]),
    }
    return compare(reference, current, timestamp_column="ts", window="1h", run_id=run_id)
