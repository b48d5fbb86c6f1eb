"""One scheduled drift check, as plain functions (the Prefect flow in flows.check wraps them).

Order of a run (each stage is journaled in the monitor state, see flows.state):

1. recover: finish a run that crashed (same run id, same files), so nothing is lost or doubled;
2. discover: the files matching ``source.paths`` that the ledger has not seen;
3. check: the Beam check job over those files, with the running MLE state of earlier runs;
   the policy sets each record's severity; the records go to the history; the ledger, MLE state
   and journal are committed together (stage ``recorded``);
4. alert: the tracker (consecutive windows, cooldown, recovery) turns the run's records into
   alerts; new dedup keys go to the alert log and become Prefect events (deterministic ids);
5. deliver: every outstanding alert in the outbox is sent to its targets (retried next run if it
   still fails).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from divtransforms.alerting import AlertTracker
from divtransforms.compare import new_run_id
from divtransforms.policy import Policy
from divtransforms.profile import ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, sort_records
from flows.alerts import AlertLog, DeliverySummary, Notifier, deliver_outstanding
from flows.config import MonitorConfig
from flows.freshness import freshness_stage
from flows.history import append_records, read_history
from flows.state import FileEntry, MonitorState, StateStore, fingerprint

log = logging.getLogger(__name__)

Emitter = Callable[[Mapping[str, Any]], bool]


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
    exports: Any = None  # flows.exports.ExportSummary when [[export]] targets are configured

    def breaches(self) -> list[dict[str, Any]]:
        return [r for r in self.records.to_pylist() if r["severity"] in ("warning", "critical")]


def list_files(patterns: list[str]) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of the files matching local globs or ``scheme://`` patterns
    (Beam's FileSystems: gs://, s3://, ...)."""
    found: dict[str, tuple[int, int]] = {}
    for pattern in patterns:
        if "://" in pattern:
            from apache_beam.io.filesystems import FileSystems

            for result in FileSystems.match([pattern]):
                for meta in result.metadata_list:
                    mtime = round(float(meta.last_updated_in_seconds or 0) * 1e9)
                    found[meta.path] = (int(meta.size_in_bytes), mtime)
            continue
        for m in glob.glob(pattern, recursive=True):
            if os.path.isfile(m):
                path = os.path.abspath(m)
                found[path] = fingerprint(path)
    return found


def discover(config: MonitorConfig, state: MonitorState) -> tuple[list[str], list[str]]:
    """(new files, files that changed after they were checked), sorted."""
    new, changed = [], []
    for path, fp in sorted(list_files(config.source_patterns()).items()):
        entry = state.ledger.get(path)
        if entry is None:
            new.append(path)
        elif (entry.size, entry.mtime_ns) != fp:
            changed.append(path)
    return new, changed


