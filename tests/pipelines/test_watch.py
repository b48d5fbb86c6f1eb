"""Local streaming: a watched directory, panes that accumulate, late rows counted not lost."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from divtransforms import compare
from divtransforms.records import read_records
from divtransforms.settings import CheckSettings
from pipelines.spec import CheckJob, Source
from pipelines.watch import DirectoryWatcher, watch_directory
from tests.helpers import T0

HOUR = 3600
H = T0 - T0 % HOUR


def _rows(rng, n, start, seconds=HOUR):
    ts = ((start + rng.uniform(0, seconds, n)) * 1e6).astype("int64")
    return pa.table(
        {
            "x": rng.normal(0.2, 1.0, n),
            "amount": rng.lognormal(1.0, 0.5, n),
            "color": rng.choice(["red", "blue"], n),
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def _drop(path, table):
    tmp = path.parent / f".{path.name}"
    pq.write_table(table, tmp)
    tmp.rename(path)  # files appear atomically


def test_watcher_panes_lateness_and_conservation(tmp_path, profile, rng):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    settings = CheckSettings(window=HOUR, timestamp_column="ts", allowed_lateness=HOUR, run_id="w")
    w = DirectoryWatcher(profile, str(inbox), str(out), settings)
    a = pa.concat_tables([_rows(rng, 120, H), _rows(rng, 80, H + HOUR)])
    _drop(inbox / "a.parquet", a)
    first = w.poll()
    assert {(r["window_start"].timestamp(), r["pane"]) for r in first} == {(H, 0), (H + HOUR, 0)}
    assert w.poll() == []  # nothing new, nothing re-read
    b = _rows(rng, 30, H)  # window 0 is still open (watermark < end + 1h lateness)
    _drop(inbox / "b.parquet", b)
    second = w.poll()
    assert {
        (r["window_start"].timestamp(), r["pane"], r["n"])
        for r in second
        if r["feature"] == "amount"
    } == {(H, 1, 150)}
    c = pa.concat_tables([_rows(rng, 40, H + 3 * HOUR), _rows(rng, 10, H, 60)])
    _drop(inbox / "c.parquet", c)  # moves the watermark past window 0's lateness first
    w.poll()
    c2 = _rows(rng, 7, H)
    _drop(inbox / "d.parquet", c2)
    w.poll()
    assert w.dropped_late == 7  # window 0 closed: counted, not merged, not lost silently
    records = read_records(out).to_pylist()
    last = {}
    for r in records:
        key = (r["feature"], r["window_start"])
        if key not in last or r["pane"] > last[key]["pane"]:
            last[key] = r
    total = sum(r["n"] + r["n_missing"] + r["n_invalid"] for (f, _), r in last.items() if f == "x")
    assert total + w.dropped_late == sum(t.num_rows for t in (a, b, c, c2))
    accepted = pa.concat_tables([a, b, c])
    expected = {
        (r["feature"], r["window_start"]): r
        for r in compare(
            profile, accepted, window="1h", timestamp_column="ts", run_id="w"
        ).to_pylist()
    }
    assert set(expected) == set(last)
    for key, rec in last.items():
        assert rec["counts"] == expected[key]["counts"]
        assert np.isclose(rec["js_divergence"], expected[key]["js_divergence"], rtol=1e-12)
    state = json.loads((out / "_state" / "watch-w.json").read_text())
    assert state["dropped_late"] == 7 and set(state["features"]) == {"x", "amount", "color"}


def test_watch_directory_loop_stops_and_writes(tmp_path, profile, rng):
    inbox = tmp_path / "in"
    inbox.mkdir()
    _drop(inbox / "a.parquet", _rows(rng, 50, H))
    source = Source(watch_directory=str(inbox), watch_interval=0.05, watch_stop_after=0.2)
    job = CheckJob(
        profile, source, output=str(tmp_path / "out"), window="1h", timestamp_column="ts",
        run_id="loop",
    )  # fmt: skip
    watcher = watch_directory(job)
    assert watcher.seen == {"a.parquet"}
    assert read_records(tmp_path / "out").num_rows == 3
