"""The Beam-free window path: statistics per window, windows, running estimates, state files."""

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ReferenceProfile
from divtransforms.running import (
    RunningEstimates,
    WindowCumulation,
    mle_state_bytes,
    parse_mle_state,
)
from divtransforms.window import FeatureStats, feature_stats_of_batch, split_by_window, when

RNG = np.random.default_rng(12)


@pytest.fixture(scope="module")
def profile():
    return ReferenceProfile.build(
        {"x": RNG.normal(size=3000), "c": RNG.choice(["a", "b", "c"], 3000)}
    )


def test_split_by_window_aligns_to_the_epoch_and_keeps_every_row():
    hour = 3_600_000_000
    t0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e6)
    ts = np.array([t0 + 2 * hour + 5, t0 + 1, t0 + hour, t0 + 2, t0 + 2 * hour], dtype=np.int64)
    batch = pa.record_batch({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "v": range(5)})
    parts, bad = split_by_window(batch, "ts", hour)
    assert bad is None
    assert [s for s, _ in parts] == [t0, t0 + hour, t0 + 2 * hour]
    assert [p.column(1).to_pylist() for _, p in parts] == [[1, 3], [2], [0, 4]]
    assert when(t0) == datetime(2026, 11, 1, tzinfo=UTC)
    single, _ = split_by_window({"ts": ts[:1] / 1e6, "v": np.zeros(1)}, "ts", hour)
    assert len(single) == 1 and single[0][1]["v"].shape == (1,)


def test_feature_stats_merge_equals_stats_of_the_concatenation(profile):
    a = {"x": RNG.normal(size=400), "c": RNG.choice(["a", "b", "zz"], 400)}
    b = {"x": np.r_[RNG.normal(size=299), np.nan], "c": RNG.choice(["a", "c"], 300)}
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    merged = feature_stats_of_batch(profile.features, a).merge(
        feature_stats_of_batch(profile.features, b)
    )
    whole = feature_stats_of_batch(profile.features, both)
    assert merged.rows == whole.rows == 700
    for name in profile.features:
        assert merged.histograms[name] == whole.histograms[name]
        pm, pw = merged.mle[name].estimate().params, whole.mle[name].estimate().params
        assert pm == pytest.approx(pw, rel=1e-12)
    assert whole.histograms["x"].n_missing == 1
    empty = FeatureStats.empty(profile.features)
    assert empty.merge(whole).histograms["x"] == whole.histograms["x"]


def test_window_cumulation_running_estimates(profile):
    """Running(W) = seed + every window up to W, in event time; panes replace their window."""
    seed = RunningEstimates.seed(profile.features)
    stats = [
        feature_stats_of_batch(profile.features, {"x": RNG.normal(i, 1, 100), "c": ["a"] * 100})
        for i in range(3)
    ]
    cum = WindowCumulation(seed)
    r2 = cum.observe(20, 30, 0, stats[2])  # a later window first (streaming order)
    r0 = cum.observe(0, 10, 0, stats[0])
    assert r0.get("x").n == 100 and r2.get("x").n == 100  # what was known at the time
    assert cum.observe(20, 30, 0, stats[2]).get("x").n == 200
    late = stats[1].merge(stats[1])
    assert cum.observe(10, 20, 0, stats[1]).get("x").n == 200
    assert cum.observe(10, 20, 1, late).get("x").n == 300  # the later pane replaces pane 0
    assert cum.observe(10, 20, 0, stats[1]).get("x").n == 300  # an older pane is ignored
    assert cum.latest().get("x").n == 400
    cum.fold(before=20, ended_before=25)
    assert list(cum.known) == [20] and cum.latest().get("x").n == 400
    assert cum.observe(20, 30, 0, stats[2]).get("x").n == 400
    state = cum.latest().to_state()
    assert set(state) == {"x", "c"} and state["x"]["n"] == 400
    again = RunningEstimates.seed(profile.features, state)
    assert again.get("x").estimate().params == cum.latest().get("x").estimate().params
    with pytest.raises(ValueError, match="family 'lognormal'"):
        RunningEstimates.seed(profile.features, {"x": {**state["x"], "family": "lognormal"}})


