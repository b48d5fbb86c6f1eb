"""The in-process engine for local files: ``divmon reference build`` without a Beam runner.

Beam's local runner costs seconds before the first row is read (importing Beam, starting the
pipeline) and materialises every batch between its stages; a reference build on local files
needs neither. This engine reads local Parquet (one row group at a time), CSV and JSON Lines,
and drives the core's :class:`divtransforms.building.ProfileBuilder` over its passes: the same
rules and code as Beam's ``BuildReference``, with exact quantile edges in bounded memory.

A pass reads its columns in groups, each decoded ``READ_BYTES`` at a time (a row group of the
group's columns), so memory stays flat however many columns there are; every group sees the same
rows in the same batches, so each feature's result is the one of a single group. Between passes
the batches of the first pass stay in memory up to ``cache_bytes`` (default
``DEFAULT_CACHE_BYTES``); the rest is read again from the files, only the columns a pass needs.
So small inputs are read once, and memory stays flat however many rows there are.
Beam is not imported unless a file needs Beam's filesystems (``gs://``) or a text format.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import wraps
from typing import Any, TypeVar

import pyarrow as pa

from divtransforms import parallel
from divtransforms.building import ProfileBuilder
from divtransforms.profile import ReferenceProfile
from divtransforms.settings import BuildSettings
from pipelines.spec import BuildJob, CheckJob, CheckResult, summarize

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "READ_BYTES",
    "BatchSource",
    "build_reference_local",
    "is_local",
    "run_build_local",
    "run_check_local",
]

_LOG = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _on_every_core(fn: F) -> F:
    """Per-feature work on every core this process may use (``divtransforms.parallel``; the
    numbers do not depend on it; ``DIVMON_THREADS`` sets the count)."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with parallel.using(parallel.available_threads()):
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


# What one read decodes at once (a row group of a group of columns; Arrow's buffers while it
# decodes are about 3x that): memory does not grow with the number of columns. 4 MiB: 16 MiB
# held 1.5x the memory of 100 columns at 1,000 columns, 4 MiB 1.23x, with the same build time.
READ_BYTES = 4 << 20
# The first pass's batches kept for the next: as much as one read holds, so that memory stays
# flat when the rows grow 10x too (64 MiB held 1.33x the memory of 0.1M rows at 1M rows); later
# passes read the rest again, only the columns they need (the standard case's 210 MB decode in
# about 1 s).
DEFAULT_CACHE_BYTES = READ_BYTES
PROGRESS_SECONDS = 5.0


def is_local(patterns: Sequence[str]) -> bool:
    """Whether every input is a local path (no ``scheme://``)."""
    return all("://" not in str(p) for p in patterns)


def expand_local(patterns: Sequence[str]) -> list[str]:
    """Local paths, directories and globs -> sorted files, as ``pipelines.io.expand_inputs``
    (files named ``_*`` or ``.*`` are skipped; a pattern matching nothing is an error)."""
    files: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        found = [f for f in glob.glob(pattern) if os.path.isfile(f)]
        found = [f for f in found if not os.path.basename(f).startswith(("_", "."))]
        if not found:
            raise ValueError(f"no input files match {pattern}")
        files.extend(sorted(found))
    return files


