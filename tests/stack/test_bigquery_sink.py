"""The streaming job's ``WriteToBigQuery`` (``pipelines.sinks.WriteRecordsToBigQuery``), offline:
Beam's real transform runs on the local runner with a stand-in BigQuery client (Beam's own
``test_client`` hook) that checks each ``insertAll`` row against the table schema the way the
service does (JSON columns as strings for insertAll)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import pytest

from divtransforms.flat_records import KEY_COLUMNS, bigquery_schema

from .records import drift_table

pytestmark = pytest.mark.beam

TYPES = {f["name"]: f for f in bigquery_schema()}


def _insert_all_errors(row: dict[str, Any]) -> list[str]:
    errors = [f"no such field: {k}" for k in row if k not in TYPES]
    for name, f in TYPES.items():
        v = row.get(name)
        if v is None:
            if f["mode"] == "REQUIRED":
                errors.append(f"missing required field {name}")
            continue
        ok = {
            "STRING": isinstance(v, str),
            "INT64": isinstance(v, int) and not isinstance(v, bool),
            "FLOAT64": isinstance(v, int | float) and not isinstance(v, bool),
        }.get(f["type"])
        if f["type"] == "TIMESTAMP":
            ok = isinstance(v, str) and datetime.fromisoformat(v).tzinfo is not None
        if f["type"] == "JSON":  # insertAll takes JSON values as JSON-encoded strings
            ok = isinstance(v, str) and isinstance(json.loads(v), dict)
        if not ok:
            errors.append(f"{name}: {v!r} is not a {f['type']}")
    return errors


class _Tables:
    def Get(self, request):  # the table exists (WRITE_APPEND into it)
        from apache_beam.io.gcp.internal.clients import bigquery

        return bigquery.Table(
            tableReference=bigquery.TableReference(
                projectId=request.projectId, datasetId=request.datasetId, tableId=request.tableId
            )
        )


class StandInClient:
    """What Beam's BigQueryWrapper calls: ``tables.Get`` and ``insert_rows_json``."""

    inserted: ClassVar[list[tuple[str, dict, str]]] = []
    rejected: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.tables = _Tables()

    def insert_rows_json(self, table, json_rows, row_ids=None, **kwargs):
        errors = []
        for i, row in enumerate(json_rows):
            problems = _insert_all_errors(row)
            if problems:
                StandInClient.rejected.extend(problems)
                errors.append(
                    {"index": i, "errors": [{"reason": "invalid", "message": p} for p in problems]}
                )
            else:
                StandInClient.inserted.append((table, row, row_ids[i] if row_ids else None))
        return errors


def test_streaming_inserts_rows_of_the_flat_schema() -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.sinks import WriteRecordsToBigQuery

    records = drift_table("stream-1", hours=2).to_pylist()
    StandInClient.inserted.clear()
    StandInClient.rejected.clear()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = (
            p
            | beam.Create(records)
            | WriteRecordsToBigQuery(
                "acme-data.drift.records", streaming=True, test_client=StandInClient()
            )
        )
    assert StandInClient.rejected == []
    rows = [r for _, r, _ in StandInClient.inserted]
    assert len(rows) == len(records)
    assert {t for t, _, _ in StandInClient.inserted} == {"acme-data.drift.records"}
    keys = {tuple(r[k] for k in KEY_COLUMNS) for r in rows}
    assert len(keys) == len(records)  # one row per (run, feature, window, pane)
    ids = [i for _, _, i in StandInClient.inserted]
    assert all(ids) and len(set(ids)) == len(ids)  # insert ids: retried bundles dedup
    by_key = {(r["feature"], r["window_start"]): r for r in rows}
    for rec in records:
        row = by_key[(rec["feature"], rec["window_start"].isoformat())]
        assert row["n"] == rec["n"]
        assert json.loads(row["details"])["counts"] == rec["counts"]


def test_check_job_adds_the_bigquery_sink_only_when_asked(tmp_path) -> None:
    import apache_beam as beam
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from divtransforms.profile import ReferenceProfile
    from pipelines.check_job import build_check_pipeline
    from pipelines.spec import CheckJob, CheckJobError, Source

    with pytest.raises(CheckJobError, match="project.dataset.table"):
        CheckJob("ref.json", bigquery_table="just-a-table")
    x = np.random.default_rng(1).normal(size=500)
    profile = ReferenceProfile.build({"x": x})
    pq.write_table(pa.table({"x": x}), tmp_path / "in.parquet")
    for table, expected in ((None, False), ("acme-data.drift.records", True)):
        job = CheckJob(profile, Source((str(tmp_path / "in.parquet"),)), bigquery_table=table)
        pipeline = beam.Pipeline()
        build_check_pipeline(pipeline, job, profile, str(tmp_path / "out"), "r1")
        labels = {t.full_label for t in pipeline.transforms_stack[0].parts}
        assert ("WriteToBigQuery" in labels) is expected, labels
