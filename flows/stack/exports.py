"""``[[export]]``: copy each run's drift records into a database, once, catching up after outages.

The Parquet history stays the source of truth. After a run, every export target receives the runs
it has not received yet: ``<state_dir>/exports.json`` lists, per target, the run ids it took. A
target that is down keeps its runs for the next run (the check itself does not fail), and since
the writes are idempotent (SQL: per (run, feature, window, pane); BigQuery: one load job per run
with a deterministic job id, which BigQuery refuses to run twice) a crash between the write and
the ledger update writes nothing twice.

``kind = "sql"``: :class:`flows.stack.sql_history.SqlHistory`. ``kind = "bigquery"``: a load job of
newline-delimited JSON rows with the flat table's schema (``divtransforms.flat_records``); the
streaming job writes the same rows with Beam's ``WriteToBigQuery`` (``pipelines.sinks``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from divtransforms import storage
from divtransforms.flat_records import bigquery_row, bigquery_schema
from divtransforms.records import atomic_write_json
from flows.config import ExportConfig, MonitorConfig
from flows.monitor.history import read_history

log = logging.getLogger(__name__)

EXPORTS_FILE = "exports.json"
EXPORTS_VERSION = 1
_KEEP_RUNS = 1000


def export_url(cfg: ExportConfig, config: MonitorConfig | None = None) -> str:
    """The SQLAlchemy URL; a relative SQLite path is relative to the config file's folder."""
    if cfg.url is not None:
        url = cfg.url
    else:
        from flows.alerts.secrets import resolve_secret

        url = resolve_secret(f"export {cfg.key}", cfg.url_env, cfg.url_secret)
    prefix = "sqlite:///"
    if config is not None and url.startswith(prefix) and not url.startswith(prefix + "/"):
        path = url[len(prefix) :]
        if path and not path.startswith(":memory:"):
            return prefix + str(config.resolve(path))
    return url


# ---------------------------------------------------------------------- BigQuery


def bigquery_job_id(table: str, run_id: str) -> str:
    """The load job id of one run into one table: BigQuery runs a job id only once."""
    raw = f"divtransforms_{table}_{run_id}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:1024]


def bigquery_rows(
    records: pa.Table | Iterable[Mapping[str, Any]], monitor: str | None = None
) -> list[dict[str, Any]]:
    """Flat rows as load-job JSON: timestamps ISO 8601, ``details`` a JSON object (a load job
    stores a JSON column's value as it is; the streaming job sends it as a string instead, as
    ``tabledata.insertAll`` requires)."""
    rows = records.to_pylist() if isinstance(records, pa.Table) else list(records)
    return [bigquery_row(r, monitor=monitor) for r in rows]


def bigquery_client(table: str, location: str | None = None) -> Any:
    """A client for the table's project (Application Default Credentials). With
    ``DIVMON_BIGQUERY_API_ENDPOINT`` set (an emulator, or a private endpoint), that endpoint is
    used, with anonymous credentials when it is a plain-http one."""
    from google.cloud import bigquery

    project = table.split(".", 1)[0]
    endpoint = os.environ.get("DIVMON_BIGQUERY_API_ENDPOINT")
    if not endpoint:
        return bigquery.Client(project=project, location=location)
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project,
        location=location,
        client_options={"api_endpoint": endpoint},
        credentials=AnonymousCredentials() if endpoint.startswith("http://") else None,
    )


def load_bigquery(
    records: pa.Table,
    table: str,
    run_id: str,
    *,
    client: Any = None,
    location: str | None = None,
    monitor: str | None = None,
) -> int:
    """Append one run's records with a load job; 0 when that run's job already ran (Conflict)."""
    from google.api_core.exceptions import Conflict
    from google.cloud import bigquery

    client = client or bigquery_client(table, location)
    schema = [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in bigquery_schema()]
    job_config = bigquery.LoadJobConfig(
        schema=schema,
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        # New record fields become new nullable columns (the table's schema migration).
        schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
    )
    rows = bigquery_rows(records, monitor)
    try:
        job = client.load_table_from_json(
            rows,
            table,
            job_config=job_config,
            job_id=bigquery_job_id(table, run_id),
            location=location,
        )
        job.result()
    except Conflict:
        log.info("bigquery export: run %s was already loaded into %s", run_id, table)
        return 0
    return len(rows)


# ---------------------------------------------------------------------- the export stage


@dataclass
class ExportSummary:
    written: dict[str, int] = field(default_factory=dict)  # target -> rows
    failed: dict[str, str] = field(default_factory=dict)  # target -> error


def _ledger_path(config: MonitorConfig):
    return storage.join(config.state_dir, EXPORTS_FILE)


def read_ledger(config: MonitorConfig) -> dict[str, list[str]]:
    path = _ledger_path(config)
    try:
        doc = json.loads(storage.read_bytes(path))
    except storage.StorageNotFound:
        return {}
    if doc.get("schema_version") != EXPORTS_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')!r}, expected 1")
    return {k: list(v) for k, v in (doc.get("exported") or {}).items()}


def _save_ledger(config: MonitorConfig, ledger: Mapping[str, list[str]]) -> None:
    atomic_write_json(
        _ledger_path(config),
        {
            "schema_version": EXPORTS_VERSION,
            "exported": {k: v[-_KEEP_RUNS:] for k, v in sorted(ledger.items())},
        },
    )


def _write(cfg: ExportConfig, config: MonitorConfig, records: pa.Table, run_id: str) -> int:
    if cfg.kind == "sql":
        from flows.stack.sql_history import SqlHistory

        url = export_url(cfg, config)
        with SqlHistory(url, cfg.table, db_schema=cfg.db_schema, monitor=config.name) as sql:
            return sql.write(records)
    return load_bigquery(records, cfg.table, run_id, location=cfg.location, monitor=config.name)


def export_runs(
    config: MonitorConfig, run_ids: Iterable[str], logger: logging.Logger | None = None
) -> ExportSummary:
    """Give every ``[[export]]`` target the runs (of ``run_ids``) it has not taken yet."""
    logger = logger or log
    summary = ExportSummary()
    if not config.export:
        return summary
    ledger = read_ledger(config)
    run_ids = list(dict.fromkeys(run_ids))
    for cfg in config.export:
        done = ledger.setdefault(cfg.key, [])
        todo = [r for r in run_ids if r not in set(done)]
        rows = 0
        for run_id in todo:
            records = read_history(config.history_dir, run_id)
            try:
                rows += _write(cfg, config, records, run_id) if records.num_rows else 0
            except Exception as exc:  # a target that is down keeps its runs for the next run
                summary.failed[cfg.key] = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "export %s: run %s not written (%s); it is retried next run",
                    cfg.key,
                    run_id,
                    summary.failed[cfg.key],
                )
                break
            done.append(run_id)
            _save_ledger(config, ledger)
        summary.written[cfg.key] = rows
        if rows:
            logger.info("export %s: %d row(s) of %d run(s) written", cfg.key, rows, len(todo))
    return summary


def export_pending(config: MonitorConfig, logger: logging.Logger | None = None) -> ExportSummary:
    """Export every completed run (``state.runs``) that some target has not taken yet."""
    from flows.monitor.state import StateStore

    state = StateStore.for_config(config).load()
    return export_runs(config, [r["run_id"] for r in state.runs if r.get("records")], logger)
