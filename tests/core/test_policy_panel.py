"""A reduced calibration panel of the default policy (``benchmarks/bench_policy.py``), so that CI
catches a regression in the alert-quality targets of issue 8: no-drift windows of every realistic
shape alert at most 1% (plus three standard errors of the simulation), and the power targets hold
(minus two standard errors); and issue 21's small windows: gross drift alerts from n = 10 to 100,
tiny windows of sparse features stay calm."""

from __future__ import annotations

import math

import pytest

from benchmarks import bench_policy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def panel():
    return bench_policy.simulate(
        sizes=(30, 100, 300, 10_000), rep_scale=0.1, n_references=6, seed=42
    )


def _se(rate: float, windows: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-4) / windows)


def test_no_drift_alerts_at_most_one_percent_on_every_shape(panel):
    checked = 0
    for (name, scenario, n), r in panel.items():
        if scenario != "no drift":
            continue
        checked += 1
        assert r["rate"] <= 0.01 + 3 * _se(0.01, r["windows"]), (name, n, r)
    assert checked == len(bench_policy.SHAPES) * 4


def test_power_targets(panel):
    groups = {s.name: s.group for s in bench_policy.SHAPES}
    for (name, scenario, _n), r in panel.items():
        if scenario == "shift" and not name.startswith("rare flag"):
            target = bench_policy.TARGETS_SHIFT[groups[name]]
            assert r["rate"] >= target - 2 * _se(target, r["windows"]), (name, r)
        if scenario == "scale" and groups[name] == "normal":
            assert r["rate"] >= 0.90 - 2 * _se(0.9, r["windows"]), (name, r)


def test_tiny_drift_at_large_n_does_not_alert():
    shapes = tuple(
        s for s in bench_policy.SHAPES if s.name in ("normal", "student t5", "gamma k=2")
    )
    results = bench_policy.simulate(
        sizes=(100_000,), rep_scale=0.3, n_references=3, seed=7, shapes=shapes
    )
    misses, _ = bench_policy.check_targets(results)
    assert not [m for m in misses if "n=100,000" in m]
    assert {(s, sc) for s, sc, _ in results} >= {
        ("gamma k=2", "relative"),
        ("normal", "irrelevant"),
    }


def test_small_windows_catch_gross_drift_and_stay_calm_when_sparse():
    """Issue 21: gross drift alerts in >= 99% of windows of 30 and 100 values (values all beyond
    the reference's range and a constant that changes: of 10 values too), and tiny windows of
    features missing 10-80% of the time do not alert without drift; the vectorised path agrees
    with compare() on such windows."""
    results = bench_policy.simulate_small(windows=300, n_references=4, seed=3)
    assert not bench_policy.check_small_targets(results)
    gross = [k for k in results if k[1] != "no drift"]
    assert len(gross) == (len(bench_policy.GROSS) + 1) * len(bench_policy.SMALL_SIZES)
    for key, r in results.items():
        if key[1] == "no drift":
            assert r["rate"] <= 0.01 + 3 * _se(0.01, r["windows"]), (key, r)
    agree, total = bench_policy.cross_check_small(n_windows=2)
    assert agree == total
