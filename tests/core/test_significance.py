"""The tests that decide drift: G-test with Williams' correction, and the moment-based mean test.

The mean test must hold its level whatever the shape (checked here on a few shapes at a 1% level;
the full panel is ``benchmarks/bench_policy.py`` and ``tests/core/test_policy_panel.py``), keep its
power on normal data, and be monotone in the shift.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divtransforms.bins import CategoricalBins
from divtransforms.moments import Moments
from divtransforms.significance import (
    MAX_SKEW,
    g_statistics,
    g_test,
    js_bias,
    mean_test,
    pool_cells,
    sparse_cells,
    williams_q,
    window_tests,
)


def _cols(m):
    return m.n, m.mean, m.m2, m.m3, m.m4


def _rows(x):
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    return (
        np.full(x.shape[0], float(x.shape[1])), mean, (d**2).sum(1), (d**3).sum(1), (d**4).sum(1),
    )  # fmt: skip


def test_g_test_matches_scipy_and_applies_williams():
    a, b = np.array([30, 50, 20, 7]), np.array([300, 400, 290, 10])
    g = g_test(a, b, pool=False)
    chi2, _, dof, _ = stats.chi2_contingency(np.stack([a, b]), lambda_="log-likelihood")
    assert g.g_statistic == pytest.approx(chi2, rel=1e-12) and g.dof == dof == 3
    assert g.williams_q > 1
    assert g.p_value == pytest.approx(stats.chi2.sf(g.g_statistic / g.williams_q, 3), rel=1e-12)
    # empty bins on both sides do not count, nor change G
    g0 = g_test(np.append(a, 0), np.append(b, 0), pool=False)
    assert (g0.g_statistic, g0.dof) == (g.g_statistic, g.dof)
    rows, dofs = g_statistics(np.stack([a, a * 2]), b)
    assert rows[0] == g.g_statistic and list(dofs) == [3, 3]
    assert williams_q(a.sum(), b.sum(), a + b) == pytest.approx(g.williams_q)


def test_g_test_pools_the_cells_a_window_expects_few_values_in():
    ref = np.array([500, 300, 150, 30, 12, 5, 3, 0])
    win = np.array([50, 30, 15, 3, 1, 1, 0, 2])  # n = 102: cells 3.. expect < 5
    sparse = sparse_cells(ref, win.sum())
    assert sparse.tolist() == [False, False, False, True, True, True, True, True]
    pooled = g_test(win, ref)
    direct = g_test(pool_cells(win, sparse), pool_cells(ref, sparse), pool=False)
    assert pooled == direct and pooled.dof == 3
    assert g_test(win, ref, pool=False).dof == 7


@pytest.mark.parametrize("n", [1000, 3000])
def test_g_test_holds_its_level_with_a_truncated_vocabulary(n):
    """300 Zipf categories, top 50 kept: the reference overstates the values that only just made
    the cut. Without pooling them (and the sparse cells) G rejects 2.5 times too often."""
    rng = np.random.default_rng(n)
    probs = 1 / np.arange(1, 301) ** 1.1
    probs /= probs.sum()
    pooled, raw = [], []
    for _ in range(20):  # the reference's own draw moves the rate a lot: average over many
        ref_values = rng.choice(300, 10_000, p=probs).astype(str)
        spec = CategoricalBins.from_sample(ref_values, top_n=50)
        ref = spec.count(ref_values).counts
        boundary = spec.boundary_cells(ref)
        assert boundary[50] and boundary[:50].sum() >= 5 and not boundary[:10].any()
        for _ in range(150):
            counts = spec.count(rng.choice(300, n, p=probs).astype(str)).counts
            pooled.append(g_test(counts, ref, also_pool=boundary).p_value)
            raw.append(g_test(counts, ref, pool=False).p_value)
    # 3,000 windows over 20 references: about 1.0% +- 0.2% pooled, 2.2-2.5% without pooling
    assert np.mean(np.array(pooled) <= 0.009) < 0.015
    assert np.mean(np.array(raw) <= 0.009) > np.mean(np.array(pooled) <= 0.009) + 0.005


def test_boundary_cells_empty_for_a_complete_vocabulary():
    spec = CategoricalBins.from_sample(list("aabbbc"))
    assert not spec.boundary_cells(spec.count(list("aabbbc")).counts).any()


def test_g_test_edge_cases():
    assert math.isnan(g_test([0, 0], [1, 2]).p_value)
    assert g_test([5, 0], [7, 0]).p_value == 1.0
    with pytest.raises(ValueError, match="same length"):
        g_test([1, 2], [1, 2, 3])


def test_js_bias_scalar_and_vector():
    assert js_bias(100, 1000, 5) == pytest.approx(4 / 8 * (0.01 + 0.001) / math.log(2))
    assert js_bias(0, 10, 3) == math.inf and js_bias(10, 10, 1) == 0.0
    v = js_bias(np.array([100, 0, 10]), 1000, np.array([5, 3, 1]))
    assert v[0] == js_bias(100, 1000, 5) and v[1] == math.inf and v[2] == 0.0


def test_mean_test_is_the_pooled_z_on_symmetric_data():
    rng = np.random.default_rng(2)
    w, r = rng.normal(0.1, 1, 400), rng.normal(0, 1, 5000)
    u, p, effect = mean_test(_cols(Moments.of(w)), _cols(Moments.of(r)))
    pooled = np.concatenate([w, r])
    z = (w.mean() - r.mean()) / (pooled.std(ddof=1) * math.sqrt(1 / 400 + 1 / 5000))
    assert float(u) == pytest.approx(z, abs=0.05)  # the corrections are tiny here
    assert float(p) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=0.1)
    assert float(effect) == pytest.approx(abs(w.mean() - r.mean()) / r.std(), rel=1e-12)


@pytest.mark.parametrize(
    "shape",
    [
        lambda r, s: r.normal(size=s),
        lambda r, s: r.exponential(size=s),
        lambda r, s: r.standard_t(3, size=s),
        lambda r, s: r.lognormal(0, 1, size=s),
        lambda r, s: np.where(r.random(s) < 0.6, 0.0, r.poisson(3.0, s)),
    ],
    ids=["normal", "exponential", "t3", "lognormal", "zero-inflated"],
)
@pytest.mark.parametrize("n", [30, 300])
def test_mean_test_holds_its_level_on_non_normal_shapes(shape, n):
    rng = np.random.default_rng(n)
    rejected = tested = 0
    for _ in range(4):
        ref = Moments.of(shape(rng, 10_000))
        x = shape(rng, 3000 * n).reshape(3000, n)
        _, p, _ = mean_test(_rows(x), _cols(ref))
        rejected += int(np.sum(p <= 0.01))
        tested += int(np.sum(np.isfinite(p)))
    if tested == 0:
        # raw lognormal values (skewness ~6) in windows of 30: the mean is far from normal, so
        # the test abstains (the lognormal family tests log x instead)
        assert n == 30 and shape(np.random.default_rng(0), 10_000).min() > 0
        return
    # 12,000 windows: a 1% level gives 120 +- 11; plain Welch gives 2-5% on the skewed shapes
    assert rejected / tested < 0.0135


def test_mean_test_power_on_normal_data_and_monotone_in_the_shift():
    rng = np.random.default_rng(4)
    power = []
    for _ in range(8):  # the reference's own error (+-0.01 sd) moves the power: average over 8
        ref = Moments.of(rng.normal(size=10_000))
        x = rng.normal(0.25, 1, (1000, 300))
        _, p, effect = mean_test(_rows(x), _cols(ref))
        power.append(np.mean(p <= 0.0086))
        assert np.median(effect) == pytest.approx(0.25, abs=0.03)
    assert np.mean(power) > 0.935  # the z-test's power here is 0.949


@settings(max_examples=50, deadline=None)
@given(st.floats(-MAX_SKEW, MAX_SKEW), st.floats(0.0, 3.0))
def test_mean_test_p_value_falls_as_the_window_mean_moves_away(skew_sign, kurt):
    """Hall's transformation is monotone: a larger shift never gives a larger p-value."""
    rng = np.random.default_rng(0)
    ref = rng.gamma(4.0, size=5000) * np.sign(skew_sign or 1.0)
    ref = ref + rng.standard_t(3 + 10 / (kurt + 0.1), size=5000) * kurt
    r = Moments.of(ref)
    base = rng.choice(ref, 40)
    shifts = np.linspace(0, 20 * ref.std(), 200)
    windows = base[None, :] + shifts[:, None]
    _, p, _ = mean_test(_rows(windows), _cols(r))
    ok = np.isfinite(p)
    assert np.all(np.diff(p[ok][np.argmax(p[ok]) :]) <= 1e-15)
    assert not ok.any() or p[ok][-1] < 1e-8