class BatchSource:
    """Record batches of local files, read in passes with ``pipelines.io`` (the Beam job's
    readers: the same batches, file/row annotations and checks).

    A pass reads its columns in consecutive groups (:meth:`read_pass`), each decoded within
    ``read_bytes`` at a time (``pipelines.io.decoded_bytes``: one Parquet row group of the
    group's columns), so memory does not grow with the number of columns; every group sees the
    same rows in the same batches. The first pass's batches are kept up to ``cache_bytes``;
    later passes read only the rest again, and only the columns they ask for.
    ``require_columns`` False (a check): a file may lack a feature column.

    Accounting: ``rows_read``/``batches_read`` (the first pass, counted once whatever the
    groups), ``max_batch_bytes`` (the largest batch decoded), ``groups`` (per pass)."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        input_format: str | None = None,
        numeric: Sequence[str] = (),
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        read_bytes: int | None = None,
        require_columns: bool = True,
        csv: Any = None,
    ) -> None:
        from pipelines import io as pio

        self._files = list(files)
        self._format = input_format
        self._csv = csv  # pipelines.io.CsvDialect (None: CSV delimiters sniffed)
        self._numeric = tuple(numeric)
        self._budget = cache_bytes
        self._read_bytes = READ_BYTES if read_bytes is None else read_bytes
        self._require = require_columns
        self._opened = pio.OpenFiles()
        self._sizes: dict[str, int] = {}
        # columns read -> (their first batches, the number of read tasks wholly among them)
        self._cache: dict[tuple[str, ...], tuple[list[pa.RecordBatch], int]] = {}
        self._cached_bytes = 0
        self.rows_read = 0
        self.batches_read = 0
        self.max_batch_bytes = 0
        self.groups: list[int] = []

    def read_pass(
        self, columns: Sequence[str], *, first: bool, extra: Sequence[str] = ()
    ) -> Iterator[tuple[list[str], Iterator[pa.RecordBatch]]]:
        """One pass: ``(group, batches)`` for each group of ``columns`` (consecutive, in order);
        the batches hold the group's columns and ``extra`` (e.g. the event time)."""
        from pipelines import io as pio

        extra = [c for c in extra if c not in columns]
        unknown = [c for c in (*columns, *extra) if c not in self._sizes]
        if unknown:
            self._sizes.update(
                pio.decoded_bytes(
                    self._files, unknown, input_format=self._format, opened=self._opened
                )
            )
        budget = self._read_bytes - sum(self._sizes[c] for c in extra)
        groups = pio.column_groups(columns, self._sizes, budget)
        self.groups.append(len(groups))
        for i, group in enumerate(groups):
            yield group, self._batches([*group, *extra], first, count=first and i == 0)

    def _batches(self, columns: list[str], first: bool, count: bool) -> Iterator[pa.RecordBatch]:
        from pipelines import io as pio

        tasks = pio.plan_reads(
            self._files,
            input_format=self._format,
            columns=columns,
            numeric=[n for n in self._numeric if n in set(columns)],
            require_columns=self._require,
            opened=self._opened,
            csv=self._csv,
        )
        key = tuple(columns)
        start = 0
        if not first:  # batches kept by the first pass, of these columns or more
            wanted = set(columns)
            for have, (kept, done) in self._cache.items():
                if wanted <= set(have):
                    yield from kept
                    start = done
                    break
        kept = []
        keep = first
        for i in range(start, len(tasks)):
            task_kept: list[pa.RecordBatch] = []
            for batch in pio.read_task(tasks[i], self._opened):
                self.max_batch_bytes = max(self.max_batch_bytes, batch.nbytes)
                if count:
                    self.rows_read += batch.num_rows
                    self.batches_read += 1
                if keep and self._cached_bytes + batch.nbytes <= self._budget:
                    task_kept.append(batch)
                    self._cached_bytes += batch.nbytes
                elif keep:
                    keep = False
                    self._cached_bytes -= sum(b.nbytes for b in task_kept)
                    task_kept = []
                yield batch
            if keep:
                kept.extend(task_kept)
                self._cache[key] = (kept, i + 1)


