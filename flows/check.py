"""The ``drift_check`` Prefect flow: one scheduled check, with events, alerts and artifacts.

The work is done by :func:`flows.monitor.run.run_monitor` (plain Python); this module adds the
Prefect parts: the run logger, drift events, notification blocks, and per-run artifacts (a table of
the records, a markdown summary of breaches and alerts, a link to the dashboard).
"""

# No ``from __future__ import annotations`` here: ``divmon serve`` runs the flow in a child to
# which Prefect pickles it by value, keeping only the globals its code names; a string
# annotation (``MonitorConfig | None``) would then not resolve when Prefect validates the
# parameters, and every scheduled run would fail.

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from divtransforms import storage
from flows.alerts.events import emit_alert_event
from flows.alerts.notify import build_notifiers, retry_settings
from flows.config import MonitorConfig, config_of
from flows.monitor.run import RunSummary, render_dashboard, run_monitor

_TABLE_COLUMNS = (
    "feature",
    "window_start",
    "window_end",
    "n",
    "n_missing",
    "js_divergence",
    "js_corrected",
    "p_value",
    "mle_p_value",
    "severity",
)


def _fmt(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _num(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "divtransforms"


def stack_writes(config: MonitorConfig, logger: Any) -> Callable[[RunSummary], None]:
    """The run's last writes, for ``run_monitor(under_lock=...)``, which makes them while it holds
    the run lock: the ``[[export]]`` targets (``summary.exports``), the last-success stamp (also
    for a run that found no new data: the schedule is alive) and the metrics textfile or
    Pushgateway, when configured (docs/monitoring-stack.md)."""

    def write(summary: RunSummary) -> None:
        from flows.stack.metrics import publish_metrics, record_success

        if config.export:
            from flows.stack.exports import export_pending

            summary.exports = export_pending(config, logger)
        record_success(config)
        publish_metrics(config, logger)

    return write


def publish_artifacts(
    config: MonitorConfig, summary: RunSummary, dashboard: storage.Location | None
) -> None:
    rows = [{k: _fmt(r.get(k)) for k in _TABLE_COLUMNS} for r in summary.records.to_pylist()]
    key = _key(config.name)
    if rows:
        create_table_artifact(
            rows,
            key=f"{key}-drift-records",
            description=f"Drift records of run(s) {', '.join(summary.run_ids)}",
        )
    lines = [
        f"# Drift check `{config.name}`",
        "",
        f"- reference: `{summary.reference_id}`",
        f"- files checked: {len(summary.files)}, rows: {summary.n_rows_read}, "
        f"records: {summary.records.num_rows}",
        f"- alerts: {len(summary.new_alerts)} new; delivery: {summary.delivery.delivered} "
        f"delivered, {summary.delivery.failed} failed, {summary.delivery.deferred} deferred"
        + (" (kept in the outbox)" if summary.delivery.failed or summary.delivery.deferred else ""),
    ]
    for f in summary.failed_files:
        lines.append(f"- input file `{f['file']}` {f['status']}: {f['reason']}")
    if summary.quarantined:
        lines.append(f"- {len(summary.quarantined)} quarantined file(s) left alone")
    if summary.recovered:
        lines.append("- resumed a run left unfinished by an earlier attempt")
    roll = summary.reference_roll
    if roll:  # a rolling reference rolled after this run (docs/policy.md, Rolling references)
        lines.append(
            f"- reference rolled: `{roll['reference_id']}` (windows ending in "
            f"({roll['from']}, {roll['anchor']}], seed `{roll['seed']}`)"
            + "".join(
                f"; {name} restarts at {e['restarted']}"
                for name, e in roll["features"].items()
                if "restarted" in e
            )
            + (f"; the seed's for {', '.join(roll['fallback'])}" if roll["fallback"] else "")
        )
    if summary.changed_files:
        lines.append(
            f"- {len(summary.changed_files)} file(s) changed after being checked (not re-checked)"
        )
    stale = [a for a in summary.new_alerts if a.get("severity") == "stale"]
    if stale:
        lines.append(f"- the feed is stale: {stale[0].get('reason', '')}")
    breaches = summary.breaches()
    if breaches:
        lines += [
            "",
            "| feature | window | severity | JS (bits) | corrected | p | quality |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in breaches:
            quality = r.get("quality_severity") or "-"
            if quality not in ("ok", "-"):
                quality += ": " + (r.get("quality_reason") or "").replace("|", "/")
            lines.append(
                f"| {r['feature']} | {_fmt(r['window_start'])} | {r['severity']} | "
                f"{_num(r['js_divergence'], '.4g')} | {_num(r['js_corrected'], '.4g')} | "
                f"{_num(r['p_value'], '.2g')} | {quality} |"
            )
    else:
        lines += ["", "No breaches in this run."]
    for job in summary.dataflow_jobs:
        lines += ["", f"Dataflow job [`{job['job_id']}`]({job['url']}) ({job['region']})"]
    if dashboard is not None:
        lines += ["", f"Dashboard: `{dashboard}`"]
    create_markdown_artifact(
        "\n".join(lines), key=f"{key}-drift-summary", description="Breaches and alerts of this run"
    )
    if dashboard is not None:
        create_link_artifact(
            storage.browser_url(dashboard), link_text="drift dashboard", key=f"{key}-dashboard"
        )


def publish_dataflow_job(job: Any, key: str, logger: Any = None) -> None:
    """A submitted Dataflow job (``pipelines.remote.DataflowJob``) on the flow run: its console
    URL as a link artifact; a streaming job's log line says how to stop it."""
    if logger is not None and job.streaming:
        logger.info("streaming job %s %s", job.job_id, job.stop_hint())
    create_link_artifact(
        job.url,
        link_text=f"Dataflow job {job.job_id}",
        key=f"{_key(key)}-dataflow-job",
        description=f"{job.describe()} (project {job.project}, region {job.region})",
    )


#: ``divmon run`` exit codes beyond 0 (ok), 1 (failure) and 2 (bad input or configuration).
EXIT_INPUT_FILES_FAILED = 3  # input files failed (retried next run) or were quarantined
EXIT_DELIVERY_FAILED = 4  # alerts could not all be delivered (kept in the outbox)


def outcome(summary: RunSummary) -> dict[str, Any]:
    """The run's result document (printed by ``divmon run``, returned by the flow)."""
    d = summary.delivery
    return {
        "ok": summary.ok,
        "run_ids": summary.run_ids,
        "files": len(summary.files),
        "records": summary.records.num_rows,
        "alerts": len(summary.new_alerts),
        "delivered": d.delivered,
        "failed": d.failed,
        "deferred": d.deferred,
        "failed_files": summary.failed_files,
        "dropped_files": summary.dropped_files,
        "quarantined_files": summary.quarantined
        + [f["file"] for f in summary.failed_files if f["status"] == "quarantined"],
        "dataflow_jobs": summary.dataflow_jobs,
    }


def problems(out: dict[str, Any]) -> str:
    """One line saying what went wrong in a run ("" when nothing did)."""
    parts = []
    if out["failed_files"]:
        n_q = sum(1 for f in out["failed_files"] if f["status"] == "quarantined")
        parts.append(
            f"{len(out['failed_files'])} input file(s) failed ({n_q} quarantined; "
            "divmon files list)"
        )
    if out["failed"] or out["deferred"]:
        parts.append(
            f"{out['failed']} alert delivery(ies) failed, {out['deferred']} deferred "
            "(kept in the outbox)"
        )
    return "; ".join(parts)


class DriftCheckFailed(Exception):
    """A ``drift_check`` run that did its work but could not finish it all: input files failed
    (:class:`InputFilesFailed`) or alerts could not be delivered (:class:`DeliveryFailed`).

    The flow raises it, so the flow run ends ``Failed`` with this message, a direct call or a
    parent flow gets this exception, and ``divmon run`` maps it to its exit code. ``result`` is
    the run's result document (as returned by a run that succeeded; also the flow run's
    ``{name}-result`` artifact)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect may copy a flow's exception
        return (type(self), (str(self), self.result))


class InputFilesFailed(DriftCheckFailed):
    """Input files failed (they are retried by the next run) or were quarantined."""


class DeliveryFailed(DriftCheckFailed):
    """Alerts could not all be delivered; they are kept in the outbox for the next run."""


def failure_of(out: dict[str, Any]) -> DriftCheckFailed | None:
    """The exception a run with this result document ends with (``None`` when it succeeded):
    input files first, as in :func:`exit_code`."""
    if out["ok"]:
        return None
    cls = InputFilesFailed if out["failed_files"] else DeliveryFailed
    return cls(problems(out) or "the run did not finish its work", out)


def publish_result(config: MonitorConfig, out: dict[str, Any]) -> None:
    """The result document as a markdown artifact of the flow run (kept also when it failed)."""
    text = json.dumps(out, indent=2, sort_keys=True, default=str)
    create_markdown_artifact(
        f"```json\n{text}\n```",
        key=f"{_key(config.name)}-result",
        description="The result document of this run",
    )


@flow(name="drift_check", log_prints=False, retries=0)
def drift_check(
    config_path: str | None = None, config: MonitorConfig | None = None
) -> dict[str, Any]:
    """Check the data that arrived since the last run against the reference; alert on drift.

    The monitor configuration is a TOML file (``config_path``) or the configuration itself
    (``config``, as ``divmon deploy`` stores it in the deployment). Returns the result document.
    When input files failed or alerts could not be delivered the flow run ends ``Failed`` with a
    message saying so and :class:`InputFilesFailed` or :class:`DeliveryFailed` as its data (both
    :class:`DriftCheckFailed`, whose ``result`` is the document): a direct call or a parent flow
    raises it. A
    check run on Dataflow is a link artifact (the job's console page) and in the document
    (``dataflow_jobs``); the document is also the artifact ``{name}-result``."""
    logger = get_run_logger()
    config = config_of(config_path, config)
    summary = run_monitor(
        config,
        notifiers=build_notifiers(config),
        retries=retry_settings(config),
        emit=lambda entry: emit_alert_event(entry, config.name),
        logger=logger,
        on_job=lambda job: publish_dataflow_job(job, config.name, logger),
        under_lock=stack_writes(config, logger),
    )
    dashboard = None
    if config.dashboard_path is not None:
        dashboard = render_dashboard(config, logger)
    publish_artifacts(config, summary, dashboard)
    # (run_monitor wrote the last-success stamp and the metrics textfile under the run lock)
    out = outcome(summary)
    out["dashboard"] = str(dashboard) if dashboard else None
    out["history"] = str(config.history_dir)
    publish_result(config, out)
    failure = failure_of(out)
    if failure is not None:
        # A Failed state with the exception as its data: every caller gets the exception (a
        # direct call and a parent flow raise it, ``state.result()`` returns or raises it), and
        # the log says what failed in one line, without the traceback of an expected outcome.
        # Prefect makes a returned State the run's final state; a caller never gets it back.
        return Failed(message=str(failure), data=failure)  # type: ignore[return-value]
    return out


def check_once(config_path: str) -> dict[str, Any]:
    """Run :func:`drift_check` once; its result document (also when the run ended ``Failed``
    for failed input files or deliveries). An error of the run itself is raised."""
    try:
        return drift_check(config_path)
    except DriftCheckFailed as failed:
        return failed.result


def exit_code(out: dict[str, Any]) -> int:
    if out["failed_files"]:
        return EXIT_INPUT_FILES_FAILED
    if out["failed"] or out["deferred"]:
        return EXIT_DELIVERY_FAILED
    return 0


def config_path_arg(path: str | os.PathLike[str]) -> str:
    return str(Path(path).resolve())
