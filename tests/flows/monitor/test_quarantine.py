"""One bad file never stops a monitor: it is taken out of the batch, retried a bounded number of
runs, quarantined with one input-error alert, and can be released with ``divmon files``."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from flows.alerts.outbox import AlertLog
from flows.config import load_config
from flows.demo import run as demo
from flows.monitor.history import read_history
from flows.monitor.run import run_monitor
from flows.monitor.state import StateStore

pytestmark = [pytest.mark.beam]
N = 400


def _run(root: Path, **kwargs):
    return run_monitor(load_config(root / "monitor.toml"), **kwargs)


def _good(root: Path, hour: int) -> Path:
    return demo.write_stream_file(root / "landing", hour, n=N, drifted=False)


def _corrupt_page(root: Path, name: str) -> Path:
    """A Parquet file whose footer is fine and whose first data page is garbage (fails inside
    the Beam job, not when it is planned)."""
    src = next(iter(sorted((root / "landing").glob("events-*.parquet"))))
    data = src.read_bytes()
    noise = bytes(random.Random(1).randrange(256) for _ in range(400))
    path = root / "landing" / name
    path.write_bytes(data[:8] + noise + data[408:])
    return path


def _ledger(root: Path) -> dict:
    return StateStore(root / "history" / "_state", root=root).load().ledger


def test_poison_file_is_retried_then_quarantined_and_the_rest_goes_on(monitor_dir: Path):
    root = monitor_dir
    for h in range(3):
        _good(root, h)
    _corrupt_page(root, "events-001b.parquet")  # in the middle of the batch
    (root / "landing" / "truncated.parquet").write_bytes(b"PAR1\x00\x00")  # fails when planned
    first = _run(root)
    assert first.n_rows_read == 3 * N  # every good row, once
    assert {f["file"] for f in first.failed_files} == {
        "landing/events-001b.parquet",
        "landing/truncated.parquet",
    }
    reasons = {f["file"]: f["reason"] for f in first.failed_files}
    assert "corrupt Parquet data in row groups [0]" in reasons["landing/events-001b.parquet"]
    assert "not a readable Parquet file" in reasons["landing/truncated.parquet"]
    assert all("\n" not in r for r in reasons.values())
    assert not first.ok and first.new_alerts == []  # not quarantined yet: no alert
    windows = read_history(root / "history").num_rows
    assert windows == 6

    _good(root, 3)  # later files are checked as usual
    second = _run(root)
    assert second.n_rows_read == N
    assert [f["attempts"] for f in second.failed_files] == [2, 2]
    third = _run(root)
    assert {f["status"] for f in third.failed_files} == {"quarantined"}
    (alert,) = third.new_alerts
    assert alert["severity"] == "input-error"
    assert "events-001b.parquet" in alert["reason"] and "truncated.parquet" in alert["reason"]
    assert {f["file"] for f in alert["files"]} == {
        "landing/events-001b.parquet",
        "landing/truncated.parquet",
    }

    fourth = _run(root)  # quarantined files are left alone: a clean run, no second alert
    assert fourth.ok and fourth.run_ids == []
    assert sorted(fourth.quarantined) == [
        "landing/events-001b.parquet",
        "landing/truncated.parquet",
    ]
    log = AlertLog.open(root / "history")
    assert [e["severity"] for e in log.entries].count("input-error") == 1
    assert read_history(root / "history").num_rows == 8
    ledger = _ledger(root)
    assert ledger["landing/truncated.parquet"].status == "quarantined"
    assert ledger["landing/truncated.parquet"].attempts == 3


def test_files_commands_list_retry_forget(monitor_dir: Path, capsys):
    from flows.cli.divmon import main

    root = monitor_dir
    _good(root, 0)
    bad = _corrupt_page(root, "events-bad.parquet")
    config = str(root / "monitor.toml")
    toml = (root / "monitor.toml").read_text()
    (root / "monitor.toml").write_text(toml.replace("[source]", "[source]\nquarantine_after = 1"))
    assert _run(root).failed_files[0]["status"] == "quarantined"

    assert main(["files", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "quarantined  landing/events-bad.parquet" in out and "attempts=1" in out
    assert main(["files", "list", "--config", config, "--json", "--all"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} == {"checked", "quarantined"}

    # The file is fixed in place: a changed quarantined file gets a fresh start by itself.
    shutil.copy(root / "landing" / "events-000.parquet", bad)
    again = _run(root)
    assert again.ok and again.n_rows_read == N and _ledger(root)[again.files[0]].status == "checked"

    _corrupt_page(root, "events-bad2.parquet")
    _run(root)
    assert (
        main(["files", "retry", "--config", config, str(root / "landing/events-bad2.parquet")]) == 0
    )
    assert _ledger(root)["landing/events-bad2.parquet"].status == "failed"
    assert _run(root).failed_files[0]["file"] == "landing/events-bad2.parquet"  # retried
    assert main(["files", "forget", "--config", config, "--all-failed"]) == 0
    assert "landing/events-bad2.parquet" not in _ledger(root)
    assert main(["files", "retry", "--config", config, "nope.parquet"]) == 2
    assert "not in the ledger" in capsys.readouterr().err


def test_a_planned_file_that_vanishes_is_dropped_with_a_note(monitor_dir: Path, caplog):
    root = monitor_dir
    _good(root, 0)
    gone = _good(root, 1)
    store = StateStore(root / "history" / "_state", root=root)
    state = store.load()
    state.pending = {
        "run_id": "r-crashed",
        "files": ["landing/events-000.parquet", "landing/events-001.parquet"],
        "stage": "planned",
    }
    store.save(state)
    gone.unlink()
    summary = _run(root)
    assert summary.recovered and summary.run_ids == ["r-crashed"]
    assert summary.dropped_files == ["landing/events-001.parquet"]
    assert summary.n_rows_read == N
    assert "disappeared after it was planned" in caplog.text
    assert store.load().runs[-1]["dropped_files"] == ["landing/events-001.parquet"]


def test_underscore_and_dot_files_are_not_data_for_discovery_or_readers(monitor_dir: Path):
    root = monitor_dir
    src = _good(root, 0)
    shutil.copy(src, root / "landing" / "_events-copy.parquet")
    shutil.copy(src, root / "landing" / ".events-copy.parquet")
    summary = _run(root)
    assert summary.files == ["landing/events-000.parquet"] and summary.ok
    assert _run(root).run_ids == []  # never planned, so never a stop


def test_moved_or_copied_monitor_re_checks_nothing(monitor_dir: Path, tmp_path_factory):
    root = monitor_dir
    _good(root, 0)
    _good(root, 1)
    assert _run(root).n_rows_read == 2 * N
    copy = tmp_path_factory.mktemp("moved") / "monitor"
    shutil.copytree(root, copy)
    again = _run(copy)
    assert again.run_ids == [] and again.n_rows_read == 0
    assert read_history(copy / "history").num_rows == 4
    _good(copy, 2)
    assert _run(copy).files == ["landing/events-002.parquet"]


def test_a_version_1_state_keeps_working(monitor_dir: Path):
    """An absolute-path ledger from before the upgrade is migrated: nothing is re-checked."""
    root = monitor_dir
    _good(root, 0)
    _run(root)
    store = StateStore(root / "history" / "_state", root=root)
    doc = json.loads(store.path.read_text())
    doc["schema_version"] = 1
    doc["ledger"] = {str(root / k): v for k, v in doc["ledger"].items()}
    store.path.write_text(json.dumps(doc))
    assert _run(root).run_ids == []
    assert list(_ledger(root)) == ["landing/events-000.parquet"]


def test_stale_temp_files_are_removed_at_run_start(monitor_dir: Path):
    root = monitor_dir
    state_dir = root / "history" / "_state"
    state_dir.mkdir(parents=True, exist_ok=True)
    stale = [
        root / "history" / "._alerts.json.a1b2c3d4.tmp",
        state_dir / ".state.json.zz99yy88.tmp",
    ]
    for path in stale:  # writers unknown, older than the lease (60 s): abandoned
        path.write_text("{half")
        os.utime(path, (time.time() - 120, time.time() - 120))
    fresh = state_dir / ".last_success.json.qwer5678.tmp"  # might be a write in flight
    fresh.write_text("{half")
    _run(root)
    assert list((root / "history").rglob("*.tmp")) == [fresh]


def test_find_culprits_bisects_an_error_that_names_no_file(tmp_path: Path):
    """An error from deep inside the job (no file named, every file reads fine) is pinned on
    the file by checking halves of the batch; one every file gives alone is blamed on none."""
    from flows.monitor.quarantine import find_culprits

    files = []
    for h in range(7):
        files.append(str(demo.write_stream_file(tmp_path, h, n=50, drifted=False)))
    poison = files[4]
    calls = []

    def check(subset):
        calls.append(list(subset))
        if poison in subset:
            raise OverflowError("date value out of range")

    found = find_culprits(OverflowError("date value out of range"), files, check)
    assert found == {poison: "OverflowError: date value out of range"}
    assert len(calls) <= 2 * 3  # two halves per level, log2(7) levels

    def always(subset):
        raise RuntimeError("the runner is broken")

    assert find_culprits(RuntimeError("the runner is broken"), files, always) == {}
    # a full disk is never the data's fault
    from flows.monitor.quarantine import input_failure

    assert not input_failure(OSError(28, "No space left on device"))
    assert input_failure(OverflowError("x"))


def test_last_writes_happen_under_the_run_lock(monitor_dir: Path, monkeypatch):
    """Deterministic interleaving: while the run writes its last-success stamp (temp file
    written, not yet renamed) a second run starts. It must be refused (the first still holds the
    lock) and the first run's write must land; a run that wrote after releasing the lock let
    the second take the lock and delete the live temp file (StorageNotFound, exit 2)."""
    from divtransforms import storage
    from flows.check import stack_writes
    from flows.monitor.state import LockHeld
    from flows.stack.metrics import SUCCESS_FILE

    root = monitor_dir
    config = load_config(root / "monitor.toml")
    writes = stack_writes(config, logging.getLogger("test"))  # the flow's last writes
    _good(root, 0)
    write_local = storage._local.write
    second: list[str] = []

    def write_then_second_run(path, data, if_version):
        if path.name != SUCCESS_FILE or second:
            return write_local(path, data, if_version)

        def writer(fh):
            fh.write(data)
            fh.flush()
            try:  # between the temp file and its rename: the other run starts
                _run(root)
                second.append("ran")
            except LockHeld as exc:
                second.append(f"refused: {exc}")

        return write_local(path, writer, if_version)

    monkeypatch.setattr(storage._local, "write", write_then_second_run)
    summary = _run(root, under_lock=writes)
    assert summary.ok and summary.n_rows_read == N
    assert len(second) == 1 and second[0].startswith("refused: another run holds"), second
    stamp = json.loads((root / "history" / "_state" / SUCCESS_FILE).read_text())
    assert stamp["schema_version"] == 1 and stamp["finished_at"]


def test_divmon_run_is_refused_before_it_starts_prefect(monitor_dir: Path, monkeypatch, capsys):
    """The run lock is taken before the temporary Prefect API starts: a second ``divmon run``
    is refused at once, at no cost (it used to start Prefect first, 10-25 s, and then often
    found the lock free because the first run had finished meanwhile)."""
    import flows.cli.server
    from flows.cli.divmon import main

    root = monitor_dir
    started: list[str] = []

    def no_prefect(*a, **k):
        started.append("prefect")
        raise AssertionError("the Prefect API was started before the run lock was taken")

    monkeypatch.setattr(flows.cli.server, "prefect_api", no_prefect)
    config = load_config(root / "monitor.toml")
    with StateStore.for_config(config).locked(owner="the first run"):
        code = main(["run", "--config", str(root / "monitor.toml")])
    assert code == 2 and started == []
    err = capsys.readouterr().err
    assert "another run holds the run lock" in err and "the first run" in err, err


def _mis_dated(root: Path, name: str) -> Path:
    """A producer's file with epoch numbers of 1e13 and no format: read as milliseconds, as
    documented, its rows fall in the year 2286."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = demo.synth_frame(np.random.default_rng(7), N, demo.START)
    ts = pa.array(10_000_000_000_000 + np.arange(N, dtype=np.int64) * 1_000)
    path = root / "landing" / name
    pq.write_table(good.set_column(0, "ts", ts), path)
    return path