def test_mle_state_file_round_trip_and_errors():
    raw = mle_state_bytes({"x": {"family": "normal"}}, watermark=None)
    assert parse_mle_state(raw, "s.json") == {"x": {"family": "normal"}}
    assert parse_mle_state(b'{"x": {}}', "bare.json") == {"x": {}}
    with pytest.raises(ValueError, match="MLE state bad.json: not valid JSON"):
        parse_mle_state(b"{", "bad.json")
    old = raw.replace(b'"schema_version": 2', b'"schema_version": 1')
    assert old != raw and parse_mle_state(old, "v1.json") == {"x": {"family": "normal"}}
    future = raw.replace(b'"schema_version": 2', b'"schema_version": 9')
    with pytest.raises(ValueError, match="schema version 9"):
        parse_mle_state(future, "new.json")
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_mle_state(b"[1]", "list.json")


# -- the plausibility horizon (issue 26) --------------------------------------------------------


def test_horizon_leaves_plausible_rows_alone_and_counts_the_rest():
    from divtransforms.eventtime import parse_event_times
    from divtransforms.window import horizon_of

    now = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    horizon = horizon_of("1d", None, now)
    # epoch milliseconds: 1e13 is 2286; 0 is 1970 (a null written as 0: kept unless max_age)
    values = np.array([1_772_323_200e3, 1_772_409_599e3, 1e13, 0.0, 1_772_409_601e3])
    _, ok, bad = parse_event_times(values, "ts", horizon=horizon)
    assert ok.tolist() == [True, True, False, True, False]
    assert bad.count == 2 and bad.implausible == 2 and bad.unparsed == 0
    assert bad.implausible_at == (2, "10000000000000.0 read as 2286-11-20T17:46:40+00:00")
    assert bad.row == 2  # no unparsable row: the first row reported is the first implausible
    assert "max_future 1d" in bad.message() and "2026-03-02T00:00:00" in bad.message()
    aged = horizon_of("1d", "3650d", now)
    _, ok, bad = parse_event_times(values, "ts", horizon=aged)
    assert ok.tolist() == [True, True, False, False, False] and bad.implausible == 3
    assert "not before 2016-03-03" in bad.message()
    # plausible data: the same times, no report, with or without a horizon
    plain, _, none = parse_event_times(values[:2], "ts")
    same, _, none2 = parse_event_times(values[:2], "ts", horizon=horizon)
    assert none is None and none2 is None and np.array_equal(plain, same)
    assert horizon_of("off", None) is None and horizon_of(None, "off") is None
    with pytest.raises(ValueError, match="max_future"):
        horizon_of("soon")


def test_horizon_merges_with_unparsable_rows():
    from divtransforms.eventtime import parse_event_times
    from divtransforms.window import horizon_of

    horizon = horizon_of("1d", None, datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    text = pa.array(["2026-02-01", "garbage", "9999-01-01", None])
    _, ok, bad = parse_event_times(text, "ts", horizon=horizon)
    assert ok.tolist() == [True, False, False, False]
    assert (bad.count, bad.implausible, bad.unparsed, bad.row) == (3, 1, 2, 1)
    merged = bad.merge(bad)
    assert (merged.count, merged.implausible, merged.row) == (6, 2, 1)
    msg = merged.message()
    assert "4 row(s) without a usable event time" in msg and "2 row(s) with an implausible" in msg


def test_compare_with_a_horizon_excludes_and_reports_implausible_rows():
    from divtransforms.compare import compare

    rng = np.random.default_rng(3)
    start = np.datetime64("2026-01-05T00:00:00", "us")
    ts = start + rng.integers(0, 7_200_000_000, 600).astype("timedelta64[us]")
    data = {"ts": ts, "x": rng.normal(0, 1, 600)}
    reference = ReferenceProfile.build({"x": rng.normal(0, 1, 2_000)})
    kw = {"timestamp_column": "ts", "window": "1h", "run_id": "r"}
    plain = compare(reference, data, **kw)
    bounded = compare(reference, data, **kw, max_future="1d", max_age="3650d")
    drop = ["created_at"]
    assert repr(plain.drop(drop).to_pylist()) == repr(bounded.drop(drop).to_pylist())
    assert b"divtransforms.excluded_rows" not in (bounded.schema.metadata or {})
    poisoned = {"ts": np.concatenate([ts, [np.datetime64("2286-11-20", "us")]]),
                "x": np.concatenate([data["x"], [0.0]])}  # fmt: skip
    got = compare(reference, poisoned, **kw, max_future="1d")
    assert repr(got.drop(drop).to_pylist()) == repr(plain.drop(drop).to_pylist())
    excluded = json.loads(got.schema.metadata[b"divtransforms.excluded_rows"])
    assert excluded["count"] == 1 and excluded["implausible"] == 1
