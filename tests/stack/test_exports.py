"""``[[export]]``: each run once into SQL (SQLite, PostgreSQL) and BigQuery (a local stand-in
of its load-job API), with catch-up after an outage and no duplicates after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from divtransforms.flat_records import bigquery_schema
from flows.cli.server import free_port
from flows.monitor.history import read_history
from flows.stack.exports import EXPORTS_FILE, bigquery_job_id, export_pending, read_ledger
from flows.stack.sql_history import SqlHistory

from .fake_bigquery import FakeBigQuery
from .records import add_run, populated_monitor


def _sql_export(url_env: str) -> str:
    return f'[[export]]\nname = "warehouse"\nkind = "sql"\nurl_env = "{url_env}"\n'


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sql_export_catches_up_and_writes_each_run_once(
    backend, tmp_path: Path, monkeypatch, request
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'drift.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    table = f"drift_{backend}_{tmp_path.name[-8:].replace('-', '_')}".lower()
    extra = _sql_export("DIVMON_TEST_SQL_URL") + f'table = "{table}"\n'
    # the database is down during the first two runs
    down = f"postgresql+psycopg://u:hunter2@127.0.0.1:{free_port()}/x?connect_timeout=2"
    monkeypatch.setenv("DIVMON_TEST_SQL_URL", down)
    config = populated_monitor(tmp_path, extra)
    summary = export_pending(config)
    assert "warehouse" in summary.failed and "hunter2" not in summary.failed["warehouse"]
    assert read_ledger(config).get("warehouse", []) == []

    monkeypatch.setenv("DIVMON_TEST_SQL_URL", url)  # back: both runs are exported
    summary = export_pending(config)
    history = read_history(config.history_dir)
    assert summary.written == {"warehouse": history.num_rows} and not summary.failed
    assert read_ledger(config) == {"warehouse": ["run-1", "run-2"]}
    assert export_pending(config).written == {"warehouse": 0}  # nothing new

    add_run(config, 2)
    (config.state_dir / EXPORTS_FILE).unlink()  # a crash lost the ledger: writes stay idempotent
    export_pending(config)
    with SqlHistory(url, table) as sql:
        rows = sql.read()
        assert sql.run_ids() == {"run-1", "run-2", "run-3"}
    history = read_history(config.history_dir)
    assert len(rows) == history.num_rows
    assert {r["monitor"] for r in rows} == {"orders"}
    assert sorted((r["run_id"], r["feature"], r["window_start"]) for r in rows) == sorted(
        (r["run_id"], r["feature"], r["window_start"]) for r in history.to_pylist()
    )


def test_bigquery_load_jobs_offline(tmp_path: Path, monkeypatch) -> None:
    """The real google-cloud-bigquery client against a local stand-in of the load-job API."""
    with FakeBigQuery() as bq:
        monkeypatch.setenv("DIVMON_BIGQUERY_API_ENDPOINT", bq.url)
        extra = '[[export]]\nkind = "bigquery"\ntable = "acme-data.drift.records"\n'
        config = populated_monitor(tmp_path, extra)
        summary = export_pending(config)
        history = read_history(config.history_dir)
        assert summary.written == {"bigquery-acme-data.drift.records": history.num_rows}
        stored = bq.tables["acme-data.drift.records"]
        assert len(stored["rows"]) == history.num_rows
        assert [f["name"] for f in stored["schema"].values()] == [
            f["name"] for f in bigquery_schema()
        ]
        assert set(bq.jobs) == {
            bigquery_job_id("acme-data.drift.records", r) for r in ("run-1", "run-2")
        }
        row = stored["rows"][0]
        assert isinstance(row["details"], dict) and "counts" in row["details"]

        # a crash after the load but before the ledger: the job id is refused, nothing doubles
        (config.state_dir / EXPORTS_FILE).unlink()
        summary = export_pending(config)
        assert summary.written == {"bigquery-acme-data.drift.records": 0}
        assert not summary.failed
        assert len(stored["rows"]) == history.num_rows
        assert json.loads((config.state_dir / EXPORTS_FILE).read_text())["exported"] == {
            "bigquery-acme-data.drift.records": ["run-1", "run-2"]
        }


def test_bigquery_rejected_rows_fail_the_export_and_are_retried(tmp_path, monkeypatch) -> None:
    from flows.stack import exports

    with FakeBigQuery() as bq:
        monkeypatch.setenv("DIVMON_BIGQUERY_API_ENDPOINT", bq.url)
        extra = '[[export]]\nkind = "bigquery"\ntable = "acme-data.drift.records"\n'
        config = populated_monitor(tmp_path, extra, runs=1)
        real = exports.bigquery_rows
        monkeypatch.setattr(
            exports, "bigquery_rows", lambda t, m=None: [{**r, "n": "many"} for r in real(t, m)]
        )
        summary = export_pending(config)
        assert "is not a valid INT64" in summary.failed["bigquery-acme-data.drift.records"]
        assert read_ledger(config).get("bigquery-acme-data.drift.records", []) == []
