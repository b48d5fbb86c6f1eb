"""Writing drift records and MLE state from a pipeline (local paths or buckets).

Files are written whole and atomically through ``divtransforms.storage`` (locally a temp file and
a rename, on a bucket a single upload). Names are deterministic per run (batch) or per (feature,
window, pane) (streaming), so a retried bundle rewrites the same file instead of adding a
duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import apache_beam as beam
import pyarrow as pa

from divtransforms import storage
from divtransforms.records import (
    records_to_table,
    sort_records,
    write_records_jsonl,
    write_records_parquet,
)

_MICROSECOND = timedelta(microseconds=1)

__all__ = [
    "WriteRecords",
    "WriteRecordsToBigQuery",
    "WriteState",
    "WriteWindows",
    "join",
    "read_bytes",
    "write_bytes",
]


def join(base: str, *parts: str) -> str:
    return str(storage.join(base, *parts))


def write_bytes(path: str, data: bytes) -> None:
    storage.write_atomic(path, data)


def read_bytes(path: str) -> bytes:
    return storage.read_bytes(path)


def _write_table(table: pa.Table, path: str, jsonl: bool) -> list[str]:
    paths = [str(write_records_parquet(table, path))]
    if jsonl:
        paths.append(str(write_records_jsonl(table, path[: -len(".parquet")] + ".jsonl")))
    return paths


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class _WriteAllFn(beam.DoFn):
    def __init__(self, output_dir: str, run_id: str, jsonl: bool) -> None:
        self._dir, self._run_id, self._jsonl = output_dir, run_id, jsonl

    def process(self, records: list[dict[str, Any]]) -> Iterable[str]:
        table = sort_records(records_to_table(records))
        yield from _write_table(
            table, join(self._dir, f"records-{self._run_id}.parquet"), self._jsonl
        )


class _WriteEachFn(beam.DoFn):
    def __init__(self, output_dir: str, run_id: str, jsonl: bool) -> None:
        self._dir, self._run_id, self._jsonl = output_dir, run_id, jsonl

    def process(self, record: dict[str, Any]) -> Iterable[str]:
        ws = record.get("window_start")
        when = ws.strftime("%Y%m%dT%H%M%S") if ws is not None else "all"
        name = f"records-{self._run_id}-{_safe(record['feature'])}-{when}-p{record['pane']}"
        table = records_to_table([record])
        yield from _write_table(table, join(self._dir, name + ".parquet"), self._jsonl)


class WriteRecords(beam.PTransform):
    """Drift records -> Parquet (and JSONL) files in ``output_dir``; outputs the paths written.

    Batch: one ``records-<run_id>.parquet``. Streaming: one file per (feature, window, pane),
    ``records-<run_id>-<feature>-<window start>-p<pane>.parquet`` (idempotent names).
    """

    def __init__(
        self, output_dir: str, run_id: str, *, jsonl: bool = False, streaming: bool = False
    ) -> None:
        super().__init__()
        self._dir, self._run_id, self._jsonl, self._streaming = (
            output_dir,
            run_id,
            jsonl,
            streaming,
        )

    def expand(self, records):
        if self._streaming:
            return records | "WriteEach" >> beam.ParDo(
                _WriteEachFn(self._dir, self._run_id, self._jsonl)
            )
        return (
            records
            | "Gather" >> beam.combiners.ToList()
            | "WriteAll" >> beam.ParDo(_WriteAllFn(self._dir, self._run_id, self._jsonl))
        )


class _WriteStateFn(beam.DoFn):
    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, state: Mapping[str, Any]) -> Iterable[str]:
        from divtransforms.running import mle_state_bytes

        write_bytes(self._path, mle_state_bytes(state))
        yield self._path


class WriteState(beam.PTransform):
    """The running-MLE state ``{feature: accumulator dict}`` -> a JSON file (overwritten)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, state):
        return state | "WriteState" >> beam.ParDo(_WriteStateFn(self._path))


def _start_and_pane(ws: Any) -> tuple[int, tuple[int, Any]]:
    from divtransforms.window import EPOCH

    return (ws.window_start - EPOCH) // _MICROSECOND, (int(ws.pane), ws.stats)


def _last_pane(item: tuple[int, Iterable[tuple[int, Any]]]) -> tuple[int, Any]:
    start, panes = item
    return start, max(panes, key=lambda p: p[0])[1]  # accumulating panes: the last has all


class _WriteWindowsFn(beam.DoFn):
    def __init__(self, profile: Any, size_micros: int, path: str) -> None:
        self._profile, self._size, self._path = profile, size_micros, path

    def process(self, windows: list[tuple[int, Any]]) -> Iterable[str]:
        import json

        from divtransforms.rolling import window_summary

        summary = window_summary(self._profile, sorted(windows), self._size)
        write_bytes(self._path, json.dumps(summary.to_dict(), sort_keys=True).encode() + b"\n")
        yield self._path


class WriteWindows(beam.PTransform):
    """Every event-time window's statistics (``WindowStats``, its last pane) -> one JSON file:
    the windowed summary on the reference's bins (``divtransforms.rolling.window_summary``),
    the same as the in-process check's ``CheckResult.windows``."""

    def __init__(self, profile: Any, window: Any, path: str) -> None:
        from divtransforms.columns import duration_micros

        super().__init__()
        self._profile, self._size, self._path = profile, duration_micros(window), path

    def expand(self, window_stats):
        from apache_beam.transforms.window import GlobalWindows

        return (
            window_stats
            | "TimedOnly" >> beam.Filter(lambda ws: ws.window_start is not None)
            | "Global" >> beam.WindowInto(GlobalWindows())
            | "ByStart" >> beam.Map(_start_and_pane)
            | "Panes" >> beam.GroupByKey()
            | "LastPane" >> beam.Map(_last_pane)
            | "All" >> beam.combiners.ToList()
            | "Write" >> beam.ParDo(_WriteWindowsFn(self._profile, self._size, self._path))
        )


class WriteRecordsToBigQuery(beam.PTransform):
    """Drift records -> the flat BigQuery history table (``divtransforms.flat_records``), the
    same table ``[[export]] kind = "bigquery"`` loads.

    Streaming: ``tabledata.insertAll`` (``STREAMING_INSERTS``; Beam's insert ids make a retried
    bundle insert nothing twice; every pane is its own row, keyed by (run, feature, window,
    pane)); ``details`` is sent as a JSON string, as insertAll requires for JSON columns. Batch:
    load jobs (``FILE_LOADS``), ``details`` as a JSON object. The table is created if needed.
    """

    def __init__(self, table: str, *, streaming: bool = False, test_client: Any = None) -> None:
        super().__init__()
        if ":" not in table and table.count(".") == 2:  # Beam spells it PROJECT:DATASET.TABLE
            table = table.replace(".", ":", 1)
        self._table, self._streaming, self._test_client = table, streaming, test_client

    def expand(self, records):
        from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
        from apache_beam.io.gcp.bigquery_tools import RetryStrategy

        from divtransforms.flat_records import bigquery_row, bigquery_schema

        method = (
            WriteToBigQuery.Method.STREAMING_INSERTS
            if self._streaming
            else WriteToBigQuery.Method.FILE_LOADS
        )
        return (
            records
            | "ToFlatRows" >> beam.Map(bigquery_row, details_as_text=self._streaming)
            | "WriteToBigQuery"
            >> WriteToBigQuery(
                self._table,
                schema={"fields": bigquery_schema()},
                method=method,
                create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                test_client=self._test_client,
            )
        )
