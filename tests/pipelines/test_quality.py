"""Data quality and schema drift, end to end: the same records from ``compare()`` and from Beam,
for Parquet, CSV and JSON Lines, on a file that breaks every way a pipeline breaks at once."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from divtransforms import ReferenceProfile, compare
from pipelines import io as pio
from tests.helpers import assert_records_equal, check

pytestmark = pytest.mark.beam

DAY = 86_400


def _reference(rng: np.random.Generator, n: int = 30_000) -> pa.Table:
    return pa.table(
        {
            "x": rng.normal(0.0, 1.0, n),
            "amount": rng.lognormal(1.0, 0.5, n),
            "color": rng.choice(["red", "green", "blue"], n),
            # A long-tailed id: far more distinct values than a vocabulary keeps by name.
            "ids": [f"id{v}" for v in rng.integers(0, 40_000, n)],
            "date": [f"2014/01/{1 + i % 28:02d}" for i in range(n)],
        }
    )


def _broken(rng: np.random.Generator, n: int = 3000) -> pa.Table:
    """Half of x missing, amount as words, color gone, a new column, every id new, and event
    times as ``YYYY/MM/DD`` with three that are not dates."""
    x = rng.normal(0.0, 1.0, n)
    x[rng.random(n) < 0.5] = np.nan
    dates = [f"2014/02/{1 + i % 3:02d}" for i in range(n)]
    dates[5], dates[17], dates[40] = "soon", "2014/13/45", "n/a"
    return pa.table(
        {
            "x": x,
            "amount": ["abc"] * n,
            "ids": [f"new{i}" for i in range(n)],
            "date": dates,
            "new_col": rng.normal(size=n),
        }
    )


def _write(table: pa.Table, path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pcsv.write_csv(table, path)
    else:
        rows = table.to_pylist()
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))


def _read_like_the_job(path: str, profile: ReferenceProfile) -> pa.Table:
    """The file as the check job's reader hands it on (same reader, same columns)."""
    numeric = [n for n, fp in profile.features.items() if fp.kind == "numeric"]
    tasks = pio.plan_reads(
        [path], columns=[*profile.features, "date"], numeric=numeric, require_columns=False
    )
    return pa.Table.from_batches([b for t in tasks for b in pio.read_task(t)])


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(9)
    return ReferenceProfile.build(_reference(rng), exclude=["date"])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_broken_feed_alerts_on_every_breakage_and_both_paths_agree(tmp_path, profile, fmt):
    path = tmp_path / f"broken.{fmt}"
    _write(_broken(np.random.default_rng(3)), path, fmt)
    job = {"window": "1d", "timestamp_column": "date", "run_id": "r1"}
    result = check(profile, [str(path)], **job)
    rec = {(r["feature"], str(r["window_start"])[:10]): r for r in result.records.to_pylist()}
    day1 = {f: r for (f, d), r in rec.items() if d == "2014-02-01"}

    # Half the values missing: a quality breach, not "ok".
    assert day1["x"]["missing_rate"] == pytest.approx(0.5, abs=0.05)
    assert day1["x"]["quality_severity"] == "critical" and day1["x"]["severity"] == "critical"
    assert "missing_rate up" in day1["x"]["quality_reason"]
    # Numbers arriving as words: all invalid, a type change, critical, never "insufficient".
    amount = day1["amount"]
    assert amount["n"] == 0 and amount["n_invalid"] == 1000 and amount["severity"] == "critical"
    codes = [i["code"] for i in amount["schema_issues"]]
    assert "type_change" in codes and "all 1000 values" in amount["quality_reason"]
    # A vanished column: recorded, critical, and the other features still checked.
    color = day1["color"]
    assert color["n_absent"] == 1000 and color["severity"] == "critical"
    assert [i["code"] for i in color["schema_issues"]] == ["missing_column"]
    # Every id new, in a vocabulary too large to keep by name: the sketch tells.
    ids = day1["ids"]
    assert profile.features["ids"].bins.membership is not None
    assert ids["unseen_rate"] > 0.99 and ids["quality_severity"] == "critical"
    # A new column is reported, not alerted.
    new = day1["new_col"]
    assert new["kind"] == "unprofiled" and new["severity"] == "ok"
    assert new["schema_issues"][0]["code"] == "new_column"
    # Slashed dates parse; the three that are not dates are counted, not a traceback.
    assert sorted({d for _, d in rec}) == ["2014-02-01", "2014-02-02", "2014-02-03"]
    assert (
        sum(r["n"] + r["n_missing"] + r["n_invalid"] for (f, _), r in rec.items() if f == "x")
        == 2997
    )
    assert result.metrics["no_event_time"] == 3

    # compare() on the same rows gives the same records, field by field.
    expected = compare(
        profile,
        _read_like_the_job(str(path), profile),
        timestamp_column="date",
        window="1d",
        run_id="r1",
    )
    assert json.loads(expected.schema.metadata[b"divtransforms.excluded_rows"])["count"] == 3
    assert_records_equal(result.records, expected)


