"""Reading data as Arrow record batches: Parquet (row groups, in batches), CSV, JSON Lines,
and Pub/Sub JSON messages (streaming). (Local streaming from a watched directory:
``pipelines.watch``.)

Every source produces ``pyarrow.RecordBatch`` elements, never one element per row, so the
transforms downstream work on whole columns. A read is planned at pipeline construction time
(globs matched, Parquet footers read, feature columns checked) so that a missing file, a corrupt
footer or a missing feature column fails before the pipeline starts, with the file and feature
named. Errors found while reading (a corrupt data page) name the file and row group.

This module does not import Beam (the in-process engine, ``pipelines.local``, reads with it);
the Beam transforms ``ReadBatches`` and ``ReadPubSubBatches`` live in ``pipelines.beam_io``,
which imports this module (never the reverse).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from divtransforms.eventtime import EVENT_TIME_COLUMN, SOURCE_KEY
from divtransforms.window import UNREAD_COLUMNS_KEY

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "EVENT_TIME_COLUMN",
    "CsvDialect",
    "InputError",
    "OpenFiles",
    "ReadTask",
    "column_groups",
    "decoded_bytes",
    "detect_format",
    "expand_inputs",
    "is_data_file",
    "messages_to_batch",
    "plan_reads",
    "read_task",
]

_LOG = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 1 << 20
ROW_GROUPS_PER_TASK = 4
READ_BLOCK_BYTES = 1 << 22  # CSV / JSON Lines read block: the longest row they can hold
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


class InputError(ValueError):
    """Input data that cannot be read as asked (names the file, and the feature or row group)."""


SNIFF_BYTES = 1024  # what the delimiter is guessed from, when not given
_SNIFF_DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written: ``[source] csv = { delimiter = ";", quote = "'", encoding =
    "latin-1", header = true }`` or ``divmon check --csv-delimiter ...``.

    ``delimiter`` None: guessed per file from its first KiB (``csv.Sniffer`` among ``, ; tab |``;
    a comma when it cannot tell), and logged. ``quote`` ``""``: no quoting. ``header`` false:
    the first line is data and the columns are ``names`` (or ``f0``, ``f1``, ... without them).
    """

    delimiter: str | None = None
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        import codecs

        if self.delimiter is not None and len(self.delimiter) != 1:
            raise InputError(f"CSV delimiter must be one character, got {self.delimiter!r}")
        if len(self.quote) > 1:
            raise InputError(f"CSV quote must be one character (or empty), got {self.quote!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise InputError(f"unknown CSV encoding {self.encoding!r}") from None
        if self.names and self.header:
            raise InputError("CSV names are for files without a header line (header = false)")

    @classmethod
    def from_options(cls, options: Any) -> CsvDialect | None:
        """From ``--csv-delimiter``, ``--csv-quote``, ``--csv-encoding``, ``--csv-no-header``
        (None when none is given)."""
        delimiter = _unescape(getattr(options, "csv_delimiter", None))
        quote = getattr(options, "csv_quote", None)
        encoding = getattr(options, "csv_encoding", None)
        no_header = bool(getattr(options, "csv_no_header", False))
        if delimiter is None and quote is None and encoding is None and not no_header:
            return None
        return cls(
            delimiter,
            cls.quote if quote is None else str(quote),
            cls.encoding if encoding is None else str(encoding),
            not no_header,
        )

    def resolved(self, path: str) -> CsvDialect:
        """This dialect with the delimiter of ``path`` filled in (sniffed when not given)."""
        if self.delimiter is not None:
            return self
        from dataclasses import replace

        return replace(self, delimiter=_sniffed_delimiter(path, self.encoding))

    def read_options(self, block_size: int) -> Any:
        import pyarrow.csv as pcsv

        return pcsv.ReadOptions(
            block_size=block_size,
            encoding=self.encoding,
            column_names=list(self.names) or None,
            autogenerate_column_names=not self.header and not self.names,
        )

    def parse_options(self) -> Any:
        import pyarrow.csv as pcsv

        return pcsv.ParseOptions(delimiter=self.delimiter or ",", quote_char=self.quote or False)

    def describe(self) -> str:
        quote = repr(self.quote) if self.quote else "none"
        return (
            f"delimiter {self.delimiter!r}, quote {quote}, encoding {self.encoding}, "
            f"{'a header line' if self.header else 'no header line'}"
        )


def _unescape(value: str | None) -> str | None:
    """``\\t`` (as a shell passes it) is a tab."""
    return {"\\t": "\t", "tab": "\t"}.get(value, value) if value is not None else None


_SNIFFED: dict[tuple[str, int], str] = {}


def _sniffed_delimiter(path: str, encoding: str) -> str:
    """The delimiter of ``path``'s first KiB (cached per path and size: input files are
    immutable); logged once per file."""
    import csv

    key = (path, _size(path))
    if key in _SNIFFED:
        return _SNIFFED[key]
    try:
        with _open_binary(path) as fh:
            sample = fh.read(SNIFF_BYTES).decode(encoding, errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    lines = sample.splitlines()
    if len(lines) > 1 and len(sample) >= SNIFF_BYTES:
        sample = "\n".join(lines[:-1])  # the last line may be cut short
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
        how = "sniffed from the first KiB"
    except csv.Error:
        delimiter, how = ",", "could not tell from the first KiB: the default"
    _LOG.info(
        "%s: CSV delimiter %r (%s; set [source] csv.delimiter or --csv-delimiter to choose)",
        path,
        delimiter,
        how,
    )
    if len(_SNIFFED) > 4096:
        _SNIFFED.clear()
    _SNIFFED[key] = delimiter
    return delimiter


def _open_binary(path: str):
    if "://" not in path:
        return open(path, "rb")
    from divtransforms import storage

    return storage.open_read(path)


def detect_format(path: str, input_format: str | None = None) -> str:
    """``parquet``, ``csv`` or ``jsonl``: ``input_format`` if given, else from the suffix."""
    if input_format:
        if input_format not in ("parquet", "csv", "jsonl"):
            raise InputError(f"unknown input format {input_format!r} (parquet, csv, jsonl)")
        return input_format
    name = path[:-3] if path.endswith(".gz") else path
    fmt = _SUFFIXES.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the suffix; pass --input-format")
    return fmt


def is_data_file(path: str) -> bool:
    """The one rule for which file names count as data, shared by the readers and the monitor's
    discovery: names starting with ``_`` or ``.`` are metadata or in-progress writes (Spark's
    ``_SUCCESS``, ``.part.tmp``, the project's own ``_state``) and are skipped."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not name.startswith(("_", "."))


def expand_inputs(inputs: str | Sequence[str]) -> list[str]:
    """Match paths and globs (local, ``gs://``, ``s3://``: ``divtransforms.storage``) to a
    sorted file list; a directory (bucket prefix) means the files in it."""
    from divtransforms import storage

    patterns = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not patterns:
        raise InputError("no input given")
    files: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if not any(c in pattern for c in "*?[") and storage.isdir(pattern):
            pattern = str(storage.join(pattern, "*"))
        try:
            found = [i.path for i in storage.glob(pattern) if is_data_file(i.path)]
        except storage.StorageError as exc:
            raise InputError(str(exc)) from None
        if not found:
            raise InputError(f"no input files match {pattern}")
        files.extend(sorted(found))
    return files


@dataclass(frozen=True)
class ReadTask:
    """One unit of reading: a file (CSV/JSONL) or a few row groups of a Parquet file.

    ``columns``: the columns to read (None: all). With ``require_columns`` False (a check), a
    file may lack some of them: they are absent from its batches (and counted as such), and the
    file's other columns are named in each batch's metadata so a check can report them as new.
    Batches also carry the file and the file row of their first row (``eventtime.SOURCE_KEY``).
    """

    path: str
    fmt: str
    columns: tuple[str, ...] | None
    row_groups: tuple[int, ...] | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    numeric: tuple[str, ...] = ()
    require_columns: bool = True
    first_row: int = 0  # file row of the task's first row (Parquet row groups)
    csv: CsvDialect | None = None  # CSV: the file's dialect (delimiter resolved when planned)


def _open(path: str):
    """A local path as it is (Arrow opens and maps it itself); a bucket object as a seekable
    file read in ranges (``divtransforms.storage.open_read``)."""
    if "://" not in path:
        return path
    from divtransforms import storage

    return storage.open_read(path)


# A text column whose dictionary page is at most this big is read as a DictionaryArray: its
# values are decoded once per row group instead of once per row (7x faster to read, and the
# categorical bins then count codes). A bigger dictionary page means many distinct values, where
# the writer may have fallen back to plain pages, which Arrow would hash back into a dictionary.
DICTIONARY_PAGE_BYTES = 64 << 10


class OpenFiles:
    """The Parquet files one reader has open, the most recent ``size`` of them: a caller that
    reads the same files in several passes (``pipelines.local``: a pass per column group) parses
    each footer once (a footer of 1,000 columns takes ~30 ms). Not shared between threads."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._files: dict[str, tuple[Any, pa.Schema, dict[str, str]]] = {}

    def get(self, path: str) -> Any:
        return self._entry(path)[0]

    def schema(self, path: str) -> tuple[pa.Schema, dict[str, str]]:
        """The file's Arrow schema and its columns' type labels (``schema_arrow`` is rebuilt
        on every access: ~3 ms for 1,000 columns)."""
        return self._entry(path)[1:]

    def _entry(self, path: str) -> tuple[Any, pa.Schema, dict[str, str]]:
        from divtransforms.quality import type_label

        entry = self._files.pop(path, None)
        if entry is None:
            pf = _parquet_file(path)
            schema = pf.schema_arrow
            entry = (pf, schema, {f.name: type_label(f.type) for f in schema})
            if len(self._files) >= self._size:
                self._files.pop(next(iter(self._files)))
        self._files[path] = entry  # the most recent last
        return entry


def _schema(
    path: str, pf: Any, opened: OpenFiles | None
) -> tuple[pa.Schema, dict[str, str] | None]:
    """A Parquet file's schema (and type labels, through ``opened``)."""
    if opened is not None:
        return opened.schema(path)
    return pf.schema_arrow, None


def _parquet_file(path: str, opened: OpenFiles | None = None):
    """The file, its small-dictionary text columns read as dictionaries (same values);
    through ``opened`` when given (its footer parsed once)."""
    import pyarrow.parquet as pq

    if opened is not None:
        return opened.get(path)
    try:
        source = _open(path)
        pf = pq.ParquetFile(source)
        names = _dictionary_columns(pf)
        if not names:
            return pf
        return pq.ParquetFile(source, metadata=pf.metadata, read_dictionary=names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc


def _dictionary_columns(pf: Any) -> list[str]:
    """Top-level text columns whose first row group has a small dictionary page."""
    md = pf.metadata
    if md.num_row_groups == 0:
        return []
    group = md.row_group(0)
    chunks = {group.column(k).path_in_schema: k for k in range(group.num_columns)}
    out = []
    for field in pf.schema_arrow:
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        chunk = group.column(chunks[field.name]) if field.name in chunks else None
        if chunk is None or not chunk.has_dictionary_page:
            continue
        size = chunk.data_page_offset - (chunk.dictionary_page_offset or 0)
        if 0 < size <= DICTIONARY_PAGE_BYTES:
            out.append(field.name)
    return out


def _check_columns(
    path: str,
    names: Iterable[str] | pa.Schema,
    columns: Sequence[str] | None,
    require: bool = True,
    labels: Mapping[str, str] | None = None,
) -> tuple[list[str] | None, dict[str, str]]:
    """``(columns to read, {the file's other columns: type label})``; a missing column is an
    error only when ``require`` (building a reference), else it is left to be counted as absent.
    ``names`` is the file's schema where known (the other columns' types), else its names."""
    schema = names if isinstance(names, pa.Schema) else None
    have = list(schema.names if schema is not None else names)
    if not columns:
        return None, {}
    have_set = set(have)
    missing = [c for c in columns if c not in have_set]
    if missing and require:
        raise InputError(
            f"{path}: feature column(s) {', '.join(map(repr, missing))} not in "
            f"the file (it has {', '.join(sorted(have))})"
        )
    if missing:
        _LOG.warning(
            "%s: column(s) %s missing: checked as absent", path, ", ".join(map(repr, missing))
        )
    wanted = set(columns)
    if labels is None:
        from divtransforms.quality import type_label

        labels = {} if schema is None else {f.name: type_label(f.type) for f in schema}
    return [c for c in columns if c in have_set], {
        c: labels.get(c, "unread") for c in have if c not in wanted
    }


def _annotate(
    batch: pa.RecordBatch, path: str, row: int, unread: Mapping[str, str]
) -> pa.RecordBatch:
    """The batch with its file, first row and the file's unread columns in its metadata."""
    meta = dict(batch.schema.metadata or {})
    meta[SOURCE_KEY] = json.dumps({"path": path, "row": row}).encode()
    if unread:
        meta[UNREAD_COLUMNS_KEY] = json.dumps(dict(unread)).encode()
    return batch.replace_schema_metadata(meta)


def plan_reads(
    files: Sequence[str],
    *,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    numeric: Sequence[str] = (),
    require_columns: bool = True,
    opened: OpenFiles | None = None,
    csv: CsvDialect | None = None,
) -> list[ReadTask]:
    """Read tasks for ``files``; Parquet footers are read and feature columns checked here
    (a missing one is an error with ``require_columns``, else counted as absent). A CSV
    file's dialect is ``csv`` with its delimiter sniffed when not given."""
    tasks: list[ReadTask] = []
    cols = tuple(dict.fromkeys(columns)) if columns else None
    for path in files:
        fmt = detect_format(path, input_format)
        if _size(path) == 0:
            raise InputError(f"{path}: the file is empty (0 bytes)")
        if fmt == "parquet":
            pf = _parquet_file(path, opened)
            schema, labels = _schema(path, pf, opened)
            _check_columns(path, schema, cols, require_columns, labels)
            n = pf.num_row_groups
            first = 0
            for start in range(0, n, ROW_GROUPS_PER_TASK):
                groups = tuple(range(start, min(n, start + ROW_GROUPS_PER_TASK)))
                tasks.append(
                    ReadTask(
                        path, fmt, cols, groups, batch_rows, tuple(numeric), require_columns, first
                    )
                )
                first += sum(pf.metadata.row_group(g).num_rows for g in groups)
        else:
            dialect = (csv or CsvDialect()).resolved(path) if fmt == "csv" else None
            tasks.append(
                ReadTask(
                    path, fmt, cols, None, batch_rows, tuple(numeric), require_columns, 0, dialect
                )
            )
    return tasks


def _size(path: str) -> int:
    if "://" not in path:
        return os.path.getsize(path)
    from divtransforms import storage

    try:
        return storage.stat(path).size
    except storage.StorageError as exc:
        raise InputError(str(exc)) from None


def read_task(task: ReadTask, opened: OpenFiles | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of one task (never the whole file at once)."""
    if task.fmt == "parquet":
        yield from _read_parquet(task, opened)
    elif task.fmt == "csv":
        yield from _read_csv(task)
    elif task.fmt == "jsonl":
        yield from _read_jsonl(task)
    else:
        raise InputError(f"{task.path}: unknown format {task.fmt!r}")


def _read_parquet(task: ReadTask, opened: OpenFiles | None = None) -> Iterator[pa.RecordBatch]:
    """One row group at a time (decoding whole column chunks is ~4x faster than
    ``iter_batches``' re-slicing), handed on in slices of at most ``batch_rows`` rows."""
    pf = _parquet_file(task.path, opened)
    schema, labels = _schema(task.path, pf, opened)
    columns, unread = _check_columns(task.path, schema, task.columns, task.require_columns, labels)
    groups = task.row_groups if task.row_groups is not None else range(pf.num_row_groups)
    row = task.first_row
    for group in groups:
        try:
            table = _read_row_group(pf, group, columns)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                f"{task.path}: corrupt Parquet data in row groups [{group}] ({exc})"
            ) from exc
        for batch in table.to_batches(max_chunksize=task.batch_rows):
            yield _annotate(batch, task.path, row, unread)
            row += batch.num_rows


COLUMNS_PER_READ = 64


def _read_row_group(pf: Any, group: int, columns: list[str] | None) -> pa.Table:
    """One row group, at most ``COLUMNS_PER_READ`` columns decoded at a time: decoding a row
    group of a thousand columns at once takes about four times the data's size in buffers."""
    names = columns if columns is not None else pf.schema_arrow.names
    if len(names) <= COLUMNS_PER_READ:
        return pf.read_row_group(group, columns=columns, use_threads=False)
    parts = [
        pf.read_row_group(group, columns=names[i : i + COLUMNS_PER_READ], use_threads=False)
        for i in range(0, len(names), COLUMNS_PER_READ)
    ]
    arrays = [c for p in parts for c in p.columns]
    return pa.Table.from_arrays(arrays, names=[n for p in parts for n in p.column_names])


def decoded_bytes(
    files: Sequence[str],
    columns: Sequence[str],
    *,
    input_format: str | None = None,
    opened: OpenFiles | None = None,
) -> dict[str, int]:
    """Per column, the most bytes one read of ``files`` decodes it to at once: for Parquet, its
    largest column chunk (``read_task`` decodes a row group at a time), from the footers. Exact
    for fixed-width types (values and validity); for text and other types, the chunk's rows
    times the bytes per row of the first row group that has the column (decoded once here:
    the footer does not tell, and a dictionary-encoded chunk is much smaller than its values),
    and at least the chunk's uncompressed size. CSV is read in blocks of ``READ_BLOCK_BYTES``
    and JSON Lines whole: 0 (reading fewer of their columns does not decode less)."""
    wanted = set(columns)
    out = dict.fromkeys(columns, 0)
    per_row: dict[str, float] = {}  # variable-width columns: decoded bytes per row
    for path in files:
        if detect_format(path, input_format) != "parquet":
            continue
        pf = _parquet_file(path, opened)
        md, schema = pf.metadata, pf.schema_arrow
        width = {
            f.name: f.type.bit_width if pa.types.is_primitive(f.type) else None
            for f in schema
            if f.name in wanted
        }
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            rows = rg.num_rows
            raw: dict[str, int] = {}
            for i in range(rg.num_columns):
                chunk = rg.column(i)
                name = chunk.path_in_schema.split(".", 1)[0]
                if name in width:
                    raw[name] = raw.get(name, 0) + chunk.total_uncompressed_size
            for name, size in raw.items():
                bits = width[name]
                if bits is not None:  # values, and the validity bitmap (allocated, nulls or not)
                    size = (rows * bits + 7) // 8 + (rows + 7) // 8 + 128
                elif rows:
                    if name not in per_row:
                        per_row[name] = _read_row_group(pf, g, [name]).column(0).nbytes / rows
                    size = max(size, int(rows * per_row[name]) + 128)
                out[name] = max(out[name], size)
    return out


def column_groups(columns: Sequence[str], sizes: Mapping[str, int], budget: int) -> list[list[str]]:
    """``columns`` in order, cut into consecutive groups whose ``sizes`` add up to at most
    ``budget`` (a column larger than the budget on its own); one group (perhaps empty) at
    least."""
    groups: list[list[str]] = [[]]
    total = 0
    for name in columns:
        size = sizes.get(name, 0)
        if groups[-1] and total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += size
    return groups


def _read_csv(task: ReadTask) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv

    dialect = task.csv or CsvDialect().resolved(task.path)
    read = dialect.read_options(READ_BLOCK_BYTES)
    parse = dialect.parse_options()
    try:
        header = _csv_header(task.path, dialect)
        columns, unread = _check_columns(task.path, header, task.columns, task.require_columns)
        # Feature columns are read as text and converted by the bins: a stray "abc" in a numeric
        # column then counts as invalid instead of failing type inference half-way through.
        convert = pcsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in task.numeric if c in header},
            strings_can_be_null=True,
        )
        row = 0
        with pcsv.open_csv(
            _open(task.path), read_options=read, parse_options=parse, convert_options=convert
        ) as rd:
            for batch in rd:
                binary = [f.name for f in batch.schema if pa.types.is_binary(f.type)]
                if binary:  # what Arrow makes of text that is not valid in the encoding
                    raise InputError(
                        f"{task.path}: column {binary[0]!r} is not {dialect.encoding} text "
                        f"(rows {row}-{row + batch.num_rows - 1}); set the CSV encoding "
                        "([source] csv.encoding, --csv-encoding), e.g. latin-1"
                    )
                yield _annotate(_numeric_text_to_float(batch, task.numeric), task.path, row, unread)
                row += batch.num_rows
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{task.path}: cannot read CSV ({_arrow_reason(exc)}); read with {dialect.describe()}"
        ) from exc


def _arrow_reason(exc: BaseException) -> str:
    """Arrow's reading errors in the user's terms (one line)."""
    text = " ".join(str(exc).split())
    if "straddl" in text:
        return f"a row is longer than the reader's {READ_BLOCK_BYTES >> 20} MiB block"
    return text


def _csv_header(path: str, dialect: CsvDialect | None = None) -> list[str]:
    """The column names of a CSV file (its first line, parsed as the reader parses it)."""
    import pyarrow.csv as pcsv

    dialect = dialect or CsvDialect().resolved(path)
    with pcsv.open_csv(
        _open(path),
        read_options=dialect.read_options(1 << 16),
        parse_options=dialect.parse_options(),
        convert_options=pcsv.ConvertOptions(column_types={}, strings_can_be_null=True),
    ) as rd:
        return list(rd.schema.names)


def _numeric_text_to_float(batch: pa.RecordBatch, numeric: Sequence[str]) -> pa.RecordBatch:
    """Cast clean numeric text columns to float64 (fast); leave dirty ones as text for the bins."""
    import pyarrow.compute as pc

    if not numeric:
        return batch
    arrays = list(batch.columns)
    for i, name in enumerate(batch.schema.names):
        if name in numeric and pa.types.is_string(batch.schema.field(i).type):
            try:
                arrays[i] = pc.cast(arrays[i], pa.float64())
            except pa.ArrowInvalid:
                pass
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _read_jsonl(task: ReadTask) -> Iterator[pa.RecordBatch]:
    import pyarrow.json as pjson

    try:
        table = pjson.read_json(
            _open(task.path), read_options=pjson.ReadOptions(block_size=READ_BLOCK_BYTES)
        )
    except pa.ArrowInvalid:
        # Mixed types in a column (e.g. numbers and text): fall back to a per-line parse.
        yield from _read_jsonl_lines(task)
        return
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{task.path}: cannot read JSON Lines ({_arrow_reason(exc)})") from exc
    columns, unread = _check_columns(task.path, table.schema, task.columns, task.require_columns)
    if columns is not None:
        table = table.select(columns)
    row = 0
    for batch in table.to_batches(max_chunksize=task.batch_rows):
        yield _annotate(batch, task.path, row, unread)
        row += batch.num_rows


def _read_jsonl_lines(task: ReadTask) -> Iterator[pa.RecordBatch]:
    opener = open if "://" not in task.path else None
    fh = opener(task.path, "rb") if opener else _open(task.path)
    rows: list[dict[str, Any]] = []
    done = 0  # rows already handed on
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{task.path}: line {lineno} is not JSON ({exc})") from exc
            if len(rows) >= task.batch_rows:
                yield _rows_to_batch(rows, task, done)
                done += len(rows)
                rows = []
    if rows:
        yield _rows_to_batch(rows, task, done)


def _rows_to_batch(rows: list[dict[str, Any]], task: ReadTask, first: int) -> pa.RecordBatch:
    """Parsed JSON lines -> a batch of the task's columns that occur in them (a field that no
    row has is absent, as in a file read whole)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns, unread = _check_columns(task.path, keys, task.columns, task.require_columns)
    return _annotate(messages_to_batch(rows, columns or keys), task.path, first, unread)


def messages_to_batch(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> pa.RecordBatch:
    """JSON objects -> one RecordBatch; a column of mixed types is kept as text (and then
    counted as invalid where it is not a number); absent fields are missing values."""
    names = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    if EVENT_TIME_COLUMN in rows[0] and EVENT_TIME_COLUMN not in names:
        names.append(EVENT_TIME_COLUMN)
    arrays = []
    for name in names:
        values = [r.get(name) for r in rows]
        if name == EVENT_TIME_COLUMN:
            arrays.append(pa.array(values, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(
                pa.array([None if v is None else str(v) for v in values], type=pa.string())
            )
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _parse_event_time(value: Any, field: str) -> int:
    """Epoch seconds (number) or ISO 8601 text -> epoch microseconds."""
    from datetime import UTC, datetime

    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value) * 1_000_000)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"event time field {field!r}: cannot parse {value!r}") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1_000_000)
    raise InputError(f"event time field {field!r}: {value!r} is not a time")