def test_mean_test_edge_cases():
    one = Moments.of(np.array([1.0]))
    ref = Moments.of(np.arange(100.0))
    assert math.isnan(float(mean_test(_cols(one), _cols(ref))[1]))  # n < 2
    const = Moments.of(np.full(50, 2.0))
    u, p, effect = mean_test(_cols(const), _cols(Moments.of(np.full(500, 2.0))))
    assert (float(u), float(p), float(effect)) == (0.0, 1.0, 0.0)
    # very skewed values in a small window: the mean is not near normal, the test abstains
    rng = np.random.default_rng(3)
    flag = Moments.of((rng.random(10_000) < 0.01).astype(float))
    small = Moments.of((rng.random(30) < 0.01).astype(float))
    assert math.isnan(float(mean_test(_cols(small), _cols(flag))[1]))


def test_window_tests_by_family():
    m = Moments.of(np.arange(10.0))
    pair = (_cols(m), _cols(m))
    hist = (1.0, 0.5, 0.0)
    assert [t.name for t in window_tests("normal", hist, pair, pair)] == [
        "histogram", "mean", "dispersion",
    ]  # fmt: skip
    assert [t.kind for t in window_tests("bernoulli", hist, pair, pair)] == [
        "histogram", "location",
    ]  # fmt: skip
    assert [t.name for t in window_tests("categorical", hist, pair, pair)] == ["histogram"]
    assert [t.name for t in window_tests(None, None, pair, pair)] == []