def _role_candidate(t: pa.DataType) -> bool:
    """Whether ``quality.column_role`` can judge a column of this type (text or integers, plain
    or dictionary-encoded); for any other type it returns None without looking at the values."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)


def _sample(path: str, input_format: str | None, rows: int = 1 << 16) -> tuple[pa.Schema, pa.Table]:
    """The file's schema and its first ``rows`` rows, as
    ``pipelines.reference_job.input_sample``; for Parquet only of the columns
    ``infer_kinds`` looks at (text and integers: ``quality.column_role``), read through
    ``pipelines.io.read_task`` (a wide row group is decoded a few columns at a time). A wide
    table of floats is not read at all before the build."""
    from pipelines import io as pio
    from pipelines.reference_job import input_sample

    if pio.detect_format(path, input_format) != "parquet":
        sample = input_sample(path, input_format, rows)
        return sample.schema, sample
    pf = pio._parquet_file(path)
    schema = pf.schema_arrow
    wanted = [f.name for f in schema if _role_candidate(f.type)]
    sub = pa.schema([schema.field(n) for n in wanted])
    if pf.num_row_groups == 0 or not wanted:
        return schema, sub.empty_table()
    task = pio.ReadTask(path, "parquet", tuple(wanted), (0,), rows)
    batches = list(pio.read_task(task))[:1]
    if not batches:
        return schema, sub.empty_table()
    return schema, pa.Table.from_batches(batches).select(wanted).cast(sub)


@_on_every_core
def build_reference_local(
    inputs: Sequence[str],
    output: str | None,
    *,
    kinds: Mapping[str, str],
    settings: BuildSettings | None = None,
    input_format: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    source: str = "",
    ignored_columns: Sequence[str] = (),
) -> ReferenceProfile:
    """Build a reference profile of the features ``kinds`` from local files in this process;
    save it to ``output``.

    ``settings`` (``divtransforms.settings.BuildSettings``): families and bins; with
    ``timestamp_column`` and ``window``, or ``chunk`` (rows), the profile keeps the reference's
    own windows (``divtransforms.variation``; one more pass)."""
    files = expand_local(inputs)
    numeric = [n for n, k in kinds.items() if k == "numeric"]
    builder = ProfileBuilder(kinds, settings, source=source, ignored_columns=ignored_columns)
    src = BatchSource(files, input_format=input_format, numeric=numeric, cache_bytes=cache_bytes)
    start = time.perf_counter()
    passes = 0
    while columns := builder.columns():
        passes += 1
        cells, last, t0 = 0, time.perf_counter(), time.perf_counter()
        extra = builder.extra_columns()
        for group, batches in src.read_pass(columns, first=passes == 1, extra=extra):
            for batch in batches:
                builder.add(batch, group)
                cells += batch.num_rows * len(group)
                if time.perf_counter() - last >= PROGRESS_SECONDS:
                    last = time.perf_counter()
                    _LOG.info(
                        "pass %d: %d of %d columns, %d values (%.0f values/s)",
                        passes, columns.index(group[0]), len(columns), cells, cells / (last - t0),
                    )  # fmt: skip
            pa.default_memory_pool().release_unused()  # the readers' transient buffers
        builder.end_pass()
        _LOG.info(
            "pass %d done: %d columns (%d groups), %d values in %.1f s",
            passes, len(columns), src.groups[-1], cells, time.perf_counter() - t0,
        )  # fmt: skip
    profile = builder.profile()
    if output is not None:
        profile.save(output)
    _LOG.info(
        "reference %s: %d features from %d rows in %d file(s), %d passes, %.1f s",
        profile.reference_id, len(profile.features), src.rows_read, len(files), passes,
        time.perf_counter() - start,
    )  # fmt: skip
    return profile


def run_build_local(job: BuildJob) -> ReferenceProfile:
    """``divmon reference build`` in this process (a ``pipelines.spec.BuildJob``, saved to
    ``job.output`` when given): the kinds from the first file's schema
    (``divtransforms.kinds.infer_kinds``, as the Beam job), then :func:`build_reference_local`."""
    from divtransforms.kinds import infer_kinds

    settings = job.settings
    patterns = [str(i) for i in job.inputs]
    files = expand_local(patterns)
    schema, sample = _sample(files[0], job.input_format)
    resolved = infer_kinds(
        schema, settings.features, settings.kinds, settings.exclude, sample=sample, source=files[0]
    )
    names = schema.names
    del sample  # up to 64Ki rows of the text/integer columns: not kept during the build
    pa.default_memory_pool().release_unused()
    cache = DEFAULT_CACHE_BYTES if job.cache_mb is None else int(job.cache_mb) << 20
    return build_reference_local(
        files,
        job.output,
        kinds=resolved,
        settings=settings,
        input_format=job.input_format,
        cache_bytes=cache,
        source=", ".join(patterns),
        ignored_columns=[n for n in names if n not in resolved],
    )


# -- checks ---------------------------------------------------------------------------------------

# Columns are binned in slices of this many rows (as Beam's FeatureStatsFn): a slice's temporaries
# stay in the CPU cache.
CHUNK_ROWS = 1 << 16


@_on_every_core
def run_check_local(job: CheckJob) -> CheckResult:
    """``divmon check`` in this process: the Beam batch check's steps and results
    (``pipelines.check_job.run_check``) without Beam: windows split, each window's
    :class:`~divtransforms.window.FeatureStats` merged batch by batch, then the records of the
    core's window driver (``divtransforms.compare.WindowDriver``, as ``compare()``): the running
    MLE folded in event-time order, ``drift.window_records`` for every window. One read,
    bounded memory (the statistics of the windows, not the data). Returns a ``CheckResult``."""
    from divtransforms.columns import num_rows
    from divtransforms.compare import WindowDriver
    from divtransforms.records import (
        atomic_write_bytes,
        records_to_table,
        sort_records,
        write_records_jsonl,
        write_records_parquet,
    )
    from divtransforms.running import mle_state_bytes
    from divtransforms.window import FeatureStats, feature_stats_of_batch
    from pipelines.spec import load_reference

    t0 = time.perf_counter()
    profile = load_reference(job.reference)
    features = profile.features
    reference_id = profile.reference_id  # a hash of the whole profile: once, not per record
    driver = WindowDriver(profile, job.settings, mle_state=job.mle_state)
    run_id, size = driver.run_id, driver.size
    numeric = [n for n, fp in features.items() if fp.kind == "numeric"]
    src = BatchSource(
        expand_local(job.source.inputs),
        input_format=job.source.input_format,
        csv=job.source.csv,
        numeric=numeric,
        cache_bytes=0,
        require_columns=False,
    )
    known = driver.known
    extra = [c for c in job.columns(profile) if c not in features]  # the event time
    no_event_time, implausible, last = 0, 0, t0
    per_file: dict[str, list[Any]] = {}  # path -> [rows, rows in no window (BadEventTimes)]
    parts: list[dict[int | None, FeatureStats]] = []  # per column group: window -> statistics
    for i, (group, batches) in enumerate(src.read_pass(list(features), first=True, extra=extra)):
        feats = {n: features[n] for n in group}
        windows: dict[int | None, FeatureStats] = {}
        parts.append(windows)
        for batch in batches:
            split, bad = driver.split(batch)
            if size is not None and i == 0:  # the same rows in every group: counted and told
                no_event_time += bad.count if bad is not None else 0  # once, per file
                implausible += bad.implausible if bad is not None else 0
                _tally_file(per_file, batch, bad)
            for start, rows in split:
                acc = windows.get(start) or FeatureStats.empty(feats)
                n = num_rows(rows)
                for lo in range(0, max(n, 1), CHUNK_ROWS):
                    part = rows.slice(lo, CHUNK_ROWS) if n > CHUNK_ROWS else rows
                    # the columns the reference does not know: counted with the first group
                    acc = acc.merge(feature_stats_of_batch(feats, part, known if i == 0 else None))
                windows[start] = acc
            if time.perf_counter() - last >= PROGRESS_SECONDS:
                last = time.perf_counter()
                _LOG.info(
                    "checked %d rows, %d of %d features (%.0f rows/s)",
                    src.rows_read, sum(len(next(iter(p.values())).histograms) for p in parts if p),
                    len(features), src.rows_read / (last - t0),
                )  # fmt: skip
        if i == 0:
            _report_files(per_file)
    # every group saw the same rows in the same windows: each window's statistics, all features
    windows = {s: FeatureStats.of_groups([p[s] for p in parts]) for s in parts[0]}
    if size is None and not windows:
        windows[None] = FeatureStats.empty(features)
    for start, stats in windows.items():
        driver.add(start, stats)
    table = sort_records(records_to_table(driver.records()))
    state = driver.state()
    kept = None
    if job.keep_windows and size is not None:
        from divtransforms.rolling import window_summary

        kept = window_summary(profile, windows.items(), size)
    outputs: list[str] = []
    if job.output is not None:
        out = os.path.join(str(job.output), f"records-{run_id}.parquet")
        outputs.append(str(write_records_parquet(table, out)))
        if job.jsonl:
            outputs.append(str(write_records_jsonl(table, out[: -len(".parquet")] + ".jsonl")))
        state_path = os.path.join(str(job.output), "_state", f"mle-{run_id}.json")
        atomic_write_bytes(state_path, mle_state_bytes(state))
    metrics = _check_metrics(windows, src.rows_read, src.batches_read)
    if no_event_time:
        metrics["no_event_time"] = no_event_time
    if implausible:
        metrics["implausible_event_time"] = implausible
    elapsed = time.perf_counter() - t0
    _LOG.info(
        "checked %d rows against %s in %.1f s (%.0f rows/s): %d records",
        src.rows_read, reference_id, elapsed,
        src.rows_read / elapsed if elapsed else 0.0, table.num_rows,
    )  # fmt: skip
    return CheckResult(
        table,
        json.loads(mle_state_bytes(state))["features"],
        outputs,
        src.rows_read,
        summarize(table),
        run_id,
        reference_id,
        metrics,
        windows=kept,
    )


def _tally_file(per_file: dict[str, list[Any]], batch: Any, bad: Any) -> None:
    """Count a batch's rows and its rows in no window under the file it came from (a batch
    whose file is unknown is told at once)."""
    from divtransforms.columns import num_rows
    from divtransforms.eventtime import source_of

    path, _ = source_of(batch)
    if path is None:
        if bad is not None:
            _LOG.warning("%s", bad.message())
        return
    entry = per_file.setdefault(path, [0, None])
    entry[0] += num_rows(batch)
    if bad is not None:
        entry[1] = bad if entry[1] is None else entry[1].merge(bad)


def _report_files(per_file: Mapping[str, list[Any]]) -> None:
    """One log line per file with rows in no window (naming the first row); a file all of
    whose rows are outside the plausibility horizon is an input failure of that file."""
    from divtransforms.eventtime import ImplausibleFile

    for path, (rows, bad) in per_file.items():
        if bad is None:
            continue
        if rows and bad.implausible == rows:
            raise ImplausibleFile(path, rows, bad)
        _LOG.warning("%s", bad.message())


def _check_metrics(windows: Mapping[Any, Any], rows_read: int, batches: int) -> dict[str, int]:
    """The counters the Beam check reports (``divtransforms`` and ``divtransforms.io``)."""
    m: dict[str, int] = {"rows_read": rows_read, "batches_read": batches}
    for stats in windows.values():
        m["rows"] = m.get("rows", 0) + stats.rows
        for name, h in stats.histograms.items():
            m["samples"] = m.get("samples", 0) + h.n
            for key, value in (("missing", h.n_missing), ("invalid", h.n_invalid)):
                if value:
                    m[key] = m.get(key, 0) + value
                    m[f"{key}/{name}"] = m.get(f"{key}/{name}", 0) + value
    return m
