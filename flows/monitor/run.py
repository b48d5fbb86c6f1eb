"""One scheduled drift check, as plain functions (the Prefect flow in flows.check wraps them).

Order of a run (each stage is journaled in the monitor state, see flows.monitor.state), under the
run lock, after removing temp files that killed writes left behind:

1. recover: finish a run that crashed (same run id, same files), so nothing is lost or doubled;
2. discover: the files matching ``source.paths`` that the ledger has not seen, and failed files
   due for another try (names follow the readers' rule, ``pipelines.io.is_data_file``);
3. check: the check job over those files (in this process for local files and no runner
   option, else on Beam), with the running MLE state of earlier runs. A file
   that fails is taken out of the batch and recorded as failed (``flows.monitor.quarantine`` finds
   it), quarantined after ``source.quarantine_after`` runs; a planned file that vanished is dropped.
   The policy sets each record's severity; the records go to the history; the ledger, MLE state
   and journal are committed together (stage ``recorded``);
4. alert: the tracker (event-time order, consecutive windows, cooldown, recovery) turns the run's
   records into alerts, plus one ``input-error`` alert for the files the run quarantined; new
   dedup keys go to the alert log and become Prefect events (deterministic ids);
5. deliver: outstanding alerts in the outbox are sent to their targets within the run's delivery
   budget (what fails or does not fit is kept for the next run);
6. roll: a rolling reference (``[reference] rolling``, ``flows.monitor.rolling``) folds the
   runs' checked windows and their breaches, and rolls when due;
7. finish: the caller's ``under_lock`` (the flow's exports, last-success stamp and metrics
   textfile), still under the lock: every write into the state folder happens while it is held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from divtransforms import storage
from divtransforms.alerting import AlertTracker
from divtransforms.compare import new_run_id
from divtransforms.policy import Policy
from divtransforms.profile import ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, sort_records
from divtransforms.storage import remove_stale_temp_files
from flows.alerts.outbox import (
    ALERTS_FILE,
    AlertLog,
    DeliverySummary,
    Notifier,
    deliver_outstanding,
)
from flows.config import MonitorConfig
from flows.monitor.discovery import discover, exists, list_files
from flows.monitor.freshness import freshness_stage
from flows.monitor.history import append_records, read_history
from flows.monitor.quarantine import find_culprits, input_failure
from flows.monitor.state import FileEntry, MonitorState, StateStore

log = logging.getLogger(__name__)

Emitter = Callable[[Mapping[str, Any]], bool]
JobHook = Callable[[Any], None]  # gets the pipelines.remote.DataflowJob of a submitted job
# a logger, or the Prefect run logger (a LoggerAdapter) the flow passes
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class RunSummary:
    """What one ``run_monitor`` call did."""

    run_ids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    records: pa.Table = field(default_factory=DRIFT_RECORD_SCHEMA.empty_table)
    n_rows_read: int = 0
    new_alerts: list[dict[str, Any]] = field(default_factory=list)
    delivery: DeliverySummary = field(default_factory=DeliverySummary)
    recovered: bool = False
    reference_id: str = ""
    exports: Any = None  # flows.stack.exports.ExportSummary when [[export]] targets are configured
    dataflow_jobs: list[dict[str, Any]] = field(default_factory=list)  # DataflowJob.to_dict()
    failed_files: list[dict[str, Any]] = field(default_factory=list)  # {file, reason, status}
    dropped_files: list[str] = field(default_factory=list)  # vanished after being planned
    quarantined: list[str] = field(default_factory=list)  # left alone (quarantined earlier)
    reference_roll: dict[str, Any] | None = None  # a rolling reference's roll after this run

    @property
    def ok(self) -> bool:
        """No input file failed and every alert was delivered."""
        return not self.failed_files and not self.delivery.failed and not self.delivery.deferred

    def breaches(self) -> list[dict[str, Any]]:
        return [r for r in self.records.to_pylist() if r["severity"] in ("warning", "critical")]


def _run_check(
    config: MonitorConfig,
    profile: ReferenceProfile,
    state: MonitorState,
    run_id: str,
    paths: list[str],
    policy: Policy,
    on_job: JobHook | None = None,
):
    from pipelines import engine
    from pipelines.spec import CheckJob, Source

    job = CheckJob(
        profile,
        Source(
            tuple(paths),
            input_format=config.source.format,
            csv=_csv_dialect(config),
        ),
        window=config.window.size,
        timestamp_column=config.source.timestamp_column,
        timestamp_format=config.source.timestamp_format,
        policy=policy,  # records are assessed once, here, with the monitor's policy
        mle_state=state.mle_state or None,
        run_id=run_id,
        season=config.reference.season,
        max_future=config.source.max_future,
        max_age=config.source.max_age,
        keep_windows=config.reference.rolling is not None,
    )
    # pipelines.engine: local files and no Beam option run in this process (records are Beam's
    # bit for bit, tests/pipelines/test_local_engine.py), without importing Beam or starting a
    # runner; else the Beam job, which on a remote runner writes to
    # <temp_location>/divmon/<monitor>/<run id>/ and reads it back (pipelines.remote.work_folder).
    return engine.run_check(
        job,
        config.runner.pipeline_args,
        work_name=config.name,
        on_job=on_job,
        inputs_option="source.paths",
    )


def _csv_dialect(config: MonitorConfig) -> Any:
    """The ``[source] csv`` table as the readers' ``pipelines.io.CsvDialect`` (None: unset)."""
    csv = config.source.csv
    if csv is None:
        return None
    from pipelines.io import CsvDialect

    return CsvDialect(csv.delimiter, csv.quote, csv.encoding, csv.header, tuple(csv.names))


