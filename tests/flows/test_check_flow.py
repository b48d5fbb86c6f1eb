"""End to end: scheduled-style drift_check runs on the Prefect harness with a local receiver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from divtransforms.mle import accumulator_for, accumulator_from_dict
from flows.alerts.outbox import AlertLog
from flows.config import load_config
from flows.demo import run as demo
from flows.demo.receiver import AlertReceiver
from flows.monitor.history import read_history
from flows.monitor.state import StateStore

pytestmark = [pytest.mark.prefect, pytest.mark.beam, pytest.mark.usefixtures("prefect_harness")]
N_PER_FILE = 1_000


def _arrive(root: Path, hours, drift_from: int) -> None:
    for h in hours:
        demo.write_stream_file(root / "landing", h, n=N_PER_FILE, drifted=h >= drift_from)


def _check(root: Path) -> dict:
    from flows.check import check_once

    return check_once(str(root / "monitor.toml"))


def _windows(root: Path) -> list[tuple[str, str]]:
    table = read_history(root / "history")
    return [(r["feature"], r["window_start"].isoformat()) for r in table.to_pylist()]


@pytest.fixture()
def receiver(monkeypatch):
    with AlertReceiver() as rx:
        monkeypatch.setenv(demo.WEBHOOK_ENV, rx.url)
        yield rx


def test_two_scheduled_runs(monitor_dir: Path, receiver: AlertReceiver):
    root = monitor_dir
    _arrive(root, [0, 1], drift_from=2)
    first = _check(root)
    assert first["records"] == 4 and first["alerts"] == 0
    assert len(_windows(root)) == 4
    before = set(_windows(root))

    _arrive(root, [2, 3], drift_from=2)
    second = _check(root)
    after = _windows(root)
    assert len(after) == 8 and len(set(after)) == 8
    new = set(after) - before
    assert {w for _, w in new} == {"2026-01-05T02:00:00+00:00", "2026-01-05T03:00:00+00:00"}

    # Alerts fire on the drifted windows only: the first drifted window, each feature once.
    log = AlertLog.open(root / "history")
    fired = {(e["feature"], e["window_start"], e["severity"]) for e in log.entries}
    assert fired == {
        ("amount", "2026-01-05T02:00:00+00:00", "critical"),
        ("country", "2026-01-05T02:00:00+00:00", "warning"),
    }
    assert second["alerts"] == 2 and second["delivered"] == 2
    history = read_history(root / "history").to_pylist()
    for r in history:
        drifted = r["window_start"].hour >= 2
        assert (r["severity"] in ("warning", "critical")) == drifted, r

    # The receiver got each alert exactly once, with its dedup key.
    got = receiver.alerts()
    assert sorted(a["dedup_key"] for a in got) == sorted(e["dedup_key"] for e in log.entries)
    assert all(d["dedup_header"] == d["alert"]["dedup_key"] for d in receiver.received)

    # Running MLE after two runs equals a one-shot fit of all the data.
    state = StateStore(root / "history" / "_state").load()
    running = accumulator_from_dict(state.mle_state["amount"]).estimate()
    values = np.concatenate(
        [
            pq.read_table(p).column("amount").to_numpy()
            for p in sorted((root / "landing").glob("*.parquet"))
        ]
    )
    one_shot = accumulator_for("normal").add(values).estimate()
    assert running.n == one_shot.n == 4 * N_PER_FILE
    for name in ("mu", "sigma"):
        assert running.params[name] == pytest.approx(one_shot.params[name], rel=1e-12)

    # Artifacts of the run: the records table, the breach summary.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    assert any(a.key == "demo-drift-records" and a.type == "table" for a in artifacts)
    summaries = [a.data for a in artifacts if a.key == "demo-drift-summary"]
    assert any("| amount |" in s and "critical" in s for s in summaries)
    assert any("No breaches in this run." in s for s in summaries)  # the first run's

    # A third run with nothing new adds nothing and sends nothing.
    third = _check(root)
    assert third["records"] == 0 and len(_windows(root)) == 8
    assert len(receiver.received) == 2


def test_failed_delivery_is_delivered_by_the_next_run_once(
    monitor_dir: Path, receiver: AlertReceiver
):
    root = monitor_dir
    _arrive(root, [0, 1], drift_from=1)
    receiver.fail_status = 503
    out = _check(root)
    assert out["alerts"] == 2 and out["delivered"] == 0 and out["failed"] == 2
    assert receiver.received == []
    entries = AlertLog.open(root / "history").entries
    assert {e["status"] for e in entries} == {"failed"}
    # the error kept in the outbox names the status, never the URL
    errors = [e["deliveries"]["local-webhook"]["last_error"] for e in entries]
    assert all("503" in err and "127.0.0.1" not in err for err in errors)

    receiver.fail_status = None
    out = _check(root)
    assert out["records"] == 0 and out["delivered"] == 2
    _check(root)
    assert sorted(a["feature"] for a in receiver.alerts()) == ["amount", "country"]
    assert {e["status"] for e in AlertLog.open(root / "history").entries} == {"delivered"}


def test_a_failed_delivery_raises_the_documented_exception_for_every_caller(
    monitor_dir: Path, receiver: AlertReceiver
):
    """A direct call, a parent flow and the flow run's state all see ``DeliveryFailed`` (never
    Prefect's ``TypeError`` for a failed state it cannot turn into an exception), carrying the
    result document, which is also the run's ``demo-result`` artifact."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.check import DeliveryFailed, DriftCheckFailed, drift_check

    root = monitor_dir
    _arrive(root, [0, 1], drift_from=1)
    receiver.fail_status = 503
    with pytest.raises(DeliveryFailed, match=r"2 alert delivery\(ies\) failed") as direct:
        drift_check(str(root / "monitor.toml"))
    assert isinstance(direct.value, DriftCheckFailed)
    assert direct.value.result["failed"] == 2 and direct.value.result["ok"] is False

    # The outbox is retried by each later run: still failing, now in a subflow.

    @flow
    def parent() -> str:
        try:
            drift_check(str(root / "monitor.toml"))
        except DeliveryFailed as exc:
            return f"caught: {exc.result['failed']} failed"
        return "not raised"

    assert parent() == "caught: 2 failed"

    state = drift_check(str(root / "monitor.toml"), return_state=True)
    assert state.is_failed() and "alert delivery(ies) failed" in state.message
    failed = state.result(raise_on_failure=False)
    assert isinstance(failed, DeliveryFailed) and failed.result["failed"] == 2

    import asyncio

    async def artifact() -> dict:
        async with get_client() as client:
            latest = await client.read_latest_artifacts()
        return {a.key: a for a in latest}

    doc = asyncio.run(artifact())["demo-result"].data
    assert doc.startswith("```json") and '"failed": 2' in doc and '"ok": false' in doc


