"""History: date partitions, idempotent re-writes of a run, read back in canonical order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from divtransforms.records import records_to_table
from flows.monitor.history import append_records, read_history, run_files

T0 = datetime(2026, 1, 1, 23, tzinfo=UTC)


def _table(run_id: str, hours: int):
    return records_to_table(
        [
            {
                "run_id": run_id,
                "feature": f,
                "window_start": T0 + timedelta(hours=h),
                "window_end": T0 + timedelta(hours=h + 1),
                "n": 10,
                "severity": "ok",
                "created_at": T0,
            }
            for f in ("a", "b")
            for h in range(hours)
        ]
    )


def test_partitions_by_window_date_and_rewrites_idempotently(tmp_path):
    written = append_records(tmp_path, _table("r1", 2), "r1")
    assert sorted(p.parent.name for p in written) == ["date=2026-01-01", "date=2026-01-02"]
    append_records(tmp_path, _table("r1", 2), "r1")  # a retried run: replaced, not duplicated
    append_records(tmp_path, _table("r2", 1), "r2")
    table = read_history(tmp_path)
    assert table.num_rows == 6
    assert table.column("feature").to_pylist() == ["a", "a", "a", "b", "b", "b"]
    assert read_history(tmp_path, "r2").num_rows == 2
    assert len(run_files(tmp_path, "r1")) == 2
    assert read_history(tmp_path / "missing").num_rows == 0


def test_bad_run_id_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="run id"):
        append_records(tmp_path, _table("x", 1), "../escape")


def test_discover_bucket_patterns(tmp_path, object_store):
    """gs:// and s3:// sources are listed through divtransforms.storage (a real API: the GCS
    emulator, moto's S3), with size and mtime; the URL is not mangled into a local path."""
    from divtransforms import storage
    from flows.config import parse_config
    from flows.monitor.run import discover
    from flows.monitor.state import FileEntry, MonitorState, StateStore

    bucket = object_store.bucket()
    a, b = f"{bucket}/in/a.parquet", f"{bucket}/in/b.parquet"
    storage.write_atomic(a, b"x" * 10)
    storage.write_atomic(b, b"y" * 20)
    storage.write_atomic(f"{bucket}/in/_SUCCESS", b"")  # not data
    storage.write_atomic(f"{bucket}/in/deeper/c.parquet", b"z")  # * stays within a segment
    config = parse_config(
        {"source": {"paths": [f"{bucket}/in/*"]}, "reference": {"path": "r.json"}},
        base_dir=tmp_path,
    )
    assert config.source_patterns() == [f"{bucket}/in/*"]
    fp = storage.fingerprint(a)
    state = MonitorState(ledger={a: FileEntry(fp[0], fp[1], "r1")})
    store = StateStore(tmp_path / "state", root=tmp_path)
    found = discover(config, state, store)
    assert (found.new, found.changed) == ([b], [])
    state.ledger[a] = FileEntry(11, fp[1], "r1")
    found = discover(config, state, store)
    assert (found.new, found.changed) == ([b], [a])