def check_stage(
    config: MonitorConfig,
    profile: ReferenceProfile,
    state: MonitorState,
    store: StateStore,
    run_id: str,
    files: list[str],
    policy: Policy,
    logger: Log,
    on_job: JobHook | None = None,
) -> tuple[pa.Table, int]:
    """Check of ``files`` (ledger keys: in this process for local files and no runner option,
    else the Beam job) -> history; commits ledger + MLE state + journal ``recorded``.
    ``on_job`` gets the Dataflow job when the check runs there."""
    paths = [store.path_of(k) for k in files]
    result = _run_check(config, profile, state, run_id, paths, policy, on_job)
    records = sort_records(result.records)
    store.check_lock()  # a run that lost its lease writes nothing more, history included
    append_records(config.history_dir, records, run_id)
    if result.windows is not None:  # a rolling reference's input, folded after the run
        from flows.monitor.rolling import keep_windows

        keep_windows(config, run_id, result.windows, profile.reference_id)
    for path, (size, mtime) in list_files(paths).items():
        state.ledger[store.key(path)] = FileEntry(size, mtime, run_id)
    state.mle_state = dict(result.mle_state)
    pending = state.pending or {}
    state.pending = {
        **pending,
        "run_id": run_id,
        "files": files,
        "stage": "recorded",
        "n_rows_read": int(result.n_rows_read),
    }
    store.save(state)
    logger.info(
        "run %s: %d files, %d rows, %d records written to %s",
        run_id,
        len(files),
        result.n_rows_read,
        records.num_rows,
        config.history_dir,
    )
    return records, int(result.n_rows_read)


def check_planned(
    config: MonitorConfig,
    profile: ReferenceProfile,
    state: MonitorState,
    store: StateStore,
    policy: Policy,
    logger: Log,
    on_job: JobHook | None = None,
) -> tuple[pa.Table, int]:
    """Check the journal's planned files; a file that fails to read or check is taken out of
    the plan and recorded as failed (quarantined after ``source.quarantine_after`` runs), and the
    rest is checked. A planned file that has disappeared is dropped with a note."""
    pending = state.pending
    assert pending is not None and pending["stage"] == "planned"
    run_id = pending["run_id"]
    pending.setdefault("failed", [])
    while True:
        files = list(pending["files"])
        gone = [k for k in files if not exists(store.path_of(k))]
        if gone:
            for key in gone:
                logger.warning(
                    "%s disappeared after it was planned; dropped from run %s", key, run_id
                )
            pending["files"] = [k for k in files if k not in gone]
            pending.setdefault("dropped", []).extend(gone)
            store.save(state)
            continue
        if not files:
            return DRIFT_RECORD_SCHEMA.empty_table(), 0
        try:
            return check_stage(config, profile, state, store, run_id, files, policy, logger, on_job)
        except Exception as exc:
            if not input_failure(exc):
                raise
            culprits = find_culprits(
                exc,
                [store.path_of(k) for k in files],
                lambda paths: _run_check(config, profile, state, run_id, paths, policy, on_job),
                logger,
            )
            if not culprits:
                raise
        for path, reason in culprits.items():
            key = store.key(path)
            reason = reason.removeprefix(f"{path}: ")
            try:
                fp = list_files([path])[path]
            except KeyError:
                fp = (-1, -1)
            entry = state.record_failure(key, fp, run_id, reason, config.source.quarantine_after)
            pending["failed"].append(
                {"file": key, "reason": reason, "status": entry.status, "attempts": entry.attempts}
            )
            logger.error(
                "%s: %s (attempt %d of %d%s)",
                key,
                reason,
                entry.attempts,
                config.source.quarantine_after,
                "; quarantined" if entry.status == "quarantined" else "; retried next run",
            )
        pending["files"] = [k for k in files if store.path_of(k) not in culprits]
        store.save(state)


