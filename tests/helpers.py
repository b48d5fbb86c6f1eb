"""Data and helpers shared by tests/beam and tests/pipelines: synthetic reference and current
tables, records compared with a tolerance (not equal_to), a local Beam pipeline, ``check``.

Their fixtures (``rng``, ``reference_table``, ``profile``, ``anonymous_gcp``) are in
tests/conftest.py; ``offline`` is in tests/pipelines/conftest.py."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from divtransforms.records import records_to_table, sort_records

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, seconds since the epoch

# Fields that legitimately differ between two runs (wall clock).
VOLATILE = ("created_at",)


def local_pipeline(*extra: str) -> TestPipeline:
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner", *extra]))


def make_reference(rng: np.random.Generator, n: int = 4000) -> pa.Table:
    return pa.table(
        {
            "x": rng.normal(0.0, 1.0, n),
            "amount": rng.lognormal(1.0, 0.5, n),
            "color": rng.choice(["red", "green", "blue", "grey"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def make_current(
    rng: np.random.Generator, n: int = 3000, hours: float = 3.0, shift: float = 0.2
) -> pa.Table:
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.02] = np.nan
    ts = (T0 + rng.uniform(0, hours * 3600, n)) * 1e6
    return pa.table(
        {
            "x": x,
            "amount": rng.lognormal(1.1, 0.5, n),
            "color": rng.choice(["red", "green", "blue", "pink"], n),
            "ts": pa.array(ts.astype("int64").astype("datetime64[us]")).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )


def close(a: Any, b: Any, rtol: float = 1e-9, path: str = "") -> list[str]:
    """Differences between two nested record values (floats compared with a tolerance)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in close(a[k], b[k], rtol, f"{path}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in close(x, y, rtol, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return []
        if math.isinf(a) or math.isinf(b):
            return [] if a == b else [f"{path}: {a} != {b}"]
        return [] if abs(a - b) <= rtol * max(1.0, abs(a), abs(b)) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def table_rows(records: pa.Table | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    table = records if isinstance(records, pa.Table) else records_to_table(list(records))
    rows = sort_records(table).to_pylist()
    for r in rows:
        for k in VOLATILE:
            r.pop(k, None)
    return rows


def assert_records_equal(actual, expected, rtol: float = 1e-9) -> None:
    a, e = table_rows(actual), table_rows(expected)
    assert len(a) == len(e), f"{len(a)} records, expected {len(e)}"
    diffs = close(a, e, rtol)
    assert not diffs, "records differ:\n" + "\n".join(diffs[:20])


def records_match(expected, rtol: float = 1e-9):
    """A matcher for ``assert_that``: the PCollection's records equal ``expected``."""

    def _match(actual):
        assert_records_equal(list(actual), expected, rtol)

    return _match


def check(reference, inputs, output=None, *, pipeline_args=None, input_format=None, **job):
    """``run_check`` of a ``CheckJob`` on ``inputs`` (the job's other fields as keywords)."""
    from pipelines.check_job import CheckJob, Source, run_check

    source = Source(tuple(str(i) for i in inputs), input_format=input_format)
    return run_check(CheckJob(reference, source, output=output, **job), pipeline_args)
