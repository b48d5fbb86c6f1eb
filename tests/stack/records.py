"""Realistic drift records for the stack tests: compare() over hourly windows with a shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from divtransforms.compare import compare

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def drift_table(run_id: str = "run-1", hours: int = 4, seed: int = 7, start: int = 0) -> pa.Table:
    """Records of ``amount`` (normal, shifted in hours 2 and 3) and ``country`` (categorical),
    for the hours ``start`` .. ``start + hours`` after ``T0``."""
    rng = np.random.default_rng(seed)
    reference = {
        "amount": rng.normal(100, 10, 5_000),
        "country": rng.choice(["de", "fr", "it", "es"], 5_000, p=[0.4, 0.3, 0.2, 0.1]),
    }
    n = 150 * hours
    offsets = np.sort(rng.uniform(start * 3600, (start + hours) * 3600, n))
    ts = [T0 + timedelta(seconds=float(s)) for s in offsets]
    hour = offsets // 3600
    amount = rng.normal(100, 10, n) + np.where((hour >= 2) & (hour < 4), 8.0, 0.0)
    amount[::50] = np.nan  # some missing values
    current = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "amount": amount,
        "country": rng.choice(["de", "fr", "it", "es"], n, p=[0.4, 0.3, 0.2, 0.1]),
    }
    return compare(reference, current, timestamp_column="ts", window="1h", run_id=run_id)


BASE_TOML = """\
name = "orders"

[source]
paths = ["landing/*.parquet"]
timestamp_column = "ts"

[reference]
path = "reference/reference.json"

[window]
size = "1h"
"""

DEFAULT_NOTIFY = """\
[[notify]]
name = "pd"
type = "pagerduty"
routing_key_env = "DIVMON_TEST_PD_KEY"
"""


def populated_monitor(
    base_dir: Path, extra_toml: str = "", runs: int = 2, notify_toml: str = DEFAULT_NOTIFY
):
    """A monitor (``base_dir/monitor.toml``) whose history, state and alert log hold ``runs``
    realistic runs (3 hours each: ok, then a critical shift, then recovery), written the way
    ``run_monitor`` writes them (without Beam)."""
    from flows.config import load_config

    path = base_dir / "monitor.toml"
    path.write_text(BASE_TOML + "\n" + notify_toml + "\n" + extra_toml, encoding="utf-8")
    config = load_config(path)
    for i in range(runs):
        add_run(config, i)
    return config


def add_run(config, i: int) -> list:
    """Run ``i`` (hours 3i .. 3i+3): history, tracker, alert log and state; returns the alerts."""
    from divtransforms.alerting import AlertTracker
    from flows.alerts.outbox import AlertLog
    from flows.monitor.history import append_records
    from flows.monitor.state import StateStore

    store = StateStore(config.state_dir)
    state = store.load()
    policy = config.build_policy()
    run_id = f"run-{i + 1}"
    table = drift_table(run_id, hours=3, start=3 * i)
    append_records(config.history_dir, table, run_id)
    tracker = AlertTracker(policy, state.tracker)
    decisions = tracker.run(table.to_pylist())
    log = AlertLog.open(config.history_dir)
    new = log.add(
        decisions,
        reference_id=table.column("reference_id")[0].as_py(),
        metric_for=lambda f: policy.for_feature(f).metric,
        targets=[t.name for t in config.notify],
        run_id=run_id,
    )
    log.save()
    state.tracker = tracker.to_dict()
    state.runs.append(
        {
            "run_id": run_id,
            "finished_at": (T0 + timedelta(hours=3 * (i + 1), minutes=5)).isoformat(),
            "records": table.num_rows,
            "alerts": len(decisions),
        }
    )
    store.save(state)
    return new
