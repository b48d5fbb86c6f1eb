"""Windowed references: the reference's own windows, their between-window variation, seasons."""

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ReferenceProfile, compare
from divtransforms.profile import PROFILE_SCHEMA_VERSION, WINDOWED_SCHEMA_VERSION
from divtransforms.significance import mean_test
from divtransforms.variation import (
    MIN_WINDOWS,
    WindowedSummaryBuilder,
    dersimonian_laird,
    season_of,
)

HOUR = 3_600_000_000


def feed(rng, days, start_day=0, n=300, cycle=0.0, wander=0.0, shift=0.0):
    """Hourly rows (n per hour) of a value with a daily cycle and a day-level wander (in sd)."""
    hours = np.arange(start_day * 24, (start_day + days) * 24)
    ts = (hours[:, None] * HOUR + rng.integers(0, HOUR, (hours.size, n))).ravel()
    level = cycle * np.sin(2 * np.pi * (hours % 24) / 24) + shift
    if wander:
        level = level + rng.normal(0.0, wander, days)[hours // 24 - start_day]
    x = rng.normal(level[:, None], 1.0, (hours.size, n)).ravel()
    colors = np.array(["red", "green", "blue"])
    return {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "x": x,
        "c": colors[rng.choice(3, ts.size, p=[0.5, 0.3, 0.2])],
    }


def alerts(table):
    sev = table.column("severity").to_pylist()
    return sum(s in ("warning", "critical") for s in sev) / len(sev)


@pytest.fixture(scope="module")
def cycle_reference():
    rng = np.random.default_rng(5)
    data = feed(rng, 28, cycle=0.5)
    return data, ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")


def test_windowed_profile_round_trips_as_version_4(cycle_reference, tmp_path):
    data, prof = cycle_reference
    assert prof.schema_version == WINDOWED_SCHEMA_VERSION
    assert prof.windows.k == 28 * 24
    path = tmp_path / "ref.json"
    prof.save(path)
    back = ReferenceProfile.load(path)
    assert back == prof and back.reference_id == prof.reference_id
    fw, fb = prof.windows.features["x"], back.windows.features["x"]
    assert np.array_equal(fw.counts, fb.counts) and np.array_equal(fw.t, fb.t)
    # the whole reference is the sum of its windows
    assert np.array_equal(fw.counts.sum(axis=0), prof.features["x"].histogram.counts)
    assert fw.t[:, 0].sum() == prof.features["x"].mle.n
    # without windows the profile is the version-3 profile it always was
    plain = ReferenceProfile.build(data, exclude=["ts"])
    assert plain.schema_version == PROFILE_SCHEMA_VERSION == 3
    assert "windows" not in plain.to_dict()
    assert plain.features == prof.features


def test_summary_merges_exactly(cycle_reference):
    data, prof = cycle_reference
    half = len(data["x"]) // 2 + 77  # splits an hour in two
    parts = [{k: v[:half] for k, v in data.items()}, {k: v[half:] for k, v in data.items()}]
    sums = []
    for part in parts:
        b = WindowedSummaryBuilder(prof, timestamp_column="ts", window=3600)
        b.add(part)
        sums.append(b.summary())
    merged = sums[0].merge(sums[1], prof)
    whole = prof.windows
    assert np.array_equal(merged.starts, whole.starts)
    for name in ("x", "c"):
        a, b = merged.features[name], whole.features[name]
        assert np.array_equal(a.counts, b.counts)
        assert np.array_equal(a.missing, b.missing)
    a, b = merged.features["x"], whole.features["x"]
    assert np.array_equal(a.t[:, 0], b.t[:, 0])
    np.testing.assert_allclose(a.t[:, 1] + a.t[:, 2], b.t[:, 1] + b.t[:, 2], rtol=1e-12)
    np.testing.assert_allclose(a.t[:, 3:], b.t[:, 3:], rtol=1e-9, atol=1e-9)


def test_tau_is_about_zero_for_independent_samples_and_found_for_wander():
    rng = np.random.default_rng(11)
    k, n = 600, 300
    for tau in (0.0, 0.1, 0.3):
        means = rng.normal(0.0, tau, k)
        x = rng.normal(means[:, None], 1.0, (k, n))
        m = x.mean(axis=1)
        m2 = ((x - m[:, None]) ** 2).sum(axis=1)
        est, df = dersimonian_laird(np.full(k, float(n)), m, m2, np.zeros(k))
        assert df == k - 1
        assert abs(math.sqrt(est) - tau) < 0.03


def test_without_variation_the_tests_are_todays_bit_for_bit(cycle_reference):
    data, prof = cycle_reference
    rng = np.random.default_rng(6)
    new = feed(rng, 1, 28, cycle=0.5)
    plain = ReferenceProfile.build(data, exclude=["ts"])
    a = compare(plain, new, timestamp_column="ts", window="1h", run_id="r").to_pylist()
    b = compare(
        prof, new, timestamp_column="ts", window="1h", run_id="r", between_windows=False
    ).to_pylist()
    for ra, rb in zip(a, b, strict=True):
        assert ra["tests"] == rb["tests"] and ra["p_value"] == rb["p_value"]
        assert ra["severity"] == rb["severity"]
        assert rb["tau"] is None and rb["variation"] is None
    # mean_test: no between-window variance is today's test
    w, r = (50.0, 0.1, 60.0, 3.0, 400.0), (5000.0, 0.0, 5100.0, -20.0, 16000.0)
    base = mean_test(w, r)
    again = mean_test(w, r, between=None)
    assert all(np.array_equal(x, y) for x, y in zip(base, again, strict=True))
    close = mean_test(w, r, between=(0.0, 10**9, 0.0, 0.0))
    np.testing.assert_allclose(close[1], base[1], rtol=1e-6)


def test_cycle_feed_is_quiet_with_a_windowed_reference_and_sharp_with_a_season(cycle_reference):
    _, prof = cycle_reference
    rng = np.random.default_rng(7)
    new = feed(rng, 2, 28, cycle=0.5)
    plain = compare(prof, new, timestamp_column="ts", window="1h", between_windows=False)
    assert alerts(plain) > 0.3  # today's tests: the cycle is drift
    windowed = compare(prof, new, timestamp_column="ts", window="1h")
    assert alerts(windowed) <= 0.03  # 96 records at a level of about 1%
    x = [r for r in windowed.to_pylist() if r["feature"] == "x"]
    assert 0.25 < x[0]["tau"] < 0.45 and x[0]["dispersion"] > 1.5
    assert x[0]["reference_windows"] == 672 and "672 reference windows" in x[0]["variation"]
    seasonal = compare(prof, new, timestamp_column="ts", window="1h", season="hour_of_day")
    assert alerts(seasonal) <= 0.03
    rows = [r for r in seasonal.to_pylist() if r["feature"] == "x"]
    assert rows[0]["season"] == "hour_of_day=00h" and rows[0]["tau"] < 0.08
    assert rows[13]["season"] == "hour_of_day=13h"
    # a broken season: the peak hour of the cycle inverted
    broken = feed(rng, 2, 28, cycle=0.5)
    ts = np.asarray(broken["ts"].cast(pa.int64()))
    peak = (ts // HOUR) % 24 == 6
    broken["x"] = np.where(peak, broken["x"] - 1.0, broken["x"])
    out = compare(prof, broken, timestamp_column="ts", window="1h", season="hour_of_day")
    sev = {
        (r["window_start"].hour, r["window_start"].day): r["severity"]
        for r in out.to_pylist()
        if r["feature"] == "x"
    }
    assert all(s in ("warning", "critical") for (h, _), s in sev.items() if h == 6)
    assert all(s == "ok" for (h, _), s in sev.items() if h != 6)


def test_a_short_reference_falls_back_to_todays_tests():
    rng = np.random.default_rng(8)
    data = feed(rng, 1, cycle=0.5, n=100)
    data = {k: v[: 100 * 6] for k, v in data.items()}  # 6 hourly windows
    prof = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
    plain = ReferenceProfile.build(data, exclude=["ts"])
    new = feed(rng, 1, 1, n=100)
    a = compare(plain, new, timestamp_column="ts", window="1h", run_id="r").to_pylist()
    b = compare(prof, new, timestamp_column="ts", window="1h", run_id="r").to_pylist()
    for ra, rb in zip(a, b, strict=True):
        assert ra["tests"] == rb["tests"] and ra["severity"] == rb["severity"]
        assert rb["tau"] is None and rb["reference_windows"] == 6
        assert "too short" in rb["variation"] and str(MIN_WINDOWS) in rb["variation"]


def test_seasons_and_pooling():
    monday = datetime(2026, 12, 7, 13, tzinfo=UTC)
    micros = int(monday.timestamp() * 1e6)
    assert season_of("hour_of_day", micros) == 13
    assert season_of("day_of_week", micros) == 0
    assert season_of("hour_of_week", micros) == 13
    with pytest.raises(ValueError, match="unknown season"):
        season_of("minute", micros)
    rng = np.random.default_rng(9)
    data = feed(rng, 1, n=200)  # 24 windows: one per hour of the day, none per hour of week
    data = {k: v[: 200 * 20] for k, v in data.items()}  # hours 0-19 only
    prof = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
    new = feed(rng, 1, 7, n=200)
    out = compare(prof, new, timestamp_column="ts", window="1h", season="hour_of_day")
    rows = [r for r in out.to_pylist() if r["feature"] == "x"]
    assert rows[21]["season"] == "hour_of_day=21h pooled"
    assert "judged against the whole reference" in rows[21]["variation"]
    with pytest.raises(ValueError, match="seasonal reference needs a window"):
        compare(prof, new, season="hour_of_day")
    with pytest.raises(ValueError, match="no windowed summary"):
        compare(ReferenceProfile.build(data, exclude=["ts"]), new, between_windows=True)


def test_chunks_without_time():
    rng = np.random.default_rng(10)
    groups = np.repeat(rng.normal(0, 0.3, 100), 200)  # clusters of 200 rows sharing a shift
    x = rng.normal(groups, 1.0)
    prof = ReferenceProfile.build({"x": x}, chunk=200)
    assert prof.windows.chunk == 200 and prof.windows.k == 100
    new = {"x": rng.normal(rng.normal(0, 0.3), 1.0, 200)}
    rec = compare(prof, new).to_pylist()[0]
    assert 0.2 < rec["tau"] < 0.4 and "200 rows" in rec["variation"]


def test_a_monitor_window_that_is_a_multiple_regroups_the_reference_windows(cycle_reference):
    data, prof = cycle_reference
    two = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="2h")
    regrouped = prof.windows.regrouped(2 * HOUR, prof)
    assert np.array_equal(regrouped.starts, two.windows.starts)
    a, b = regrouped.features["x"], two.windows.features["x"]
    assert np.array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.t[:, 0], b.t[:, 0])
    np.testing.assert_allclose(a.t[:, 1] + a.t[:, 2], b.t[:, 1] + b.t[:, 2], rtol=1e-12)
    np.testing.assert_allclose(a.t[:, 3:], b.t[:, 3:], rtol=1e-9)
    np.testing.assert_allclose(a.dev[:, 3:], b.dev[:, 3:], rtol=1e-9)
    with pytest.raises(ValueError, match="not a multiple"):
        prof.windows.regrouped(HOUR * 3 // 2, prof)
    rng = np.random.default_rng(12)
    out = compare(prof, feed(rng, 1, 28, cycle=0.5), timestamp_column="ts", window="2h")
    rows = [r for r in out.to_pylist() if r["feature"] == "x"]
    assert len(rows) == 12 and rows[0]["reference_windows"] == 28 * 12
    assert "7200 s" in rows[0]["variation"]


def _tests_of(record):
    return {t["name"]: t for t in record["tests"]}


def test_a_wander_of_the_location_is_not_a_change_of_scale():
    """A day-level wander of 0.3 sd moves every window's mean of |t - c| (a shifted window is
    wider about the reference centre): the dispersion test regresses that out, so days far
    from the centre do not look like scale changes, and a real scale change is still caught."""
    rng = np.random.default_rng(31)
    data = feed(rng, 28, wander=0.3)
    prof = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
    from divtransforms.variation import estimate

    fp, fw = prof.features["x"], prof.windows.features["x"]
    v = estimate(fp, fw)
    assert v.scale_slopes is not None and 0.25 < v.scale_slopes[1] < 0.55  # ~ 2 phi(0) / 2
    # far-off days (0.9 sd: 3 tau) with the reference's scale: the dispersion test is calm
    far = feed(rng, 2, start_day=28, shift=0.9)
    rows = compare(prof, far, timestamp_column="ts", window="1h", features=["x"]).to_pylist()
    p_disp = np.array([_tests_of(r)["dispersion"]["p_value"] for r in rows])
    assert np.mean(p_disp < 0.01) <= 2 / 48, np.sort(p_disp)[:5]
    # a 30% wider spread at the reference's level is a change of scale
    wide = feed(rng, 1, start_day=30)
    wide["x"] = wide["x"] * 1.3
    rows = compare(prof, wide, timestamp_column="ts", window="1h", features=["x"]).to_pylist()
    p_wide = np.array([_tests_of(r)["dispersion"]["p_value"] for r in rows])
    assert np.all(p_wide < 1e-3) and np.median(p_wide) < 1e-6, np.sort(p_wide)[-3:]


def test_the_uncertainty_of_the_effective_windows_widens_the_tests():
    """28 days of a day-level wander judged hour by hour: about 27 independent deviations
    (batch means, bias-corrected), and the tests' degrees of freedom are fewer still (the
    estimate of that number is itself uncertain)."""
    rng = np.random.default_rng(32)
    data = feed(rng, 28, wander=0.2)
    prof = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
    from divtransforms.variation import estimate

    v = estimate(prof.features["x"], prof.windows.features["x"])
    assert 10 < v.units < 60 and v.units_dof < v.units
    assert v.units_dof >= v.units * (1 - 2 / 9.0)  # nu >= 1.5 k / b ~ 9.7 for k = 672


def test_the_between_skewness_is_shrunk_by_its_own_noise():
    # windows of 3,000 values under a day-level wander: the window means' deviations are nearly
    # all between part, 28 draws. Their sample skewness (sd ~0.42) is noise for a normal wander
    # and is shrunk to about 0; a skewed wander (exponential day levels) keeps its skewness.
    from divtransforms.variation import standardised_shape

    rng = np.random.default_rng(3)
    days, n = 28, 3000.0
    k = days * 24
    groups = np.zeros(k, dtype=np.int64)
    raw, kept = [], []
    for _ in range(40):
        mean = np.repeat(rng.normal(0.0, 0.1, days), 24) + rng.normal(0.0, n**-0.5, k)
        m2 = rng.chisquare(n - 1.0, k)
        nn = np.full(k, n)
        raw.append(standardised_shape(nn, mean, m2, groups, 0.01)[0])
        kept.append(standardised_shape(nn, mean, m2, groups, 0.01, units=27.0)[0])
    raw, kept = np.array(raw), np.array(kept)
    assert 0.3 < raw.std() < 0.6  # the noise the shrinkage is for
    assert np.mean(kept == 0.0) > 0.6 and np.abs(kept).mean() < 0.5 * np.abs(raw).mean()
    skewed = []
    for _ in range(20):
        mean = np.repeat(rng.exponential(0.1, days), 24) + rng.normal(0.0, n**-0.5, k)
        m2 = rng.chisquare(n - 1.0, k)
        skewed.append(standardised_shape(np.full(k, n), mean, m2, groups, 0.01, units=27.0)[0])
    # an exponential's skewness is 2; 28 draws estimate it low (about 1.6), and it is kept
    assert np.mean(skewed) > 1.0 and np.mean(np.array(skewed) > 0) > 0.9
