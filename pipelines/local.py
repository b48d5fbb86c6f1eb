"""The in-process engine for local files: ``divmon reference build`` without a Beam runner.

Beam's local runner costs seconds before the first row is read (importing Beam, starting the
pipeline) and materialises every batch between its stages; a reference build on local files
needs neither. This engine reads local Parquet (one row group at a time), CSV and JSON Lines,
and drives the core's :class:`divtransforms.building.ProfileBuilder` over its passes: the same
rules and code as Beam's ``BuildReference``, with exact quantile edges in bounded memory.

Between passes the batches of the first pass stay in memory up to ``cache_bytes`` (default
``DEFAULT_CACHE_BYTES``); the rest is read again from the files, only the columns a pass needs.
So small and medium inputs are read once, and memory stays flat however many rows there are.
Beam is not imported unless a file needs Beam's filesystems (``gs://``) or a text format.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from divtransforms.building import ProfileBuilder
from divtransforms.profile import ReferenceProfile

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "BatchSource",
    "build_reference_local",
    "is_local",
    "run_build_local",
]

_LOG = logging.getLogger(__name__)
DEFAULT_CACHE_BYTES = 384 << 20
PROGRESS_SECONDS = 5.0
_SUFFIXES = (".parquet", ".pq")


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
    """Record batches of local files, read in passes; the first pass's batches are kept up to
    ``cache_bytes`` and later passes read only the rest again (and only the columns asked)."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        input_format: str | None = None,
        numeric: Sequence[str] = (),
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._files = list(files)
        self._format = input_format
        self._numeric = tuple(numeric)
        self._budget = cache_bytes
        self._cache: list[pa.RecordBatch] = []
        self._cached_units = 0  # read units (file, row group) wholly in the cache
        self._units: list[tuple[str, int | None]] | None = None
        self.rows_read = 0

    def _parquet(self, path: str) -> bool:
        if self._format:
            return self._format == "parquet"
        return path.lower().endswith(_SUFFIXES)

    def _plan(self) -> list[tuple[str, int | None]]:
        if self._units is None:
            import pyarrow.parquet as pq

            units: list[tuple[str, int | None]] = []
            for path in self._files:
                if self._parquet(path):
                    n = pq.ParquetFile(path).num_row_groups
                    units.extend((path, g) for g in range(n))
                else:
                    units.append((path, None))
            self._units = units
        return self._units

    def _read(self, path: str, group: int | None, columns: Sequence[str]) -> list[pa.RecordBatch]:
        if group is not None:
            import pyarrow.parquet as pq

            try:
                table = pq.ParquetFile(path).read_row_group(
                    group, columns=list(columns), use_threads=False
                )
            except (pa.ArrowException, OSError) as exc:
                raise ValueError(
                    f"{path}: corrupt Parquet data in row groups [{group}] ({exc})"
                ) from exc
            missing = [c for c in columns if c not in table.schema.names]
            if missing:
                raise ValueError(f"{path}: feature column(s) {missing} not in the file")
            return table.to_batches(max_chunksize=1 << 20)
        from pipelines import io as pio  # text formats: the Beam job's readers (imports Beam)

        task = pio.ReadTask(
            path, pio.detect_format(path, self._format), tuple(columns), None, 1 << 20,
            self._numeric,
        )  # fmt: skip
        return list(pio.read_task(task))

    def batches(self, columns: Sequence[str], first: bool) -> Iterator[pa.RecordBatch]:
        """One pass: every batch, with at least ``columns``."""
        units = self._plan()
        start = 0
        if not first:
            yield from self._cache
            start = self._cached_units
        cached = sum(b.nbytes for b in self._cache)
        for i in range(start, len(units)):
            parts = self._read(*units[i], columns)
            if first:
                self.rows_read += sum(b.num_rows for b in parts)
                size = sum(b.nbytes for b in parts)
                if self._cached_units == i and cached + size <= self._budget:
                    self._cache.extend(parts)
                    self._cached_units = i + 1
                    cached += size
            yield from parts


def build_reference_local(
    inputs: Sequence[str],
    output: str | None,
    *,
    kinds: Mapping[str, str],
    families: Mapping[str, str | None] | None = None,
    n_bins: int = 32,
    strategy: str = "quantile",
    top_n: int = 50,
    input_format: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    source: str = "",
) -> ReferenceProfile:
    """Build a reference profile from local files in this process; save it to ``output``."""
    files = expand_local(inputs)
    numeric = [n for n, k in kinds.items() if k == "numeric"]
    builder = ProfileBuilder(
        kinds, families=families, n_bins=n_bins, strategy=strategy, top_n=top_n, source=source
    )
    src = BatchSource(files, input_format=input_format, numeric=numeric, cache_bytes=cache_bytes)
    start = time.perf_counter()
    passes = 0
    while columns := builder.columns():
        passes += 1
        rows, last, t0 = 0, time.perf_counter(), time.perf_counter()
        for batch in src.batches(columns, first=passes == 1):
            builder.add(batch)
            rows += batch.num_rows
            if time.perf_counter() - last >= PROGRESS_SECONDS:
                last = time.perf_counter()
                _LOG.info(
                    "pass %d: %d rows x %d columns (%.0f rows/s)",
                    passes, rows, len(columns), rows / (last - t0),
                )  # fmt: skip
        builder.end_pass()
        _LOG.info(
            "pass %d done: %d rows x %d columns in %.1f s",
            passes, rows, len(columns), time.perf_counter() - t0,
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


def schema_of(path: str, input_format: str | None = None) -> pa.Schema:
    """The Arrow schema of a local file (Parquet footer; text formats: their first batch)."""
    src = BatchSource([path], input_format=input_format)
    if src._parquet(path):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow
    from pipelines.reference_job import input_schema

    return input_schema(path, input_format)


def run_build_local(
    inputs: Sequence[str],
    output: str | None,
    *,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
    cache_mb: int | None = None,
    **options: Any,
) -> ReferenceProfile:
    """``divmon reference build`` in this process: the kinds from the first file's schema
    (``divtransforms.kinds.infer_kinds``, as the Beam job), then :func:`build_reference_local`."""
    from divtransforms.kinds import infer_kinds

    patterns = [str(i) for i in inputs]
    files = expand_local(patterns)
    schema = schema_of(files[0], options.get("input_format"))
    resolved = infer_kinds(schema, features, kinds, exclude)
    cache = DEFAULT_CACHE_BYTES if cache_mb is None else int(cache_mb) << 20
    return build_reference_local(
        files, output, kinds=resolved, cache_bytes=cache, source=", ".join(patterns), **options
    )
