"""Data-quality tests: exact against scipy, calibrated at every n, and the policy's verdicts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divtransforms import ReferenceProfile, compare
from divtransforms.policy import FeaturePolicy, Policy
from divtransforms.quality import rate_test, schema_issues, type_label


def test_rate_test_is_fishers_exact_test_one_sided():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, n_ref = int(rng.integers(1, 400)), int(rng.integers(1, 4000))
        x, x_ref = int(rng.integers(0, n + 1)), int(rng.integers(0, n_ref + 1))
        _, p, effect = rate_test(x, n, x_ref, n_ref)
        table = [[x, n - x], [x_ref, n_ref - x_ref]]
        expected = stats.fisher_exact(table, alternative="greater").pvalue
        assert float(p) == pytest.approx(expected, rel=1e-9, abs=1e-300)
        assert float(effect) == pytest.approx(x / n - x_ref / n_ref)
    _, p, effect = rate_test(0, 0, 5, 100)
    assert math.isnan(float(p)) and math.isnan(float(effect))


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.0, 0.001, 0.02, 0.2, 0.5])
def test_quality_breaches_stay_rare_without_drift_at_every_n(rate):
    """Missing values at a steady rate (window rates over-dispersed by up to 3 points, as real
    feeds are): the policy's quality rule alerts on at most 1% of windows, at every n."""
    fp = FeaturePolicy()
    level = fp.quality_significance / 2  # missing and invalid rates are tested together
    rng = np.random.default_rng(7)
    n_ref, windows = 20_000, 4_000
    ref_missing = rng.binomial(n_ref, rate)
    for n in (1, 5, 30, 300, 3_000, 30_000, 300_000):
        sd = min(0.1 * rate, 0.03)
        if rate > 0 and sd > 0:
            k = rate * (1 - rate) / sd**2 - 1  # Beta with this mean and sd
            true = rng.beta(rate * k, (1 - rate) * k, windows)
        else:
            true = np.full(windows, rate)
        x = rng.binomial(n, true)
        _, p, effect = rate_test(x, n, ref_missing, n_ref)
        alarms = np.mean((p <= level) & (effect >= fp.quality_warn))
        upper = _wilson_upper(alarms, windows)
        assert alarms <= 0.01 or upper <= 0.012, (rate, n, alarms)