def test_killed_between_records_and_alerts_resumes_without_duplicates(
    monitor_dir: Path, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
):
    import flows.monitor.run as monitor

    root = monitor_dir
    _arrive(root, [0, 1, 2], drift_from=2)
    original = monitor.alert_stage

    def killed(*args, **kwargs):
        raise RuntimeError("killed after the records were written")

    monkeypatch.setattr(monitor, "alert_stage", killed)
    with pytest.raises(RuntimeError, match="killed"):
        _check(root)
    assert len(_windows(root)) == 6  # records are in the history ...
    assert not (root / "history" / "_alerts.json").exists()  # ... the alerts are not
    assert StateStore(root / "history" / "_state").load().pending["stage"] == "recorded"

    monkeypatch.setattr(monitor, "alert_stage", original)
    _arrive(root, [3], drift_from=2)  # more data arrives before the retry
    out = _check(root)
    windows = _windows(root)
    assert len(windows) == 8 and len(set(windows)) == 8  # no duplicates, no gaps
    assert out["alerts"] == 2 and out["delivered"] == 2
    _check(root)
    assert len(receiver.received) == 2
    assert StateStore(root / "history" / "_state").load().pending is None


def test_killed_before_commit_reuses_the_run_id(
    monitor_dir: Path, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
):
    import flows.monitor.run as monitor

    root = monitor_dir
    _arrive(root, [0, 1], drift_from=1)
    original = monitor.append_records

    def write_then_die(history_dir, table, run_id):
        original(history_dir, table, run_id)
        raise RuntimeError("killed before the ledger commit")

    monkeypatch.setattr(monitor, "append_records", write_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        _check(root)
    pending = StateStore(root / "history" / "_state").load().pending
    assert pending["stage"] == "planned"
    monkeypatch.setattr(monitor, "append_records", original)
    out = _check(root)
    assert out["run_ids"] == [pending["run_id"]]
    windows = _windows(root)
    assert len(windows) == 4 and len(set(windows)) == 4
    assert len(receiver.received) == 2


def test_build_reference_flow_keeps_previous_versions(monitor_dir: Path):
    from flows.reference import build_reference, list_versions

    config = load_config(monitor_dir / "monitor.toml")
    first = json.loads(config.reference_path.read_text())
    demo.write_reference_data(monitor_dir / "reference-data", n=5_000, seed=2)
    out = build_reference(str(monitor_dir / "monitor.toml"))
    assert out["previous"] is not None and out["previous"] != out["reference_id"]
    versions = list_versions(config)
    assert len(versions) == 2
    assert json.loads(config.reference_path.read_text()) != first
    assert out["reference_id"] in versions[-1].name


def test_cli_run_and_config_error(monitor_dir: Path, receiver: AlertReceiver, capsys):
    from flows.cli.divmon import main

    _arrive(monitor_dir, [0], drift_from=5)
    assert main(["run", "--config", str(monitor_dir / "monitor.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 2
    bad = monitor_dir / "bad.toml"
    bad.write_text(
        (monitor_dir / "monitor.toml").read_text().replace('size = "1h"', 'size = "1 hour"')
    )
    assert main(["run", "--config", str(bad)]) == 2
    assert "window.size" in capsys.readouterr().err
    receiver.fail_status = 503  # deliveries fail: exit 4, the outbox keeps them
    _arrive(monitor_dir, [1, 2], drift_from=1)
    assert main(["run", "--config", str(monitor_dir / "monitor.toml")]) == 4
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["ok"] is False and out["failed"] == 2
    assert "2 alert delivery(ies) failed" in captured.err
    assert "Traceback" not in captured.err


def test_alerts_install_creates_automations(monitor_dir: Path, receiver: AlertReceiver):
    from prefect.automations import Automation

    from flows.alerts.automations import automation_name, install_automations

    config = load_config(monitor_dir / "monitor.toml")
    out = install_automations(config)
    again = install_automations(config)  # idempotent: replaced, not duplicated
    assert len(out) == len(again) == 1
    automation = Automation.read(name=automation_name(config, config.notify[0]))
    assert automation.trigger.expect == {"divtransforms.drift.*"}
    assert automation.trigger.for_each == {"prefect.resource.id"}
    assert str(automation.id) == again[0]["id"]


def test_installed_automation_routes_drift_events_to_the_receiver(
    monitor_dir: Path, receiver: AlertReceiver
):
    import time

    from flows.alerts.automations import install_automations
    from flows.alerts.events import emit_alert_event
    from flows.alerts.outbox import AlertLog

    config = load_config(monitor_dir / "monitor.toml")
    install_automations(config)
    log = AlertLog.open(monitor_dir / "history")
    from divtransforms.alerting import AlertDecision

    # The server's trigger service picks new automations up asynchronously: emit an event for a
    # fresh feature (its own bucket) every few seconds until one is routed.
    keys: list[str] = []
    deadline = time.monotonic() + 90
    while not receiver.received and time.monotonic() < deadline:
        feature = f"f{len(keys)}"
        decision = AlertDecision(feature, "critical", None, None, {"feature": feature})
        (entry,) = log.add(
            [decision],
            reference_id="ref-x",
            metric_for=lambda f: "js_divergence",
            targets=[],
            run_id="r",
        )
        keys.append(entry["dedup_key"])
        assert emit_alert_event(entry, config.name)
        until = time.monotonic() + 5
        while not receiver.received and time.monotonic() < until:
            time.sleep(0.2)
    time.sleep(1.0)  # anything else in flight
    assert receiver.received, f"no automation fired for {len(keys)} events"
    for got in receiver.received:
        assert "divtransforms.drift.critical" in got["subject"]
        assert sum(key in got["body"] for key in keys) == 1
    bodies = [next(k for k in keys if k in got["body"]) for got in receiver.received]
    assert len(bodies) == len(set(bodies))  # each event routed at most once


def test_recovery_is_sent_once(monitor_dir: Path, receiver: AlertReceiver):
    root = monitor_dir
    demo.write_stream_file(root / "landing", 0, n=N_PER_FILE, drifted=False)
    demo.write_stream_file(root / "landing", 1, n=N_PER_FILE, drifted=True)
    _check(root)
    demo.write_stream_file(root / "landing", 2, n=N_PER_FILE, drifted=False)
    demo.write_stream_file(root / "landing", 3, n=N_PER_FILE, drifted=False)
    _check(root)
    _check(root)
    got = sorted((a["feature"], a["severity"], a["window_start"]) for a in receiver.alerts())
    assert got == [
        ("amount", "critical", "2026-01-05T01:00:00+00:00"),
        ("amount", "recovered", "2026-01-05T02:00:00+00:00"),
        ("country", "recovered", "2026-01-05T02:00:00+00:00"),
        ("country", "warning", "2026-01-05T01:00:00+00:00"),
    ]


def test_schema_and_stale_alerts_are_delivered_exactly_once(
    monitor_dir: Path, receiver: AlertReceiver
):
    root = monitor_dir
    demo.write_stream_file(root / "landing", 0, n=N_PER_FILE, drifted=False)
    _check(root)
    # An upstream change drops a column: the other features are still checked, and the missing
    # column is a critical alert of its own.
    path = demo.write_stream_file(root / "landing", 1, n=N_PER_FILE, drifted=False)
    pq.write_table(pq.read_table(path).drop_columns(["country"]), path)
    second = _check(root)
    assert second["records"] == 2
    rec = {
        r["feature"]: r
        for r in read_history(root / "history").to_pylist()
        if r["window_start"].hour == 1
    }
    assert rec["country"]["n_absent"] == N_PER_FILE and rec["country"]["severity"] == "critical"
    assert rec["amount"]["severity"] == "ok" and rec["amount"]["n"] == N_PER_FILE
    # Then the feed stops: the third idle run raises one stale alert; more idle runs add none.
    for _ in range(4):
        _check(root)
    stale = [e for e in AlertLog.open(root / "history").entries if e["severity"] == "stale"]
    assert len(stale) == 1 and stale[0]["feature"] == "__feed__"
    # Data returns: one recovery for the feed.
    demo.write_stream_file(root / "landing", 2, n=N_PER_FILE, drifted=False)
    _check(root)
    _check(root)
    got = sorted((a["feature"], a["severity"]) for a in receiver.alerts())
    assert got == [
        ("__feed__", "recovered"),
        ("__feed__", "stale"),
        ("country", "critical"),
        ("country", "recovered"),
    ]
    keys = [a["dedup_key"] for a in receiver.alerts()]
    assert len(keys) == len(set(keys))


def test_cli_run_errors_are_one_line(monitor_dir: Path, receiver: AlertReceiver, capsys):
    """A run that cannot start (another run holds the lock) says so in one line, without
    Prefect's traceback; a poison file makes the run exit 3 while the good file is checked."""
    from flows.cli.divmon import main

    config = str(monitor_dir / "monitor.toml")
    _arrive(monitor_dir, [0], drift_from=5)
    other = StateStore(monitor_dir / "history" / "_state")
    with other.locked("another run"):
        assert main(["run", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "divmon run: error: another run holds the run lock" in err
    assert "Traceback" not in err
    (monitor_dir / "landing" / "events-bad.parquet").write_bytes(b"PAR1 not really")
    assert main(["run", "--config", config]) == 3
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["records"] == 2 and out["failed_files"][0]["file"] == "landing/events-bad.parquet"
    assert "1 input file(s) failed (0 quarantined; divmon files list)" in captured.err


def test_the_flow_writes_its_last_success_under_the_run_lock(monitor_dir: Path, monkeypatch):
    """Deterministic interleaving of the race seen in 1 of 85 rounds of two ``divmon run``: a
    second run starts while the flow writes ``last_success.json`` (temp file written, not yet
    renamed). It must be refused; the flow used to write after ``run_monitor`` had released
    the lock, so the second run took it, removed the live temp file and the first run failed
    (StorageNotFound, exit 2)."""
    from divtransforms import storage
    from flows.monitor.run import run_monitor
    from flows.monitor.state import LockHeld
    from flows.stack.metrics import SUCCESS_FILE

    root = monitor_dir
    _arrive(root, [0], drift_from=9)
    write_local = storage._local.write
    second: list[str] = []

    def write_then_second_run(path, data, if_version):
        if path.name != SUCCESS_FILE or second:
            return write_local(path, data, if_version)

        def writer(fh):
            fh.write(data)
            fh.flush()
            try:
                run_monitor(load_config(root / "monitor.toml"))
                second.append("ran")
            except LockHeld:
                second.append("refused")

        return write_local(path, writer, if_version)

    monkeypatch.setattr(storage._local, "write", write_then_second_run)
    out = _check(root)
    assert out["ok"] and out["files"] == 1
    assert second == ["refused"]
    assert (root / "history" / "_state" / SUCCESS_FILE).exists()
