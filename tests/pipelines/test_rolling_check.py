"""``divmon check --rolling``: one-shot checks that roll their reference
(``pipelines.rolling_check``, the same ``divtransforms.rolling_store.RollingStore`` as the
monitor)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from divtransforms import ReferenceProfile

HOUR = 3_600_000_000


def hours(rng: np.random.Generator, first: int, count: int, rows: int = 60) -> pa.Table:
    h = np.repeat(np.arange(first, first + count), rows)
    return pa.table(
        {
            "x": rng.normal(0.0, 1.0, h.size),
            "ts": pa.array(h * HOUR + rng.integers(0, HOUR, h.size), pa.timestamp("us", "UTC")),
        }
    )


def test_divmon_check_rolls_its_reference(tmp_path, capsys):
    from flows.cli.divmon import main

    rng = np.random.default_rng(5)
    pq.write_table(hours(rng, 0, 24 * 8), tmp_path / "ref.parquet")  # an 8-day seed
    seed_path = tmp_path / "seed.json"
    window = ["--window", "1h", "--timestamp-column", "ts"]
    build = ["reference", "build", "-i", str(tmp_path / "ref.parquet"), "-o", str(seed_path)]
    assert main([*build, *window]) == 0
    seed = ReferenceProfile.load(seed_path)
    state = tmp_path / "rolling"
    rolling = ["--rolling", "4d", "--rolling-state", str(state)]
    pq.write_table(hours(rng, 24 * 8, 26), tmp_path / "day8.parquet")
    pq.write_table(hours(rng, 24 * 8 + 26, 3), tmp_path / "day9.parquet")
    check = ["check", "-r", str(seed_path), *window, *rolling]
    capsys.readouterr()
    assert main([*check, "-i", str(tmp_path / "day8.parquet")]) == 0
    out = capsys.readouterr().out
    assert f"judged by {seed.reference_id}" in out and "rolled: ref-" in out
    saved = json.loads((state / "rolling.json").read_text())
    rolled_id = saved["current"]["reference_id"]
    assert saved["current"]["anchor"] == "1970-01-10T00:00:00+00:00"
    assert saved["current"]["features"]["x"]["windows"] == 96
    rolled = ReferenceProfile.load(state / "versions" / saved["current"]["version"])
    assert rolled.reference_id == rolled_id != seed.reference_id
    assert main([*check, "-i", str(tmp_path / "day9.parquet"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"judged by {rolled_id}" in out and "rolled:" not in out  # not due
    records = pq.read_table(next((tmp_path / "out").glob("records-*.parquet")))
    assert set(records.column("reference_id").to_pylist()) == {rolled_id}
    assert len(json.loads((state / "rolling.json").read_text())["folded"]) == 2
    # options that do not fit are one clear error
    assert main([*check, "-i", str(tmp_path / "day9.parquet"), "--roll-every", "90m"]) == 2
    assert "--roll-every must be a multiple of the window size" in capsys.readouterr().err
    assert main(["check", "-r", str(seed_path), "-i", "x.parquet", "--rolling", "4d"]) == 2
    assert "--rolling and --rolling-state go together" in capsys.readouterr().err


DAY = 24 * HOUR


def four_hourly(rng: np.random.Generator, first_day: int, days: int, level: float) -> pa.Table:
    """300 rows in each 4-hour window, mean ``level`` (reference sd)."""
    w = np.repeat(first_day * 6 + np.arange(days * 6), 300)
    return pa.table(
        {
            "x": rng.normal(level, 1.0, w.size),
            "ts": pa.array(
                w * 4 * HOUR + rng.integers(0, 4 * HOUR, w.size), pa.timestamp("us", "UTC")
            ),
        }
    )


def alarms(table: pa.Table) -> np.ndarray:
    return np.array([a is not None for a in table.column("cusum_alarm").to_pylist()])


def test_a_small_persistent_drift_is_found_by_cusum_with_a_rolling_reference(tmp_path):
    """A 0.12 sd shift at n = 300 (a single window breaches about one time in five): the CUSUM
    finds it with a rolling reference as with the seed alone, because its alarms hold the drifted
    windows out of the rolled reference and its statistic carries across the daily rolls; after
    ``absorb_after`` of alarms the change is absorbed (and the detector starts afresh)."""
    from pipelines import engine
    from pipelines.rolling_check import rolling_store, run_rolling_check
    from pipelines.spec import CheckJob, Source

    rng = np.random.default_rng(23)
    seed = ReferenceProfile.build(
        four_hourly(rng, 0, 14, 0.0), exclude=["ts"], timestamp_column="ts", window="4h"
    )
    store = rolling_store(str(tmp_path / "rolling"), "4h", "12d", "1d", "4d")
    static_state = rolling_state = None
    static, rolled, breached, rolls = [], [], [], []
    for day in range(14, 26):
        path = tmp_path / f"day{day}.parquet"
        pq.write_table(four_hourly(rng, day, 1, 0.12 if day >= 16 else 0.0), path)
        job = CheckJob(seed, Source((str(path),)), window="4h", timestamp_column="ts")
        alone = engine.run_check(replace(job, mle_state=static_state), [])
        static_state = alone.mle_state
        static.append(alarms(alone.records).mean())
        result, info = run_rolling_check(
            replace(job, mle_state=rolling_state), [], store, run=engine.run_check
        )
        rolling_state = result.mle_state
        rolled.append(alarms(result.records).mean())
        sev = result.records.column("severity").to_pylist()
        breached.append(np.mean([s in ("warning", "critical") for s in sev]))
        rolls.append(info)
    static, rolled = np.array(static), np.array(rolled)
    assert static[:2].max() == rolled[:2].max() == 0.0  # no drift, no alarm
    assert np.mean(breached[2:]) <= 0.4  # the windows alone mostly miss it
    assert static[3:].min() >= 0.8, static  # the seed's detector finds it for good
    # rolling: found as fast, and kept until absorb_after (4 days) of alarms absorbed it
    assert rolled[3:6].min() >= 0.8, rolled
    restarts = [(i, r["features"]["x"].get("restarted")) for i, r in enumerate(rolls)]
    absorbed = [i for i, r in enumerate(rolls) if r["absorbed"]]
    assert absorbed and absorbed[0] >= 5, restarts
    restart = rolls[absorbed[0]]["features"]["x"]["restarted"]
    assert "1970-01-17" <= restart < "1970-01-18", restarts  # day 16: where the drift began
    assert rolled[absorbed[0] + 2 :].max() <= 0.2, rolled  # the new level is the reference's
