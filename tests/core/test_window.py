"""The Beam-free window path: statistics per window, windows, running estimates, state files."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ReferenceProfile
from divtransforms.window import (
    FeatureStats,
    RunningEstimates,
    WindowCumulation,
    feature_stats_of_batch,
    mle_state_bytes,
    parse_mle_state,
    split_by_window,
    when,
)

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
