"""History: date partitions, idempotent re-writes of a run, read back in canonical order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from divtransforms.records import records_to_table
from flows.history import append_records, read_history, run_files

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


def test_discover_remote_patterns_through_beam_filesystems(tmp_path, monkeypatch):
    """gs:// (or any scheme://) sources are listed with Beam's FileSystems, with size and mtime."""
    from types import SimpleNamespace

    from apache_beam.io.filesystems import FileSystems

    from flows.config import parse_config
    from flows.monitor import discover
    from flows.state import FileEntry, MonitorState, StateStore

    metas = [
        SimpleNamespace(path="gs://b/in/a.parquet", size_in_bytes=10, last_updated_in_seconds=1.5),
        SimpleNamespace(path="gs://b/in/b.parquet", size_in_bytes=20, last_updated_in_seconds=2.0),
    ]
    seen = []

    def match(patterns):
        seen.extend(patterns)
        return [SimpleNamespace(metadata_list=metas)]

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    config = parse_config(
        {"source": {"paths": ["gs://b/in/*.parquet"]}, "reference": {"path": "r.json"}},
        base_dir=tmp_path,
    )
    state = MonitorState(ledger={"gs://b/in/a.parquet": FileEntry(10, 1_500_000_000, "r1")})
    store = StateStore(tmp_path / "state", root=tmp_path)
    found = discover(config, state, store)
    assert (found.new, found.changed) == (["gs://b/in/b.parquet"], [])
    assert seen == ["gs://b/in/*.parquet"]  # the URL is not mangled into a local path
    state.ledger["gs://b/in/a.parquet"] = FileEntry(11, 1_500_000_000, "r1")
    found = discover(config, state, store)
    assert (found.new, found.changed) == (["gs://b/in/b.parquet"], ["gs://b/in/a.parquet"])
