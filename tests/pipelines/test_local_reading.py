"""The in-process engine reads a pass's columns in groups of bounded decoded size: memory does not
grow with the number of columns, and the profile and the records are those of one group, bit for
bit. (Against Beam: tests/pipelines/test_local_engine.py.)"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtransforms.records import sort_records
from pipelines import io as pio
from pipelines import local
from pipelines.check_job import CheckJob, Source
from pipelines.spec import BuildJob

T0 = 1_700_000_000
ROWS = 3000


def _table(rng: np.random.Generator, n_numeric: int, shift: float = 0.0) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for i in range(n_numeric):
        x = rng.normal(shift * (i % 3), 1.0 + i % 4, ROWS)
        x[rng.random(ROWS) < 0.01] = np.nan
        cols[f"x{i:03d}"] = pa.array(x)
        if i == 2:
            cols["amount"] = pa.array(rng.lognormal(1.0, 0.5, ROWS))
            cols["color"] = pa.array(rng.choice(["red", "green", "blue", "grey"], ROWS))
    ts = ((T0 + rng.uniform(0, 4 * 3600, ROWS)) * 1e6).astype("int64")
    cols["ts"] = pa.array(ts.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(20261201)
    d = tmp_path_factory.mktemp("groups")
    pq.write_table(_table(rng, 30), d / "ref.parquet", row_group_size=1000)
    cur = _table(rng, 30, shift=0.3)
    # a schema change: a feature missing, a column the reference never saw
    cur = cur.drop(["x004"]).append_column("extra", cur.column("x000"))
    pq.write_table(cur, d / "cur.parquet", row_group_size=700)
    return d


class _Spy(local.BatchSource):
    """The engine's batch source, kept for its accounting."""

    made: ClassVar[list[local.BatchSource]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _Spy.made.append(self)


@pytest.fixture
def spy(monkeypatch):
    _Spy.made = []
    monkeypatch.setattr(local, "BatchSource", _Spy)
    return _Spy.made


def _build(files, monkeypatch, read_bytes: int, cache_mb: int | None = None):
    monkeypatch.setattr(local, "READ_BYTES", read_bytes)
    return local.run_build_local(
        BuildJob([str(files / "ref.parquet")], None, exclude=["ts"], cache_mb=cache_mb)
    )


def _check(files, profile, monkeypatch, read_bytes: int, window: str | None):
    monkeypatch.setattr(local, "READ_BYTES", read_bytes)
    job = CheckJob(
        profile,
        Source((str(files / "cur.parquet"),)),
        window=window,
        timestamp_column="ts" if window else None,
        run_id="same",
        mle_state={},
    )
    return local.run_check_local(job)


def test_a_profile_built_in_column_groups_is_the_profile_of_one_group(files, monkeypatch, spy):
    whole = _build(files, monkeypatch, 1 << 30)
    assert spy[-1].groups == [1, 1, 1] or spy[-1].groups[:2] == [1, 1]
    for read_bytes, cache_mb in ((1, None), (30_000, None), (30_000, 0), (100_000, 1)):
        grouped = _build(files, monkeypatch, read_bytes, cache_mb)
        assert spy[-1].groups[0] > 1
        assert list(grouped.features) == list(whole.features)
        for name, fp in whole.features.items():
            assert grouped.features[name].to_dict() == fp.to_dict(), (read_bytes, name)
        assert grouped.to_dict()["features"] == whole.to_dict()["features"]


@pytest.mark.parametrize("window", [None, "1h"])
def test_check_records_in_column_groups_are_those_of_one_group(files, monkeypatch, spy, window):
    profile = _build(files, monkeypatch, 1 << 30)
    whole = _check(files, profile, monkeypatch, 1 << 30, window)
    assert spy[-1].groups == [1]
    grouped = _check(files, profile, monkeypatch, 20_000, window)
    assert spy[-1].groups[0] > 5
    a, b = (
        sort_records(r.records).drop([c for c in ("created_at",) if c in r.records.column_names])
        for r in (whole, grouped)
    )
    per_window = len(profile.features) + 1  # and the schema record (the new column)
    assert a.num_rows == b.num_rows and a.num_rows % per_window == 0
    assert a.num_rows >= per_window * (1 if window is None else 4)
    # every field, floats bit for bit (repr round-trips a float; NaN equals NaN)
    assert repr(b.to_pylist()) == repr(a.to_pylist())
    assert grouped.mle_state == whole.mle_state
    assert grouped.metrics == whole.metrics
    assert grouped.n_rows_read == whole.n_rows_read == ROWS


def test_reads_stay_within_the_byte_budget_however_many_columns(tmp_path, monkeypatch, spy):
    """The engine's own accounting: the largest batch it decoded stays under its read budget
    when the columns grow 10x (the groups grow instead), for the build and the check."""
    rng = np.random.default_rng(7)
    budget = 200_000  # bytes: a row group of 1,000 rows holds 8 kB per float column
    largest = {}
    for n in (10, 100):
        path = tmp_path / f"t{n}.parquet"
        pq.write_table(_table(rng, n), path, row_group_size=1000)
        monkeypatch.setattr(local, "READ_BYTES", budget)
        profile = local.run_build_local(BuildJob([str(path)], None, exclude=["ts"]))
        build = spy[-1]
        job = CheckJob(profile, Source((str(path),)), window="1h", timestamp_column="ts")
        local.run_check_local(job)
        check = spy[-1]
        for src in (build, check):
            assert 0 < src.max_batch_bytes <= budget
            assert src.rows_read == ROWS
        largest[n] = max(build.max_batch_bytes, check.max_batch_bytes)
        assert build.groups[0] == (1 if n == 10 else pytest.approx(5, abs=1))
    assert largest[100] <= budget < 10 * largest[10]


def test_decoded_bytes_bound_what_a_row_group_decodes_to(tmp_path):
    rng = np.random.default_rng(3)
    n = 5000
    words = np.array(["a", "bb", "a somewhat longer value", "dd", None], dtype=object)
    table = pa.table(
        {
            "f": rng.normal(size=n),
            "i": pa.array(rng.integers(0, 9, n), type=pa.int32()),
            "b": pa.array(rng.random(n) < 0.5),
            "s": pa.array(rng.choice(words, n)),
            "plain": pa.array([f"value-{k}" for k in range(n)]),
            "t": pa.array(np.arange(n).astype("datetime64[ms]")),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2000, use_dictionary=["s"])
    est = pio.decoded_bytes([str(path)], table.column_names)
    pf = pio._parquet_file(str(path))  # as the engine reads it (text: dictionaries)
    groups = [pf.read_row_group(g) for g in range(pf.num_row_groups)]
    for name in table.column_names:
        largest = max(t.column(name).nbytes for t in groups)
        assert est[name] >= largest, name
        if name in ("f", "i", "b", "t"):  # fixed width: exact up to the validity bitmap
            assert est[name] <= largest + 2000 // 8 + 128 + 64, name


def test_column_groups_are_consecutive_and_within_the_budget():
    sizes = {"a": 5, "b": 5, "c": 9, "d": 20, "e": 1}
    assert pio.column_groups(list(sizes), sizes, 10) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert pio.column_groups(list(sizes), sizes, 100) == [list(sizes)]
    assert pio.column_groups([], sizes, 10) == [[]]
