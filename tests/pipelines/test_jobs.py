"""The batch jobs on files: run_check / run_build_reference / divmon, against the core."""

from __future__ import annotations

import argparse
import gc
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from divtransforms import ReferenceProfile, compare
from divtransforms.records import read_records
from pipelines import cli
from pipelines.check_job import load_mle_state
from pipelines.reference_job import run_build_reference
from pipelines.spec import BuildJob
from tests.helpers import assert_records_equal, check, make_current, make_reference

pytestmark = pytest.mark.beam


@pytest.fixture
def files(tmp_path, rng):
    ref = make_reference(rng, 6000)
    cur = make_current(rng, 9000, hours=4)
    pq.write_table(ref, tmp_path / "ref.parquet", row_group_size=1000)
    pq.write_table(cur, tmp_path / "cur.parquet", row_group_size=1000)  # 9 row groups
    return tmp_path, ref, cur


def test_batch_job_equals_core_on_parquet_with_row_groups(files, profile):
    tmp, _, cur = files
    assert pq.ParquetFile(tmp / "cur.parquet").num_row_groups == 9
    result = check(
        profile,
        [str(tmp / "cur.parquet")],
        str(tmp / "out"),
        window="1h",
        timestamp_column="ts",
        run_id="job",
    )
    expected = compare(profile, cur, window="1h", timestamp_column="ts", run_id="job")
    assert_records_equal(result.records, expected)
    assert result.n_rows_read == cur.num_rows
    assert result.output_paths == [str(tmp / "out" / "records-job.parquet")]
    assert_records_equal(read_records(tmp / "out"), expected)  # _state/ is skipped
    summary = {s["feature"]: s for s in result.per_feature}
    assert summary["x"]["n"] + summary["x"]["n_missing"] == cur.num_rows
    assert summary["x"]["windows"] == 5


def test_reference_job_exact_equals_core_build(files):
    tmp, ref, _ = files
    out = tmp / "ref.json"
    profile = run_build_reference(BuildJob([str(tmp / "ref.parquet")], str(out)))
    expected = ReferenceProfile.build(ref)
    assert ReferenceProfile.load(out) == profile
    for name, fp in expected.features.items():
        got = profile.features[name]
        assert got.bins == fp.bins and got.histogram == fp.histogram and got.family == fp.family


def test_csv_and_jsonl_inputs_give_the_same_records(files, profile):
    tmp, _, cur = files
    plain = cur.set_column(3, "ts", pc_seconds(cur))  # epoch seconds as numbers
    pcsv.write_csv(plain, tmp / "cur.csv")
    with open(tmp / "cur.jsonl", "w") as fh:
        for row in plain.to_pylist():
            row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            fh.write(json.dumps(row) + "\n")
    expected = compare(profile, plain, window="1h", timestamp_column="ts", run_id="f")
    for name in ("cur.csv", "cur.jsonl"):
        result = check(
            profile, [str(tmp / name)], None, window="1h", timestamp_column="ts", run_id="f"
        )
        assert_records_equal(result.records, expected)


def pc_seconds(table: pa.Table) -> pa.Array:
    return pa.array(table.column("ts").cast(pa.int64()).to_numpy() / 1e6)


@pytest.mark.slow
def test_two_worker_processes_give_identical_records(files, profile):
    tmp, _, cur = files
    one = check(
        profile, [str(tmp / "cur.parquet")], None, window="1h", timestamp_column="ts", run_id="mp"
    )
    two = check(
        profile,
        [str(tmp / "cur.parquet")],
        None,
        window="1h",
        timestamp_column="ts",
        run_id="mp",
        pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    assert_records_equal(two.records, one.records, rtol=1e-12)
    assert two.n_rows_read == cur.num_rows


def _divmon(argv):
    parser = argparse.ArgumentParser(prog="divmon")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args, extra = parser.parse_known_args(argv)
    assert args.accepts_pipeline_args
    try:
        return args.handler(args, extra)
    finally:
        gc.unfreeze()  # the CLI freezes the heap before exiting; undo that inside pytest


def test_divmon_reference_build_and_check_with_running_state(files, capsys):
    tmp, _, cur = files
    ref = tmp / "ref.json"
    assert (
        _divmon(
            [
                "reference",
                "build",
                "--input",
                str(tmp / "ref.parquet"),
                "--output",
                str(ref),
                "--bins",
                "16",
                "--runner=FnApiRunner",
            ]
        )
        == 0
    )
    profile = ReferenceProfile.load(ref)
    assert profile.features["x"].bins.n_bins == 16 + 2
    first, second = cur.slice(0, 4000), cur.slice(4000)
    pq.write_table(first, tmp / "a.parquet")
    pq.write_table(second, tmp / "b.parquet")
    state = tmp / "state.json"
    assert (
        _divmon(
            [
                "check",
                "--reference",
                str(ref),
                "--input",
                str(tmp / "a.parquet"),
                "--output",
                str(tmp / "out"),
                "--run-id",
                "r1",
                "--mle-state-out",
                str(state),
            ]
        )
        == 0
    )
    assert (
        _divmon(
            [
                "check",
                "--reference",
                str(ref),
                "--input",
                str(tmp / "b.parquet"),
                "--output",
                str(tmp / "out"),
                "--run-id",
                "r2",
                "--jsonl",
                "--mle-state-in",
                str(state),
                "--mle-state-out",
                str(state),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "feature" in out and "max JS" in out and "x " in out
    assert (tmp / "out" / "records-r2.jsonl").exists()
    # the running estimate after two runs equals the estimate on all the data at once
    whole = compare(profile, cur, run_id="w")
    second_run = pq.read_table(tmp / "out" / "records-r2.parquet").to_pylist()
    for rec, exp in zip(
        sorted(second_run, key=lambda r: r["feature"]),
        sorted(whole.to_pylist(), key=lambda r: r["feature"]),
        strict=True,
    ):
        for got, want in zip(rec["mle_params"] or [], exp["mle_params"] or [], strict=True):
            assert np.isclose(got["running"], want["window"], rtol=1e-10)
    assert set(load_mle_state(str(state))) == {"x", "amount", "color"}


def test_python_m_entry_points(files, capsys):
    from pipelines import check_job, reference_job

    tmp, _, cur = files
    try:
        assert (
            reference_job.main(
                [
                    "--input",
                    str(tmp / "ref.parquet"),
                    "--output",
                    str(tmp / "r.json"),
                    "--features",
                    "x,color",
                    "--bins",
                    "8",
                    "--runner=FnApiRunner",
                ]
            )
            == 0
        )
        assert (
            check_job.main(
                [
                    "--reference",
                    str(tmp / "r.json"),
                    "--input",
                    str(tmp / "cur.parquet"),
                    "--output",
                    str(tmp / "o"),
                    "--window",
                    "2h",
                    "--timestamp_column",
                    "ts",
                    "--run_id",
                    "m",
                    "--mle_state_out",
                    str(tmp / "s.json"),
                ]
            )
            == 0
        )
    finally:
        gc.unfreeze()
    profile = ReferenceProfile.load(tmp / "r.json")
    assert set(profile.features) == {"x", "color"}
    records = read_records(tmp / "o")
    assert_records_equal(
        records, compare(profile, cur, window="2h", timestamp_column="ts", run_id="m")
    )
    assert set(load_mle_state(str(tmp / "s.json"))) == {"x", "color"}
    assert "feature" in capsys.readouterr().out