def alert_stage(
    config: MonitorConfig,
    state: MonitorState,
    store: StateStore,
    run_id: str,
    policy: Policy,
    reference_id: str,
    logger: Log,
) -> list[dict[str, Any]]:
    """The run's records (from the history) -> tracker -> new alert-log entries; commits."""
    records = read_history(config.history_dir, run_id).to_pylist()
    tracker = AlertTracker(policy, state.tracker, max_future=config.source.max_future_seconds)
    decisions = tracker.run(records)
    reasons = {
        i: d.reason or d.record.get("severity_reason") or policy.explain(d.record)["reason"]
        for i, d in enumerate(decisions)
    }
    alert_log = AlertLog.open(config.history_dir)
    new = alert_log.add(
        decisions,
        reference_id=reference_id,
        metric_for=lambda f: policy.for_feature(f).metric,
        targets=[t.name for t in config.notify],
        run_id=run_id,
        reasons=reasons,
    )
    pending = state.pending or {}
    quarantined = [f for f in pending.get("failed", []) if f["status"] == "quarantined"]
    input_alert = alert_log.add_input_error(
        quarantined, targets=[t.name for t in config.notify], run_id=run_id
    )
    if input_alert is not None:
        new.append(input_alert)
    alert_log.save()
    state.tracker = tracker.to_dict()
    state.pending = None
    state.runs.append(
        {
            "run_id": run_id,
            "finished_at": datetime.now(UTC).isoformat(),
            "records": len(records),
            "alerts": len(new),
            "files": len(pending.get("files", [])),
            "failed_files": [f["file"] for f in pending.get("failed", [])],
            "dropped_files": list(pending.get("dropped", [])),
        }
    )
    store.save(state)
    for e in new:
        if e["severity"] == "input-error":
            logger.error("input-error alert: %s", e["reason"])
            continue
        logger.warning(
            "drift %s: %s window %s..%s (%s)",
            e["severity"],
            e["feature"],
            e["window_start"],
            e["window_end"],
            e["reason"],
        )
    return new


def emit_events(config: MonitorConfig, emit: Emitter, logger: Log) -> int:
    """Emit the event of every logged alert not emitted yet; returns how many."""
    alert_log = AlertLog.open(config.history_dir)
    count = 0
    for entry in alert_log.entries:
        if entry.get("event_emitted"):
            continue
        if emit(entry):
            entry["event_emitted"] = True
            count += 1
            alert_log.save()
    if count:
        logger.info("emitted %d drift event(s)", count)
    return count


def monitor_reference(config: MonitorConfig) -> ReferenceProfile:
    """The monitor's current reference profile (``pipelines.spec.load_reference``)."""
    from pipelines.spec import load_reference

    path = config.reference_path
    if not storage.exists(path):
        raise FileNotFoundError(
            f"reference profile {path} does not exist; build it first "
            f"(divmon run --reference --config ...)"
        )
    return load_reference(str(path))


