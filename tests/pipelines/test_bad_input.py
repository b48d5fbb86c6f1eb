"""Bad input: a clear error naming the file/feature, or a record that says what happened."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from divtransforms import compare
from pipelines.io import InputError
from tests.helpers import T0, assert_records_equal, check, make_current

pytestmark = pytest.mark.beam


def test_missing_feature_column_is_recorded_and_the_rest_checked(tmp_path, profile, rng, caplog):
    cur = make_current(rng, 500).drop_columns(["amount"])
    pq.write_table(cur, tmp_path / "no_amount.parquet")
    result = check(profile, [str(tmp_path / "no_amount.parquet")])
    rec = {r["feature"]: r for r in result.records.to_pylist()}
    assert rec["amount"]["n_absent"] == 500 and rec["amount"]["severity"] == "critical"
    assert rec["x"]["n"] + rec["x"]["n_missing"] == 500
    assert "no_amount.parquet: column(s) 'amount' missing" in caplog.text


def test_wrong_types_are_counted_as_invalid(tmp_path, profile):
    (tmp_path / "bad.csv").write_text(
        "x,amount,color\n1.5,2.0,red\nabc,3.0,blue\n,-1.0,red\n0.2,oops,\n"
    )
    result = check(profile, [str(tmp_path / "bad.csv")], run_id="t")
    rec = {r["feature"]: r for r in result.records.to_pylist()}
    assert (rec["x"]["n"], rec["x"]["n_missing"], rec["x"]["n_invalid"]) == (2, 1, 1)
    assert (rec["amount"]["n"], rec["amount"]["n_invalid"]) == (3, 1)
    assert rec["amount"]["mle_n_invalid"] == 2  # "oops" and -1.0 (not lognormal)
    assert (rec["color"]["n"], rec["color"]["n_missing"]) == (3, 1)


def test_all_nan_window_gives_a_record_with_n_missing(tmp_path, profile, rng):
    cur = make_current(rng, 600, hours=2)
    hour = cur.column("ts").cast(pa.int64()).to_numpy() // 3_600_000_000
    x = cur.column("x").to_numpy(zero_copy_only=False).copy()
    first = hour == hour.min()
    x[first] = np.nan
    cur = cur.set_column(0, "x", pa.array(x))
    pq.write_table(cur, tmp_path / "nan.parquet")
    result = check(
        profile, [str(tmp_path / "nan.parquet")], window="1h", timestamp_column="ts", run_id="n"
    )
    expected = compare(profile, cur, window="1h", timestamp_column="ts", run_id="n")
    assert_records_equal(result.records, expected)
    rec = next(r for r in result.records.to_pylist() if r["feature"] == "x")
    assert rec["n"] == 0 and rec["n_missing"] == int(first.sum()) and rec["missing_rate"] == 1
    assert math.isnan(rec["js_divergence"]) and math.isnan(rec["p_value"])


def test_empty_input_gives_n_zero_records_or_no_windows(tmp_path, profile, rng):
    empty = make_current(rng, 10).slice(0, 0)
    pq.write_table(empty, tmp_path / "empty.parquet")
    result = check(profile, [str(tmp_path / "empty.parquet")], run_id="e")
    assert_records_equal(result.records, compare(profile, empty, run_id="e"))
    assert result.records.num_rows == 3 and set(result.records.column("n").to_pylist()) == {0}
    windowed = check(
        profile, [str(tmp_path / "empty.parquet")], window="1h", timestamp_column="ts", run_id="e"
    )
    assert windowed.records.num_rows == 0  # no event, no window


def test_corrupt_parquet_footer_names_the_file(tmp_path, profile, rng):
    pq.write_table(make_current(rng, 300), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "broken.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"broken\.parquet: not a readable Parquet file"):
        check(profile, [str(tmp_path / "broken.parquet")])


def test_corrupt_parquet_data_names_the_file_and_row_groups(tmp_path, profile, rng):
    cur = make_current(rng, 4000)
    pq.write_table(cur, tmp_path / "pages.parquet", row_group_size=1000, compression="snappy")
    data = bytearray((tmp_path / "pages.parquet").read_bytes())
    meta = pq.ParquetFile(tmp_path / "pages.parquet").metadata
    col = meta.row_group(1).column(0)
    start = col.data_page_offset
    data[start + 8 : start + 200] = b"\xff" * 192  # smash a data page of row group 1
    (tmp_path / "pages.parquet").write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"pages\.parquet: corrupt Parquet data in row groups"):
        check(profile, [str(tmp_path / "pages.parquet")])


def test_no_matching_files_and_missing_timestamps(tmp_path, profile, rng):
    with pytest.raises(InputError, match="no input files match"):
        check(profile, [str(tmp_path / "nothing-*.parquet")])
    cur = make_current(rng, 50)
    ts = cur.column("ts").to_pylist()
    ts[7] = None
    pq.write_table(
        cur.set_column(3, "ts", pa.array(ts, type=cur.schema.field("ts").type)),
        tmp_path / "nots.parquet",
    )
    # A row without an event time is in no window: counted (and logged with file and row).
    result = check(profile, [str(tmp_path / "nots.parquet")], window="1h", timestamp_column="ts")
    assert result.metrics["no_event_time"] == 1
    x = [r for r in result.records.to_pylist() if r["feature"] == "x"]
    assert sum(r["n"] + r["n_missing"] + r["n_invalid"] for r in x) == 49


def test_csv_with_inconsistent_blocks_still_counts_every_value(tmp_path, profile):
    n = 50_000  # several CSV blocks; the bad value comes late
    x = np.arange(n, dtype=float) / n
    table = pa.table(
        {
            "x": pa.array([f"{v}" for v in x[:-1]] + ["not-a-number"]),
            "amount": np.ones(n) * 2.0,
            "color": ["red"] * n,
            "ts": np.full(n, float(T0)),
        }
    )
    pcsv.write_csv(table, tmp_path / "late_bad.csv")
    result = check(profile, [str(tmp_path / "late_bad.csv")], run_id="c")
    rec = {r["feature"]: r for r in result.records.to_pylist()}
    assert rec["x"]["n"] == n - 1 and rec["x"]["n_invalid"] == 1
