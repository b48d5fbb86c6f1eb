"""Column helpers: inputs of every supported kind, kinds, event times and durations."""

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from divtransforms.columns import (
    MissingFeatureError,
    as_columns,
    batch_columns,
    column_kind,
    column_of,
    event_time_micros,
    num_rows,
    parse_duration,
)


def test_as_columns_from_arrow_pandas_and_dicts():
    table = pa.table({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert list(as_columns(table)) == ["a", "b"]
    assert as_columns(table.to_batches()[0])["a"].to_pylist() == [1.0, 2.0]
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}, index=[7, 9])
    assert as_columns(frame)["b"].to_pylist() == ["x", "y"]  # the index is not a column
    mixed = as_columns({"m": [1, "two", 3.0]})["m"]
    assert mixed.dtype == object and list(mixed) == [1, "two", 3.0]
    with pytest.raises(ValueError, match="different lengths"):
        as_columns({"a": [1, 2], "b": [1]})
    with pytest.raises(TypeError, match="got list"):
        as_columns([1, 2])


def test_column_kind():
    assert column_kind(pa.array([1, 2])) == "numeric"
    assert column_kind(pa.array([1.5])) == "numeric"
    assert column_kind(pa.array(["a"])) == "categorical"
    assert column_kind(pa.array(["a"]).dictionary_encode()) == "categorical"
    assert column_kind(pa.array([datetime(2026, 1, 1)])) == "temporal"
    assert column_kind(np.array([1, 2])) == "numeric"
    assert column_kind(np.array(["2026-01-01"], dtype="datetime64[D]")) == "temporal"
    assert column_kind(np.array(["a", "b"])) == "categorical"