def test_one_mis_dated_file_does_not_blind_alerting(monitor_dir: Path, caplog):
    """Issue 26: a file dated 2286 used to be accepted (exit 0, no warning) and moved the alert
    tracker's clock there, so every later real window counted as late: one critical per drifted
    window, never a recovery. Now its rows are outside the plausibility horizon: the file is an
    input failure named in the log, retried, quarantined; freshness is not fooled by it; the
    next real drift is alerted and recovered."""
    root = monitor_dir
    _good(root, 0)
    assert _run(root).ok
    store = StateStore(root / "history" / "_state", root=root)
    seen = store.load().freshness["last_data_at"]
    _mis_dated(root, "events-2286.parquet")
    with caplog.at_level("ERROR"):
        first = _run(root)
    assert first.n_rows_read == 0 and first.run_ids  # planned, then taken out of the batch
    (failed,) = first.failed_files
    assert failed["file"] == "landing/events-2286.parquet" and failed["status"] == "failed"
    assert "outside the plausibility horizon" in failed["reason"], failed
    assert "2286-11-20" in failed["reason"] and "max_future 1d" in failed["reason"]
    assert any("events-2286.parquet" in r.getMessage() for r in caplog.records)
    assert store.load().freshness["last_data_at"] == seen  # no sign of life
    assert all(r["window_start"].year == 2026 for r in read_history(root / "history").to_pylist())
    _run(root)
    third = _run(root)
    assert [f["status"] for f in third.failed_files] == ["quarantined"]
    # the input error; and, the mis-dated rows being no sign of life, the feed is stale
    assert [a["severity"] for a in third.new_alerts] == ["input-error", "stale"]
    tracker = store.load().tracker
    assert all(f["newest"] < "2027" for f in tracker["features"].values()), tracker

    demo.write_stream_file(root / "landing", 1, n=N, drifted=True)
    drifted = _run(root)
    demo.write_stream_file(root / "landing", 2, n=N, drifted=False)
    demo.write_stream_file(root / "landing", 3, n=N, drifted=False)
    recovered = _run(root)
    sent = [(a["feature"], a["severity"]) for a in drifted.new_alerts + recovered.new_alerts]
    assert sorted(sent) == [
        ("__feed__", "recovered"),  # real data again: the feed is fresh
        ("amount", "critical"),
        ("amount", "recovered"),
        ("country", "recovered"),
        ("country", "warning"),
    ], sent