def check_stage(
    config: MonitorConfig,
    profile: ReferenceProfile,
    state: MonitorState,
    store: StateStore,
    run_id: str,
    files: list[str],
    policy: Policy,
    logger: logging.Logger,
) -> tuple[pa.Table, int]:
    """Beam check of ``files`` -> history; commits ledger + MLE state + journal ``recorded``."""
    from pipelines.check_job import CheckJob, Source, run_check

    job = CheckJob(
        profile,
        Source(tuple(files), input_format=config.source.format),
        window=config.window.size,
        timestamp_column=config.source.timestamp_column,
        timestamp_format=config.source.timestamp_format,
        policy=policy,  # records are assessed once, here, with the monitor's policy
        mle_state=state.mle_state or None,
        run_id=run_id,
    )
    result = run_check(job, list(config.runner.pipeline_args))
    records = sort_records(result.records)
    append_records(config.history_dir, records, run_id)
    for path, (size, mtime) in list_files(files).items():
        state.ledger[path] = FileEntry(size, mtime, run_id)
    state.mle_state = dict(result.mle_state)
    state.pending = {
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


def alert_stage(
    config: MonitorConfig,
    state: MonitorState,
    store: StateStore,
    run_id: str,
    policy: Policy,
    reference_id: str,
    logger: logging.Logger,
) -> list[dict[str, Any]]:
    """The run's records (from the history) -> tracker -> new alert-log entries; commits."""
    records = read_history(config.history_dir, run_id).to_pylist()
    tracker = AlertTracker(policy, state.tracker)
    decisions = tracker.run(records)
    reasons = {
        i: d.record.get("severity_reason") or policy.explain(d.record)["reason"]
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
    alert_log.save()
    state.tracker = tracker.to_dict()
    state.pending = None
    state.runs.append(
        {
            "run_id": run_id,
            "finished_at": datetime.now(UTC).isoformat(),
            "records": len(records),
            "alerts": len(new),
        }
    )
    store.save(state)
    for e in new:
        logger.warning(
            "drift %s: %s window %s..%s (%s)",
            e["severity"],
            e["feature"],
            e["window_start"],
            e["window_end"],
            e["reason"],
        )
    return new


def emit_events(config: MonitorConfig, emit: Emitter, logger: logging.Logger) -> int:
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
    if not path.exists():
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
    logger: logging.Logger | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """One drift check: recover, discover, check, alert, deliver (see module docstring)."""
    logger = logger or log
    policy = config.build_policy()
    profile = monitor_reference(config)
    store = StateStore(config.state_dir)
    store.acquire(owner=f"run {run_id or 'drift_check'}")
    summary = RunSummary(reference_id=profile.reference_id)
    tables = []
    try:
        state = store.load()
        if state.pending is not None:
            pending = state.pending
            summary.recovered = True
            logger.warning(
                "resuming run %s (stage %s) left unfinished by an earlier attempt",
                pending["run_id"],
                pending["stage"],
            )
            if pending["stage"] == "planned":
                table, n_rows = check_stage(
                    config,
                    profile,
                    state,
                    store,
                    pending["run_id"],
                    list(pending["files"]),
                    policy,
                    logger,
                )
                summary.n_rows_read += n_rows
                tables.append(table)
            else:
                tables.append(read_history(config.history_dir, pending["run_id"]))
            summary.run_ids.append(pending["run_id"])
            summary.files.extend(pending["files"])
            summary.new_alerts += alert_stage(
                config, state, store, pending["run_id"], policy, profile.reference_id, logger
            )
        new, changed = discover(config, state)
        summary.changed_files = changed
        for path in changed:
            logger.warning(
                "%s changed after it was checked; input files are treated as "
                "immutable, so it is not checked again (write new data to new files)",
                path,
            )
        if new:
            rid = run_id if run_id and run_id not in summary.run_ids else new_run_id()
            state.pending = {"run_id": rid, "files": new, "stage": "planned"}
            store.save(state)
            table, n_rows = check_stage(config, profile, state, store, rid, new, policy, logger)
            summary.n_rows_read += n_rows
            tables.append(table)
            summary.run_ids.append(rid)
            summary.files.extend(new)
            summary.new_alerts += alert_stage(
                config, state, store, rid, policy, profile.reference_id, logger
            )
        else:
            logger.info("no new files under %s", ", ".join(config.source.paths))
        summary.new_alerts += freshness_stage(
            config,
            state,
            store,
            found_data=bool(new),
            reference_id=profile.reference_id,
            run_id=summary.run_ids[-1] if summary.run_ids else run_id or new_run_id(),
            logger=logger,
        )
        if emit is not None:
            emit_events(config, emit, logger)
        if notifiers is not None:
            alert_log = AlertLog.open(config.history_dir)
            summary.delivery = deliver_outstanding(
                alert_log, notifiers, retries=retries, logger=logger
            )
            if summary.delivery.delivered or summary.delivery.failed:
                logger.info(
                    "alert delivery: %d delivered, %d failed%s",
                    summary.delivery.delivered,
                    summary.delivery.failed,
                    " (kept in the outbox for the next run)" if summary.delivery.failed else "",
                )
        if config.export:
            from flows.exports import export_pending

            summary.exports = export_pending(config, logger)
    finally:
        store.release()
    if tables:
        summary.records = sort_records(
            pa.concat_tables([t.cast(DRIFT_RECORD_SCHEMA) for t in tables])
        )
    return summary


def render_dashboard(config: MonitorConfig, logger: logging.Logger | None = None) -> Path | None:
    """Render the configured dashboard (flows.dashboard); None when no path is configured."""
    out = config.dashboard_path
    if out is None:
        return None
    from flows.dashboard import render_dashboard as render

    alerts = config.history_dir / "_alerts.json"
    path = render(
        config.history_dir,
        out,
        thresholds=config.thresholds(),
        alerts_path=alerts if alerts.exists() else None,
        title=config.dashboard.title,
    )
    (logger or log).info("dashboard written to %s", path)
    return Path(path)