def test_a_column_missing_from_one_file_of_two(tmp_path, profile):
    rng = np.random.default_rng(5)
    good = _reference(rng, 2000).drop_columns(["date"])
    pq.write_table(good, tmp_path / "a.parquet")
    pq.write_table(good.drop_columns(["color"]), tmp_path / "b.parquet")
    result = check(profile, [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    rec = {r["feature"]: r for r in result.records.to_pylist()}
    assert rec["color"]["n"] == 2000 and rec["color"]["n_absent"] == 2000
    assert rec["color"]["severity"] == "critical"
    assert "2000 of 4000 rows" in rec["color"]["schema_issues"][0]["detail"]
    assert rec["x"]["severity"] == "ok" and rec["x"]["n"] == 4000


def test_the_command_line_of_a_broken_feed(tmp_path, capsys, caplog):
    """As a new user would: build on a clean CSV whose dates have slashes, check a broken one."""
    from flows.cli.divmon import main

    rng = np.random.default_rng(8)
    ref = _reference(rng, 4000).append_column("uid", pa.array([f"u{i}" for i in range(4000)]))
    pcsv.write_csv(ref, tmp_path / "ref.csv")
    profile_path = tmp_path / "ref.json"
    caplog.set_level("INFO")
    assert (
        main(["reference", "build", "-i", str(tmp_path / "ref.csv"), "-o", str(profile_path)]) == 0
    )
    # The date and the identifier are skipped, and the log says why.
    assert "column 'date' skipped: its values are dates or times" in caplog.text
    assert "column 'uid' skipped: every one of its 4000 values is distinct" in caplog.text
    profile = ReferenceProfile.load(profile_path)
    assert set(profile.features) == {"x", "amount", "color", "ids"}
    assert set(profile.ignored_columns) == {"date", "uid"}

    _write(_broken(np.random.default_rng(4)), tmp_path / "cur.csv", "csv")
    args = ["check", "-r", str(profile_path), "-i", str(tmp_path / "cur.csv")]
    window = ["--timestamp-column", "date", "--window", "1d"]
    capsys.readouterr()
    assert main([*args, *window]) == 0  # without --fail-on a breach is reported, not an exit
    out = capsys.readouterr().out
    assert "quality" in out and "missing_column" in out and "new_col (new)" in out
    assert "3 row(s) had no usable event time in 'date'" in out
    assert main([*args, *window, "--fail-on", "critical"]) == 1
    # A typo is an error naming the option, not a silent run without a window.
    with pytest.raises(SystemExit) as exc:
        main([*args, "--windw", "1d"])
    assert exc.value.code == 2
    assert "unknown option --windw (did you mean --window?)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("divmon ")
    # A clean file passes the gate.
    clean = _reference(np.random.default_rng(6), 3000)
    pcsv.write_csv(clean, tmp_path / "clean.csv")
    clean_args = ["check", "-r", str(profile_path), "-i", str(tmp_path / "clean.csv")]
    assert main([*clean_args, *window, "--fail-on", "warning"]) == 0