def test_rows_beyond_the_horizon_are_counted_and_named_once_per_file(monitor_dir: Path, caplog):
    """A file with a few mis-dated rows is checked: those rows are in no window, counted, and
    one log line names the file and the first such row; the records are those of the file
    without them, bit for bit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.check_job import CheckJob, Source
    from pipelines.local import run_check_local
    from pipelines.spec import load_reference

    root = monitor_dir
    clean = _good(root, 0)
    table = pq.read_table(clean)
    late = pa.array(10**16 + np.arange(5, dtype=np.int64)).cast(table.schema.field("ts").type)
    bad = table.slice(0, 5).set_column(0, "ts", late)  # 2286-11-20
    mixed = root / "mixed" / "events-mixed.parquet"
    mixed.parent.mkdir()
    pq.write_table(pa.concat_tables([table, bad]), mixed, row_group_size=150)
    clean = mixed.parent / "events-clean.parquet"  # the same batches, without the 5 rows
    pq.write_table(table, clean, row_group_size=150)
    profile = load_reference(str(root / "reference" / "reference.json"))

    def check(path):
        source = Source((str(path),))
        job = CheckJob(profile, source, window="1h", timestamp_column="ts", run_id="r1")
        return run_check_local(job)

    with caplog.at_level("WARNING", logger="pipelines.local"):
        got = check(mixed)
    want = check(clean)
    lines = [r.getMessage() for r in caplog.records if "implausible" in r.getMessage()]
    assert len(lines) == 1, lines
    assert str(mixed) in lines[0] and f"first at row {N}" in lines[0], lines
    assert "5 row(s) with an implausible event time" in lines[0] and "2286-11-20" in lines[0]
    assert got.metrics["implausible_event_time"] == 5 and got.metrics["no_event_time"] == 5
    same = [repr(t.drop(["created_at"]).to_pylist()) for t in (got.records, want.records)]
    assert same[0] == same[1]  # (repr: NaN fields compare equal)