def _wilson_upper(phat: float, n: int, z: float = 1.96) -> float:
    centre = phat + z * z / (2 * n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return (centre + half) / (1 + z * z / n)


def test_quality_catches_a_join_that_starts_producing_nulls():
    rng = np.random.default_rng(3)
    profile = ReferenceProfile.build({"x": rng.normal(size=10_000)})
    for n, share in ((30, 0.6), (300, 0.2), (30_000, 0.12)):
        x = rng.normal(size=n)
        x[: int(n * share)] = np.nan
        rec = compare(profile, {"x": x}).to_pylist()[0]
        expected = "critical" if share >= 0.3 else "warning"
        assert rec["quality_severity"] == expected, (n, share, rec["quality_reason"])
        assert rec["severity"] == expected
    x = rng.normal(size=300)
    x[:15] = np.nan  # 5 points: below the floor, whatever its p-value
    assert compare(profile, {"x": x}).to_pylist()[0]["quality_severity"] == "ok"


def test_all_missing_is_a_breach_never_insufficient():
    profile = ReferenceProfile.build({"x": np.arange(1000.0), "c": ["a", "b"] * 500})
    rec = {
        r["feature"]: r
        for r in compare(profile, {"x": np.full(5, np.nan), "c": [None] * 5}).to_pylist()
    }
    for name in ("x", "c"):
        assert rec[name]["severity"] == "critical", rec[name]["severity_reason"]
        assert "all 5 values missing" in rec[name]["quality_reason"]


def test_schema_issues_and_their_policy_severities():
    assert type_label(pa.array([1, 2])) == "numeric"
    assert type_label(pa.array(["a"])) == "string"
    assert type_label(pa.array([None, None])) == "null"
    assert type_label(np.array(["x"], dtype=object)) == "string"
    assert schema_issues("numeric", "numeric", {"numeric": 10}) == []
    assert schema_issues("numeric", "numeric", {"string": 10}, n_valid=9, n_invalid=1) == []
    codes = [c for c, _ in schema_issues("numeric", "numeric", {"string": 10}, n_invalid=10)]
    assert codes == ["type_change"]
    assert [c for c, _ in schema_issues("categorical", "string", {"numeric": 3})] == ["type_change"]
    assert [c for c, _ in schema_issues("categorical", "numeric", {"numeric": 3})] == []
    codes = [c for c, _ in schema_issues("numeric", None, {"absent": 5, "numeric": 5})]
    assert codes == ["missing_column"]

    profile = ReferenceProfile.build({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    table = compare(profile, {"x": np.arange(100.0), "extra": np.ones(100)})
    rec = {r["feature"]: r for r in table.to_pylist()}
    assert rec["c"]["severity"] == "critical" and rec["c"]["n_absent"] == 100
    assert rec["extra"]["kind"] == "unprofiled" and rec["extra"]["severity"] == "ok"
    # The policy decides what a schema issue is worth.
    quiet = Policy.from_dict({"default": {"missing_column": "warning", "new_column": "warning"}})
    table = compare(profile, {"x": np.arange(100.0), "extra": np.ones(100)}, policy=quiet)
    rec = {r["feature"]: r for r in table.to_pylist()}
    assert rec["c"]["severity"] == "warning" and rec["extra"]["severity"] == "warning"


def test_unseen_values_are_a_calibrated_quality_signal():
    """A Zipf feature: new draws bring values the reference never held, at the Good-Turing rate;
    the unseen-rate test stays quiet on them and alerts when every value is new."""
    rng = np.random.default_rng(11)
    for draw in (lambda n: rng.zipf(1.3, n), lambda n: rng.integers(0, 40_000, n)):
        profile = ReferenceProfile.build({"c": [f"v{v}" for v in draw(30_000)]})
        fp = profile.features["c"]
        assert fp.n_singletons
        quiet = 0
        for _ in range(30):
            rec = compare(profile, {"c": [f"v{v}" for v in draw(2_000)]}).to_pylist()[0]
            quiet += rec["quality_severity"] == "ok"
        assert quiet == 30
        rec = compare(profile, {"c": [f"new{i}" for i in range(2_000)]}).to_pylist()[0]
        assert rec["unseen_rate"] > 0.99 and rec["quality_severity"] == "critical"
    assert fp.bins.membership is not None  # 40,000 values: past what is kept by name


def test_histories_written_before_the_quality_fields_still_load(tmp_path):
    import pyarrow.parquet as pq

    from divtransforms.records import read_records

    profile = ReferenceProfile.build({"x": np.arange(500.0)})
    table = compare(profile, {"x": np.arange(100.0)}, run_id="old")
    new = {
        "invalid_rate",
        "n_absent",
        "n_unseen",
        "unseen_rate",
        "reference_missing_rate",
        "reference_invalid_rate",
        "reference_unseen_rate",
        "column_types",
        "schema_issues",
        "quality_severity",
        "quality_reason",
    }
    old = table.drop_columns(sorted(new)).replace_schema_metadata(
        {b"divtransforms.record_schema_version": b"2"}
    )
    (tmp_path / "h").mkdir()
    pq.write_table(old, tmp_path / "h" / "part-old.parquet")
    back = read_records(tmp_path / "h").to_pylist()[0]
    assert all(back[k] is None for k in new)
    assert back["js_divergence"] == table.column("js_divergence")[0].as_py()
    verdict = Policy().explain(back)  # no quality tests, no schema issues: the old verdict
    assert verdict["severity"] == back["severity"] and verdict["quality_severity"] == "ok"


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(a.view(np.int64) == b.view(np.int64)))


def test_hypergeom_sf_and_norm_isf_are_scipys_to_the_bit():
    """The rate test's p-values without scipy.stats for k < 0, and its z-scores from ndtri,
    equal scipy.stats element for element (NaN, the support's edges and bad arguments too)."""
    from divtransforms.quality import hypergeom_sf, norm_isf

    r = np.random.default_rng(3)
    total = r.integers(0, 60, 4000).astype(float)
    good = np.floor(r.uniform(-2, 1.1, 4000) * total)
    draws = np.floor(r.uniform(-0.1, 1.1, 4000) * total)
    k = np.floor(r.uniform(-0.5, 1.1, 4000) * draws) - r.integers(0, 2, 4000)
    k[:30] = [np.nan, -np.inf, np.inf, *([-1.0] * 27)]
    total[40:50] = 12.5  # not integral
    with np.errstate(all="ignore"):
        want = stats.hypergeom.sf(k, total, good, draws)
    assert _same_bits(hypergeom_sf(k, total, good, draws), want)
    for i in (0, 1, 5, 45, 100):
        assert _same_bits(
            hypergeom_sf(k[i], total[i], good[i], draws[i]),
            stats.hypergeom.sf(k[i], total[i], good[i], draws[i]),
        )
    q = np.concatenate([r.uniform(0, 1, 2000), [0.0, 1.0, 0.5, 1e-300, -0.1, 1.5, np.nan]])
    with np.errstate(all="ignore"):
        assert _same_bits(norm_isf(q), stats.norm.isf(q))
    assert _same_bits(norm_isf(0.5), stats.norm.isf(0.5))


def test_building_and_a_clean_check_do_not_import_scipy_stats():
    """scipy.stats costs about a second to import: a build, and a check whose windows have no
    missing, invalid or unseen value, never need it (the rate tests' p-value is then 1)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from divtransforms import ReferenceProfile, compare\n"
        "r = np.random.default_rng(1)\n"
        "t = pa.table({'x': r.normal(size=500), 'c': r.choice(['a', 'b'], 500)})\n"
        "recs = compare(ReferenceProfile.build(t), t)\n"
        "assert len(recs) == 2\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _role_without_prefilter(values: list) -> bool:
    """The event-time judgement as it was before the prefilter (parse every value)."""
    from divtransforms.eventtime import parse_event_times

    arr = pa.array(values, type=pa.string()).drop_null()
    numeric = pc.match_substring_regex(arr, r"^\s*[+-]?\d+(\.\d*)?\s*$")
    if pc.all(numeric).as_py():
        return False
    _, ok, _ = parse_event_times(arr, "column")
    return bool(ok.mean() >= 0.95)


TEXTS = [
    "2024-03-01T10:00:00Z",
    " 2024-03-01 10:00",
    "2024/3/1",
    "1700000000",
    "+1.7e9",
    ".5",
    "c0_v12",
    "x",
    "",
    "-3",
    "2024-02-30",
    None,
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(TEXTS[:6]),
    st.lists(st.sampled_from(TEXTS), max_size=12),
    st.integers(100, 140),
)
def test_the_event_time_prefilter_never_changes_the_judgement(main, noise, n):
    """Columns near the 95% line: mostly one time-like text and a few others."""
    from divtransforms.quality import column_role

    values = [main] * (n - len(noise)) + noise
    role = column_role(pa.array(values, type=pa.string()), min_rows=100)
    is_time = role is not None and "dates or times" in role
    if len([v for v in values if v is not None]) >= 100:
        assert is_time == _role_without_prefilter(values)