def test_column_of_names_the_missing_feature():
    batch = pa.record_batch({"x": [1.0], "color": ["red"]})
    assert column_of(batch, "x").to_pylist() == [1.0]
    assert column_of({"x": np.array([2.0])}, "x")[0] == 2.0
    with pytest.raises(MissingFeatureError, match="'amount'.*columns: x, color"):
        column_of(batch, "amount")
    assert batch_columns({"a": 1, 2: 3}) == ["a", "2"]
    assert num_rows(batch) == 1 and num_rows({"a": np.arange(4)}) == 4 and num_rows({}) == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("15m", 900.0), ("1h", 3600.0), ("1d", 86400.0), (90, 90.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(timedelta(seconds=seconds)) == seconds


@pytest.mark.parametrize("bad", ["1 fortnight", "h", "", 0, -5, float("nan")])
def test_parse_duration_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_event_time_micros_of_every_kind():
    t = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    micros = int(t.timestamp() * 1e6)
    assert event_time_micros(pa.array([t]))[0] == micros
    naive = pa.array([t.replace(tzinfo=None)], type=pa.timestamp("ms"))
    assert event_time_micros(naive)[0] == micros  # naive means UTC
    assert event_time_micros(np.array([t.replace(tzinfo=None)], dtype="datetime64[us]"))[0] == (
        micros
    )
    assert event_time_micros(pa.array(["2026-11-01T12:30:00"]))[0] == micros
    assert event_time_micros(np.array([t.timestamp()]))[0] == micros  # seconds since the epoch
    assert event_time_micros(pa.chunked_array([[t], [t]])).tolist() == [micros, micros]


def test_event_time_micros_errors_name_the_column_and_row():
    with pytest.raises(ValueError, match=r"'ts': 1 row\(s\) without.*first at row 1: missing"):
        event_time_micros(pa.array([datetime(2026, 1, 1), None]), "ts")
    with pytest.raises(ValueError, match=r"'ts': 1 row\(s\) without.*first at row 2: inf"):
        event_time_micros(np.array([1.0, 2.0, np.inf]), "ts")
    # 1e13 among epoch seconds is year ~318,000: counted as bad, never an overflow
    with pytest.raises(ValueError, match=r"first at row 2: 10000000000000.0"):
        event_time_micros(np.array([1.7e9, 1.7e9, 1e13]), "ts")
    last = event_time_micros(np.array([253_402_300_799.0]), fmt="epoch_s")
    assert last[0] == 253_402_300_799_000_000


def test_event_times_as_real_files_hold_them():
    from divtransforms.eventtime import parse_event_times

    t = datetime(2014, 1, 31, tzinfo=UTC)
    us = int(t.timestamp() * 1e6)
    cases = {
        "slashes": pa.array(["2014/01/31", "2014/1/31 00:00", "2014/01/31 00:00:00"]),
        "iso": pa.array(["2014-01-31", "2014-01-31T00:00:00", "2014-01-31 01:00:00+01:00"]),
        "zulu": pa.array(["2014-01-31T00:00:00Z", "2014-01-31T00:00:00.000Z", "2014-01-31 00:00Z"]),
        "seconds": pa.array([t.timestamp()] * 3),
        "millis": pa.array([int(t.timestamp() * 1e3)] * 3),
        "nanos": pa.array([int(t.timestamp() * 1e9)] * 3),
        "text seconds": pa.array([str(int(t.timestamp()))] * 3),
        "date32": pa.array([t.date()] * 3),
        "timestamp ns": pa.array([t.replace(tzinfo=None)] * 3, pa.timestamp("ns")),
    }
    for name, col in cases.items():
        micros, ok, bad = parse_event_times(col, name)
        assert bad is None and ok.all(), name
        assert micros.tolist() == [us] * 3, name
    micros, ok, bad = parse_event_times(pa.array(["31.01.2014 00:00"]), "d", "%d.%m.%Y %H:%M")
    assert micros.tolist() == [us] and bad is None
    micros, ok, bad = parse_event_times(pa.array([1390003200000, 5]), "d", "epoch_ms")
    assert micros.tolist()[0] == 1390003200000 * 1000
    # What cannot be parsed is counted and named; the rest still parses.
    micros, ok, bad = parse_event_times(
        pa.array(["2014/01/31", "soon", None, "9999-12-31", "2014-02-30"]),
        "date",
        window_micros=86_400 * 10**6,
    )
    assert ok.tolist() == [True, False, False, False, False]
    assert (bad.count, bad.row, bad.value) == (4, 1, "'soon'")
    assert "'date'" in bad.message() and "row 1" in bad.message()


def _nan_free(value):
    """NaN as a marker (NaN != NaN would make every comparison of records with NaN fail)."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list):
        return [_nan_free(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_free(v) for k, v in value.items()}
    return value


def _parquet_bytes(table):
    import io

    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _drift_records():
    """Records of a windowed compare() (NaN, nulls, lists of structs, timestamps), edge rows."""
    from divtransforms import ReferenceProfile, compare

    rng = np.random.default_rng(3)
    ref = {"x": rng.lognormal(size=3000), "k": rng.poisson(3.0, 3000).astype(float)}
    ref["c"] = rng.choice(["a", "b", "é", "日本"], 3000)
    cur = {"x": rng.lognormal(0.3, size=2000), "k": rng.poisson(3.5, 2000).astype(float)}
    cur["c"] = rng.choice(["a", "b", "new"], 2000)
    cur["ts"] = np.datetime64("2026-01-01T00:00:00", "us") + rng.integers(0, 3 * 3600, 2000) * 10**6
    table = compare(ReferenceProfile.build(ref), cur, timestamp_column="ts", window="1h")
    rows = table.to_pylist()
    assert len(rows) == 9 and any(r["window_start"] for r in rows)
    edge = dict(rows[0], counts=[], tests=None, mle_params=[], feature="", pane=None)
    edge["window_start"] = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    edge["p_value"], edge["n"] = 7, 2**62  # an int in a float column, a large int
    edge["schema_issues"] = [None, {"code": "x"}]  # a null struct, a missing struct field
    return [*rows, edge, {"feature": "only"}]


def test_table_from_pylists_equals_from_pydict():
    """The buffers-built table is from_pydict's: same schema and metadata, same values (NaN
    included), same Parquet bytes; none of it imports pandas (checked in a fresh process)."""
    from divtransforms.columns import table_from_pylists
    from divtransforms.records import DRIFT_RECORD_SCHEMA, RECORD_FIELDS

    rows = _drift_records()
    columns = {name: [row.get(name) for row in rows] for name in RECORD_FIELDS}
    ours = table_from_pylists(columns, DRIFT_RECORD_SCHEMA)
    theirs = pa.Table.from_pydict(columns, schema=DRIFT_RECORD_SCHEMA)
    assert ours is not None
    ours.validate(full=True)
    assert ours.schema.equals(theirs.schema, check_metadata=True)
    assert _nan_free(ours.to_pylist()) == _nan_free(theirs.to_pylist())
    assert _parquet_bytes(ours) == _parquet_bytes(theirs)


@pytest.mark.parametrize(
    ("t", "value"),
    [
        (pa.int64(), np.int64(1)),  # numpy integers: from_pydict's conversion
        (pa.int64(), True),
        (pa.int64(), 2**63),  # overflow: from_pydict's error
        (pa.float64(), 2**53 + 1),  # not exact as a float
        (pa.float64(), "1.0"),
        (pa.string(), "\ud800"),  # a lone surrogate
        (pa.timestamp("us", tz="UTC"), datetime(2026, 1, 1)),  # naive
        (pa.list_(pa.int64()), (1, 2)),
        (pa.struct([("a", pa.int64())]), {"a": 1, "b": 2}),  # a key the struct lacks
        (pa.bool_(), True),  # a type records do not use
    ],
)
def test_table_from_pylists_leaves_other_values_to_from_pydict(t, value):
    from divtransforms.columns import table_from_pylists

    schema = pa.schema([("v", t)])
    assert table_from_pylists({"v": [None, value]}, schema) is None


def test_records_to_table_does_not_import_pandas():
    import subprocess
    import sys

    code = (
        "import sys, datetime\n"
        "from divtransforms.records import records_to_table\n"
        "t = records_to_table([{'feature': 'x', 'n': 3, 'p_value': float('nan'), 'counts': [1, 2],"
        " 'tests': [{'name': 'g', 'statistic': 1.5}],"
        " 'window_start': datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}, {'feature': 'y'}])\n"
        "assert t.num_rows == 2 and t['tests'][0].as_py()[0]['statistic'] == 1.5\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
