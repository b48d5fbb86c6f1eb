"""Monitor state: atomic JSON with a schema version, and the run lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flows.state import FileEntry, MonitorState, StateError, StateStore


def test_state_round_trip_and_version_check(tmp_path):
    store = StateStore(tmp_path)
    assert store.load().ledger == {}
    state = MonitorState(
        ledger={"/d/a.parquet": FileEntry(10, 5, "r1")},
        mle_state={"x": {"family": "normal"}},
        pending={"run_id": "r2", "files": ["/d/b"], "stage": "planned"},
    )
    store.save(state)
    again = store.load()
    assert again.ledger["/d/a.parquet"] == FileEntry(10, 5, "r1")
    assert again.pending["stage"] == "planned"
    doc = json.loads(store.path.read_text())
    doc["schema_version"] = 99
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StateError, match="schema_version 99"):
        store.load()


def test_lock_of_a_dead_process_is_taken_over_a_live_one_is_not(tmp_path):
    store = StateStore(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    store.lock_path.write_text(json.dumps({"pid": int(dead.stdout), "owner": "killed run"}))
    store.acquire("next run")
    assert json.loads(store.lock_path.read_text())["pid"] == os.getpid()
    store.release()
    store.lock_path.write_text(json.dumps({"pid": os.getppid(), "owner": "running"}))
    with pytest.raises(StateError, match="another run"):
        store.acquire("second run")