def run_monitor(
    config: MonitorConfig,
    *,
    notifiers: Mapping[str, Notifier] | None = None,
    retries: Mapping[str, tuple[int, float]] | None = None,
    emit: Emitter | None = None,
    logger: Log | None = None,
    run_id: str | None = None,
    budget_seconds: float | None = None,
    on_job: JobHook | None = None,
    under_lock: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """One drift check: recover, discover, check, alert, deliver (see module docstring).

    A check that runs on Dataflow is logged (job id, console URL), kept in
    ``summary.dataflow_jobs`` and passed to ``on_job`` as soon as it is submitted.
    ``under_lock`` makes the run's last writes while the run still holds its lock (the flow's
    exports, last-success stamp and metrics: ``flows.check.stack_writes``); a write after the
    release would race the next run's temp-file cleanup."""
    logger = logger or log
    policy = config.build_policy()
    seed = profile = monitor_reference(config)
    store = StateStore.for_config(config)
    summary = RunSummary(reference_id=profile.reference_id)

    def job_started(job) -> None:
        logger.info("started %s", job.describe())
        summary.dataflow_jobs.append(job.to_dict())
        if on_job is not None:
            on_job(job)

    tables: list[pa.Table] = []
    with store.locked(owner=f"run {run_id or 'drift_check'}"):
        removed = store.clean_temp_files() + remove_stale_temp_files(
            config.history_dir, older_than=store.lease_seconds
        )
        if removed:
            logger.info("removed %d temp file(s) left by an interrupted write", removed)
        state = store.load()
        if config.reference.rolling is not None:
            from flows.monitor.rolling import rolling_reference

            profile, state.mle_state = rolling_reference(config, seed, state.mle_state, logger)
            summary.reference_id = profile.reference_id
        if state.pending is not None:
            pending = state.pending
            summary.recovered = True
            logger.warning(
                "resuming run %s (stage %s) left unfinished by an earlier attempt",
                pending["run_id"],
                pending["stage"],
            )
            _finish_run(config, profile, state, store, policy, logger, summary, tables, job_started)
        found = discover(config, state, store)
        summary.changed_files = found.changed
        summary.quarantined = list(found.quarantined)
        for key in found.changed:
            logger.warning(
                "%s changed after it was checked; input files are treated as "
                "immutable, so it is not checked again (write new data to new files)",
                key,
            )
        if found.quarantined:
            logger.warning(
                "%d quarantined file(s) not checked (divmon files list|retry|forget): %s",
                len(found.quarantined),
                ", ".join(found.quarantined),
            )
        plan = found.plan
        if plan:
            rid = run_id if run_id and run_id not in summary.run_ids else new_run_id()
            state.pending = {"run_id": rid, "files": plan, "stage": "planned", "failed": []}
            store.save(state)
            _finish_run(config, profile, state, store, policy, logger, summary, tables, job_started)
        else:
            logger.info("no new files under %s", ", ".join(config.source.paths))
        summary.new_alerts += freshness_stage(
            config,
            state,
            store,
            # a file that failed (all its event times implausible, say) is no sign of life
            found_data=bool(set(found.new) - {f["file"] for f in summary.failed_files})
            or _checked_since_freshness(state),
            reference_id=profile.reference_id,
            run_id=summary.run_ids[-1] if summary.run_ids else run_id or new_run_id(),
            logger=logger,
        )
        if emit is not None:
            emit_events(config, emit, logger)
        if notifiers is not None:
            alert_log = AlertLog.open(config.history_dir)
            budget = config.delivery.budget_seconds if budget_seconds is None else budget_seconds
            summary.delivery = deliver_outstanding(
                alert_log, notifiers, retries=retries, logger=logger, budget_seconds=budget
            )
            d = summary.delivery
            if d.delivered or d.failed or d.deferred:
                logger.info(
                    "alert delivery: %d delivered, %d failed, %d deferred%s",
                    d.delivered,
                    d.failed,
                    d.deferred,
                    " (kept in the outbox for the next run)" if d.failed or d.deferred else "",
                )
        store.check_lock()  # a run that lost its lease writes nothing more
        if config.reference.rolling is not None:
            from flows.monitor.rolling import after_run

            summary.reference_roll = after_run(config, seed, logger)
        if under_lock is not None:
            under_lock(summary)
    if tables:
        summary.records = sort_records(
            pa.concat_tables([t.cast(DRIFT_RECORD_SCHEMA) for t in tables])
        )
    return summary


def _checked_since_freshness(state: MonitorState) -> bool:
    """Did a run check files after freshness was last told about data? (A run killed after its
    commit, or resumed, checked data that no discovery of this run sees as new.)"""
    last = (state.freshness or {}).get("last_data_at")
    return any(
        r.get("files") and (last is None or str(r.get("finished_at", "")) > last)
        for r in state.runs[-20:]
    )


def _finish_run(
    config: MonitorConfig,
    profile: ReferenceProfile,
    state: MonitorState,
    store: StateStore,
    policy: Policy,
    logger: Log,
    summary: RunSummary,
    tables: list[pa.Table],
    on_job: JobHook | None = None,
) -> None:
    """Take the journaled run (``state.pending``) to its end: check (quarantining bad files),
    record, alert."""
    pending = state.pending
    assert pending is not None
    rid = pending["run_id"]
    if pending["stage"] == "planned":
        table, n_rows = check_planned(config, profile, state, store, policy, logger, on_job)
        summary.n_rows_read += n_rows
        tables.append(table)
        pending = state.pending  # as check_planned left the journal
        assert pending is not None
        if not pending["files"]:  # nothing left to check: commit the journal as recorded
            pending["stage"] = "recorded"
            store.save(state)
    else:
        tables.append(read_history(config.history_dir, rid))
    pending = state.pending
    assert pending is not None
    summary.run_ids.append(rid)
    summary.files.extend(pending["files"])
    summary.failed_files.extend(pending.get("failed", []))
    summary.dropped_files.extend(pending.get("dropped", []))
    summary.new_alerts += alert_stage(
        config, state, store, rid, policy, profile.reference_id, logger
    )


def render_dashboard(config: MonitorConfig, logger: Log | None = None) -> storage.Location | None:
    """Render the configured dashboard (flows.dashboard); None when no path is configured."""
    out = config.dashboard_path
    if out is None:
        return None
    from flows.dashboard import render_dashboard as render

    alerts = storage.join(config.history_dir, ALERTS_FILE)
    path = render(
        config.history_dir,
        out,
        thresholds=config.thresholds(),
        alerts_path=alerts if storage.exists(alerts) else None,
        title=config.dashboard.title,
    )
    (logger or log).info("dashboard written to %s", path)
    return storage.location(path)
