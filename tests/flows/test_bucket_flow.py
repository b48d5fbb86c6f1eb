"""``divmon run`` with everything in a bucket: sources, reference inputs and profile, history,
state, alert log and dashboard on a real storage API (the GCS emulator), Beam on the local
runner. Nothing of the monitor is written next to the config file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from divtransforms import storage
from flows.alerts.outbox import AlertLog
from flows.config import load_config
from flows.demo import run as demo
from flows.demo.receiver import AlertReceiver
from flows.monitor.history import read_history
from flows.monitor.state import StateStore

pytestmark = [pytest.mark.prefect, pytest.mark.beam, pytest.mark.usefixtures("prefect_harness")]
ROWS = 1_000


def upload(local: Path, url: str) -> str:
    storage.write_atomic(url, local.read_bytes())
    return url


def bucket_monitor(tmp_path: Path, bucket: str, extra: str = "") -> Path:
    """A config folder holding only ``monitor.toml``; all its paths point into ``bucket``."""
    staging = tmp_path / "staging"
    upload(demo.write_reference_data(staging, n=3_000), f"{bucket}/reference-data/ref.parquet")
    root = tmp_path / "config"
    root.mkdir()
    text = demo.write_config(root, dashboard=False).read_text()
    for key, local in (
        ("paths", '["landing/*.parquet"]'),
        ("path", '"reference/reference.json"'),
        ("inputs", '["reference-data/*.parquet"]'),
        ("dir", '"history"'),
    ):
        text = text.replace(
            f"{key} = {local}", f"{key} = {local.replace(chr(34), chr(34) + bucket + '/', 1)}"
        )
    text += f'\n[dashboard]\npath = "{bucket}/site/dashboard.html"\n' + extra
    (root / "monitor.toml").write_text(text)
    return root


def land(tmp_path: Path, bucket: str, hour: int, drifted: bool, rows: int = ROWS) -> str:
    local = demo.write_stream_file(tmp_path / "staging", hour, n=rows, drifted=drifted)
    return upload(local, f"{bucket}/landing/{local.name}")


def test_divmon_run_everything_in_a_bucket(tmp_path: Path, gcs_server, monkeypatch):
    """On the GCS emulator (the S3 server gets the kill trials, tests/flows/test_bucket_faults)."""
    from flows.check import check_once
    from flows.reference import build_reference

    bucket = gcs_server.bucket()
    root = bucket_monitor(tmp_path, bucket)
    config = load_config(root / "monitor.toml")
    assert config.history_dir == f"{bucket}/history"
    assert config.state_dir == f"{bucket}/history/_state"
    assert config.reference_path == f"{bucket}/reference/reference.json"
    with AlertReceiver() as receiver:
        monkeypatch.setenv(demo.WEBHOOK_ENV, receiver.url)
        ref = build_reference(str(root / "monitor.toml"))
        assert ref["path"] == f"{bucket}/reference/reference.json"
        assert storage.exists(ref["version"]) and ref["version"].startswith(bucket)

        for hour in (0, 1):
            land(tmp_path, bucket, hour, drifted=False)
        first = check_once(str(root / "monitor.toml"))
        assert first["ok"] and first["files"] == 2 and first["records"] == 4
        for hour in (2, 3):
            land(tmp_path, bucket, hour, drifted=True)
        second = check_once(str(root / "monitor.toml"))
        assert second["files"] == 2 and second["records"] == 4
        assert second["alerts"] == 2 and second["delivered"] == 2
        third = check_once(str(root / "monitor.toml"))
        assert third["files"] == 0 and third["records"] == 0 and third["delivered"] == 0

    # the history, state, alert log and dashboard are objects in the bucket
    history = read_history(config.history_dir)
    windows = {(r["feature"], r["window_start"]) for r in history.to_pylist()}
    assert history.num_rows == len(windows) == 8
    assert sum(r["n"] for r in history.to_pylist() if r["feature"] == "amount") == 4 * ROWS
    parts = storage.glob(f"{bucket}/history/date=*/part-*.parquet")
    assert len(parts) == 2 and all(p.size > 0 for p in parts)
    state = StateStore.for_config(config).load()
    assert state.pending is None and len(state.ledger) == 4
    assert set(state.ledger) == {f"{bucket}/landing/events-{h:03d}.parquet" for h in range(4)}
    log = AlertLog.open(config.history_dir)
    assert {e["status"] for e in log.entries} == {"delivered"}
    assert sorted(a["dedup_key"] for a in receiver.alerts()) == sorted(
        e["dedup_key"] for e in log.entries
    )
    lease = json.loads(storage.read_bytes(f"{bucket}/history/_state/run.lock"))
    assert lease["released"] is True
    page = storage.read_bytes(f"{bucket}/site/dashboard.html")
    assert page.startswith(b"<!DOCTYPE html>") or b"<html" in page[:500]
    # the config folder holds the config and nothing else: nothing was mangled into local paths
    assert sorted(p.name for p in root.iterdir()) == ["monitor.toml"]
    # the records are readable with plain Parquet readers from the bucket too
    with storage.open_read(parts[0].path) as fh:
        assert pq.ParquetFile(fh).metadata.num_rows > 0
