"""Crash-resume and exactly-once on a bucket: a monitor whose sources, reference, history, state
and alert log are on moto's S3 server, SIGKILLed at each stage boundary of a run (the points of
tests/flows/test_fault_injection.py that exist on a bucket: an upload has no temp file to
rename), each kill followed by a clean run; rows, windows and alerts counted exactly. The killed
run's lease stays in the bucket: the next run is refused while it is live (naming the holder)
and takes it over once it has expired."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from divtransforms import storage
from divtransforms.alerting import AlertTracker
from flows.alerts.outbox import INPUT_ERROR, AlertLog, decision_key
from flows.config import load_config
from flows.demo import run as demo
from flows.demo.receiver import AlertReceiver
from flows.monitor.history import read_history
from flows.monitor.state import StateStore

from .test_bucket_flow import bucket_monitor, land
from .test_fault_injection import _Child

pytestmark = [pytest.mark.slow, pytest.mark.beam]
# Hours 2 and 4 drift after calm ones: the runs of the third and fifth trials raise alerts, so
# the kills inside alerting and delivery are reached there.
POINTS = ["planned", "history", "delivering", "recorded", "alert-log", "alerted"]
DRIFTED = {2, 4, 5}
LEASE_SECONDS = 2


def _clean_run(root: Path, env: dict) -> int:
    """A run to completion; returns how many times it was refused by a live lease first."""
    refused = 0
    deadline = time.monotonic() + 10 * LEASE_SECONDS
    while True:
        run = _Child(root, "none", env, keep=None)
        assert run.wait() in (0, 1), run.output()
        out = run.output()
        if out.startswith("DONE"):
            return refused
        assert "another run holds the run lock" in out, out
        assert "lease ends in" in out and time.monotonic() < deadline, out
        refused += 1
        time.sleep(0.5)


def _check_invariants(config, hours: int, receiver: AlertReceiver) -> None:
    history = read_history(config.history_dir).to_pylist()
    windows = Counter((r["feature"], r["window_start"]) for r in history)
    assert len(windows) == 2 * hours, "a window is missing"
    assert set(windows.values()) == {1}, "a window is duplicated"
    for feature in ("amount", "country"):
        assert sum(r["n"] for r in history if r["feature"] == feature) == hours * 400
    state = StateStore.for_config(config).load()
    assert state.pending is None and len(state.ledger) == hours
    assert all(e.status == "checked" for e in state.ledger.values())
    log = AlertLog.open(config.history_dir)
    keys = [e["dedup_key"] for e in log.entries if e["severity"] != INPUT_ERROR]
    assert len(keys) == len(set(keys))
    from flows.monitor.run import monitor_reference

    ref_id = monitor_reference(config).reference_id
    expected = {decision_key(d, ref_id) for d in AlertTracker(config.build_policy()).run(history)}
    assert set(keys) == expected, "alerts lost or invented"
    assert all(e["status"] == "delivered" for e in log.entries)
    assert set(Counter(a["dedup_key"] for a in receiver.alerts())) == set(keys)


def test_sigkill_at_each_stage_boundary_on_a_bucket(tmp_path: Path, s3_server):
    from flows.reference import build_reference_version

    bucket = s3_server.bucket()
    root = bucket_monitor(tmp_path, bucket, f"\n[state]\nlease_seconds = {LEASE_SECONDS}\n")
    config = load_config(root / "monitor.toml")
    build_reference_version(config)
    with AlertReceiver() as receiver:
        env = {**s3_server.env, demo.WEBHOOK_ENV: receiver.url}
        killed: Counter[str] = Counter()
        refused = 0
        for trial, point in enumerate(POINTS):
            land(tmp_path, bucket, trial, drifted=trial in DRIFTED, rows=400)
            run = _Child(root, point, env, keep=None)
            run.wait()
            if run.proc.exitcode == -signal.SIGKILL:
                killed[point] += 1
            refused += _clean_run(root, env)
            _check_invariants(config, trial + 1, receiver)
        assert killed == dict.fromkeys(POINTS, 1), killed  # every boundary was really hit
        assert refused >= 1  # a killed run's live lease refused the next run at least once
    assert not [i for i in storage.walk(bucket) if storage.name(i.path).endswith(".tmp")]
