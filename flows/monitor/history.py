"""Drift history: append-only Parquet, partitioned by date, one file per (date, run).

Layout: ``<history>/date=YYYY-MM-DD/part-<run_id>.parquet``. A run's file name depends only on the
run id and the date, so re-writing a run after a crash replaces its files instead of duplicating
rows. The date is the window start (UTC), or the record's creation time for unwindowed records.

On a bucket the same layout holds: objects are immutable, so an append is a new object (one
part per date and run), and re-writing a run replaces its objects whole.
"""

from __future__ import annotations

import logging
import os
import re

import pyarrow as pa
import pyarrow.compute as pc

from divtransforms import storage
from divtransforms.records import (
    DRIFT_RECORD_SCHEMA,
    read_records,
    sort_records,
    write_records_parquet,
)

log = logging.getLogger(__name__)
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _dates(table: pa.Table) -> list[str]:
    start = table.column("window_start")
    created = table.column("created_at")
    ts = pc.if_else(pc.is_null(start), created, start)
    return [
        d.isoformat() if d is not None else "unknown" for d in pc.cast(ts, pa.date32()).to_pylist()
    ]


def append_records(
    history_dir: str | os.PathLike[str], table: pa.Table, run_id: str
) -> list[storage.Location]:
    """Write ``table`` (records of one run) into the date partitions; returns the files written."""
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} may only contain letters, digits, '_', '.', '-'")
    if table.num_rows == 0:
        return []
    table = (
        table.cast(DRIFT_RECORD_SCHEMA)
        if not table.schema.equals(DRIFT_RECORD_SCHEMA, check_metadata=False)
        else table
    )
    dates = _dates(table)
    written = []
    for day in sorted(set(dates)):
        mask = pa.array([d == day for d in dates])
        part = sort_records(table.filter(mask))
        path = storage.join(history_dir, f"date={day}", f"part-{run_id}.parquet")
        write_records_parquet(part, path)
        written.append(path)
    log.info(
        "history: wrote %d records of run %s into %d partition(s) under %s",
        table.num_rows,
        run_id,
        len(written),
        history_dir,
    )
    return written


def run_files(history_dir: str | os.PathLike[str], run_id: str) -> list[storage.Location]:
    pattern = storage.join(history_dir, "date=*", f"part-{run_id}.parquet")
    return [storage.location(i.path) for i in storage.glob(pattern)]


def read_history(history_dir: str | os.PathLike[str], run_id: str | None = None) -> pa.Table:
    """All records (or one run's), in canonical order; an empty table when there are none."""
    if run_id is not None:
        files = run_files(history_dir, run_id)
        if not files:
            return DRIFT_RECORD_SCHEMA.empty_table()
        table = pa.concat_tables([read_records(f) for f in files])
        return sort_records(table)
    if not storage.isdir(history_dir):
        return DRIFT_RECORD_SCHEMA.empty_table()
    return sort_records(read_records(history_dir))
