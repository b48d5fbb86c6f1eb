"""``divmon check --rolling``: one-shot checks that roll their reference
(``pipelines.rolling_check``, the same ``divtransforms.rolling.RollingStore`` as the monitor)."""

from __future__ import annotations

import json

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
