"""Column helpers: inputs of every supported kind, kinds, event times and durations."""

from datetime import UTC, datetime, timedelta

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
