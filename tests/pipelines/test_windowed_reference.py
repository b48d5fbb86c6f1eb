"""A windowed reference in every engine: the in-process build equals ReferenceProfile.build, and
the in-process check, the Beam check and compare() give the same records (issue 22)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtransforms import ReferenceProfile, compare
from pipelines.check_job import CheckJob, Source, run_check
from pipelines.local import run_build_local, run_check_local
from pipelines.spec import BuildJob
from tests.helpers import close, table_rows

pytestmark = pytest.mark.beam
HOUR = 3_600_000_000


def cycle(rng: np.random.Generator, first_hour: int, hours: int, rows: int = 80) -> pa.Table:
    h = np.repeat(np.arange(first_hour, first_hour + hours), rows)
    ts = h * HOUR + rng.integers(0, HOUR, h.size)
    level = 0.5 * np.sin(2 * np.pi * (h % 24) / 24)
    return pa.table(
        {
            "x": rng.normal(level, 1.0),
            "color": rng.choice(["red", "green", "blue"], h.size, p=[0.5, 0.3, 0.2]),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(22)
    pq.write_table(cycle(rng, 0, 24 * 6), tmp_path / "ref.parquet", row_group_size=1500)
    pq.write_table(cycle(rng, 24 * 6, 30), tmp_path / "cur.parquet", row_group_size=700)
    return tmp_path


def test_windowed_reference_in_every_engine(files):
    ref = pq.read_table(files / "ref.parquet")
    built = ReferenceProfile.build(ref, exclude=["ts"], timestamp_column="ts", window="1h")
    local = run_build_local(
        BuildJob(
            [str(files / "ref.parquet")],
            str(files / "ref.json"),
            exclude=["ts"],
            timestamp_column="ts",
            window=3600.0,
        )
    )
    for name, fp in built.features.items():  # (moments agree to rounding, as without windows)
        assert local.features[name].histogram == fp.histogram, name
        assert local.features[name].family == fp.family, name
    assert np.array_equal(local.windows.starts, built.windows.starts)
    for name in built.features:
        a, b = local.windows.features[name], built.windows.features[name]
        assert np.array_equal(a.counts, b.counts), name
        np.testing.assert_allclose(a.t, b.t, rtol=1e-9, atol=1e-9)
    loaded = ReferenceProfile.load(files / "ref.json")
    assert loaded == local
    job = CheckJob(
        loaded,
        Source((str(files / "cur.parquet"),)),
        window="1h",
        timestamp_column="ts",
        run_id="same",
        mle_state={},
        season="hour_of_day",
    )
    in_process = run_check_local(job)
    beam = run_check(job, ["--runner=FnApiRunner"])
    diffs = close(table_rows(in_process.records), table_rows(beam.records), rtol=0.0)
    assert not diffs, diffs[:10]
    ours = compare(
        loaded,
        pq.read_table(files / "cur.parquet"),
        timestamp_column="ts",
        window="1h",
        season="hour_of_day",
        run_id="same",
    )
    # compare() reads the file whole (other batches than the engine's): equal to rounding
    diffs = close(table_rows(in_process.records), table_rows(ours), rtol=1e-9)
    assert not diffs, diffs[:10]
    seasons = set(in_process.records.column("season").to_pylist())
    assert "hour_of_day=05h" in seasons
    assert all(v is not None for v in in_process.records.column("tau").to_pylist())


def test_the_beam_build_keeps_the_same_windows(files):
    from pipelines.reference_job import run_build_reference

    ref = str(files / "ref.parquet")
    windowed = {"exclude": ["ts"], "timestamp_column": "ts", "window": 3600.0}
    local = run_build_local(BuildJob([ref], None, **windowed))
    beam = run_build_reference(BuildJob([ref], str(files / "beam.json"), exact=True, **windowed))
    assert beam.schema_version == 4
    assert np.array_equal(beam.windows.starts, local.windows.starts)
    for name, fp in local.features.items():
        assert beam.features[name].histogram == fp.histogram, name
        a, b = beam.windows.features[name], local.windows.features[name]
        assert np.array_equal(a.counts, b.counts), name
        np.testing.assert_allclose(a.t, b.t, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.dev, b.dev, rtol=1e-9, atol=1e-9)


def test_every_engine_keeps_the_same_checked_windows(files):
    """A rolling reference's input (``CheckJob.keep_windows``): the checked windows' statistics
    on the reference's bins, the same from the in-process check and from Beam, and the same as
    the windows a reference build keeps of the same data."""
    loaded = run_build_local(
        BuildJob(
            [str(files / "ref.parquet")],
            None,
            exclude=("ts",),
            timestamp_column="ts",
            window=3600.0,
        )
    )
    job = CheckJob(
        loaded,
        Source((str(files / "cur.parquet"),)),
        window="1h",
        timestamp_column="ts",
        run_id="kept",
        mle_state={},
        keep_windows=True,
    )
    in_process = run_check_local(job)
    beam = run_check(job, ["--runner=FnApiRunner"])
    a, b = in_process.windows, beam.windows
    assert a.k == 30 and a.size_micros == HOUR
    assert np.array_equal(a.starts, b.starts)
    built = loaded.with_windows(
        pq.read_table(files / "cur.parquet"), timestamp_column="ts", window="1h"
    ).windows
    assert np.array_equal(a.starts, built.starts)
    for name in loaded.features:
        for other in (b, built):
            x, y = a.features[name], other.features[name]
            assert np.array_equal(x.counts, y.counts), name
            assert np.array_equal(x.missing, y.missing), name
            np.testing.assert_allclose(x.t, y.t, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(x.dev, y.dev, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(x.extra, y.extra, rtol=1e-9, atol=1e-9)
    assert (
        run_check_local(CheckJob(loaded, job.source, window="1h", timestamp_column="ts")).windows
        is None
    )
