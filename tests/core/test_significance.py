"""The tests that decide drift: the pooled homogeneity test, and the moment-based mean test.

The mean test must hold its level whatever the shape (checked here on a few shapes at a 1% level;
the full panel is ``benchmarks/bench_policy.py`` and ``tests/core/test_policy_panel.py``), keep its
power on normal data, and be monotone in the shift.
"""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divtransforms.bins import CategoricalBins, NumericBins
from divtransforms.moments import Moments
from divtransforms.significance import (
    MAX_SKEW,
    g_statistics,
    histogram_p_values,
    homogeneity_test,
    js_bias,
    mean_test,
    ordered_cells,
    pool_cells,
    power_divergence,
    range_test,
    sparse_cells,
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


def test_homogeneity_test_matches_scipy():
    a, b = np.array([30, 50, 20, 7]), np.array([300, 400, 290, 10])
    h = homogeneity_test(a, b, pool=False)
    table = np.stack([a, b])
    g, _, dof, _ = stats.chi2_contingency(table, lambda_="log-likelihood", correction=False)
    cr, p, _, _ = stats.chi2_contingency(table, lambda_="cressie-read", correction=False)
    assert h.g_statistic == pytest.approx(g, rel=1e-12) and h.dof == dof == 3
    assert h.statistic == pytest.approx(cr, rel=1e-12) and h.p_value == pytest.approx(p, rel=1e-9)
    # empty cells on both sides do not count, nor change the statistics
    h0 = homogeneity_test(np.append(a, 0), np.append(b, 0), pool=False)
    assert (h0.g_statistic, h0.statistic, h0.dof) == (h.g_statistic, h.statistic, h.dof)
    rows, dofs = g_statistics(np.stack([a, a * 2]), b)
    assert rows[0] == h.g_statistic and list(dofs) == [3, 3]
    pearson, _ = power_divergence(a, b, lam=1.0)
    assert pearson == pytest.approx(stats.chi2_contingency(table, correction=False)[0], rel=1e-12)


def test_cressie_read_holds_the_level_and_beats_g_on_a_growing_rare_category():
    """[.5, .3, .15, .05] -> [.45, .3, .15, .1] at n = 300 against a 10,000-sample reference."""
    rng = np.random.default_rng(5)
    base, shifted = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.45, 0.3, 0.15, 0.1])
    null_cr = power_cr = power_g = 0
    for _ in range(20):
        ref = rng.multinomial(10_000, base)
        for probs, null in ((base, True), (shifted, False)):
            wins = rng.multinomial(300, probs, size=500)
            cr, dof = power_divergence(wins, ref)
            g, _ = power_divergence(wins, ref, lam=0.0)
            p_cr, p_g = stats.chi2.sf(cr, dof), stats.chi2.sf(g, dof)
            if null:
                null_cr += int(np.sum(p_cr <= 0.009))
            else:
                power_cr += int(np.sum(p_cr <= 0.009))
                power_g += int(np.sum(p_g <= 0.009))
    assert null_cr / 10_000 < 0.0125
    assert power_cr / 10_000 > 0.68 and power_cr > power_g


def test_homogeneity_test_pools_the_cells_a_window_expects_few_values_in():
    ref = np.array([500, 300, 150, 30, 12, 5, 3, 0])
    win = np.array([50, 30, 15, 3, 1, 1, 0, 2])  # n = 102: cells 3.. expect < 5
    sparse = sparse_cells(ref, win.sum())
    assert sparse.tolist() == [False, False, False, True, True, True, True, True]
    pooled = homogeneity_test(win, ref)
    direct = homogeneity_test(pool_cells(win, sparse), pool_cells(ref, sparse), pool=False)
    assert (pooled.statistic, pooled.p_value, pooled.dof) == (
        direct.statistic, direct.p_value, direct.dof,
    )  # fmt: skip
    assert pooled.dof == 3 and homogeneity_test(win, ref, pool=False).dof == 7
    assert pooled.g_statistic == homogeneity_test(win, ref, pool=False).g_statistic


@pytest.mark.parametrize("n", [1000, 3000])
def test_homogeneity_test_holds_its_level_with_a_truncated_vocabulary(n):
    """300 Zipf categories, top 50 kept: the reference overstates the values that only just made
    the cut. Without pooling them (and the sparse cells) G rejects 2.5 times too often."""
    rng = np.random.default_rng(n)
    probs = 1 / np.arange(1, 301) ** 1.1
    probs /= probs.sum()
    labels = pa.array(np.arange(300).astype(str))  # Arrow strings, as a batch brings them
    pooled, raw = [], []
    for _ in range(20):  # the reference's own draw moves the rate a lot: average over many
        ref_values = rng.choice(300, 10_000, p=probs).astype(str)
        spec = CategoricalBins.from_sample(ref_values, top_n=50)
        ref = spec.count(ref_values).counts
        cells = spec.test_cells(ref)
        pooled_cell = cells[50]  # __other__
        assert cells[51] == pooled_cell and (cells[:50] == pooled_cell).sum() >= 5
        assert list(cells[:10]) == list(range(10))
        for _ in range(150):
            counts = spec.count(labels.take(rng.choice(300, n, p=probs))).counts
            pooled.append(homogeneity_test(counts, ref, cells=cells).p_value)
            raw.append(homogeneity_test(counts, ref, pool=False).p_value)
    # 3,000 windows over 20 references: about 1.0% +- 0.2% pooled, 2.2-2.5% without pooling
    assert np.mean(np.array(pooled) <= 0.009) < 0.015
    assert np.mean(np.array(raw) <= 0.009) > np.mean(np.array(pooled) <= 0.009) + 0.005


def test_test_cells_of_a_complete_vocabulary_and_of_numeric_bins():
    spec = CategoricalBins.from_sample(list("aabbbc"))
    assert spec.test_cells(spec.count(list("aabbbc")).counts).tolist() == [0, 1, 2, 3, 4]
    numeric = NumericBins.from_edges([0.0, 1.0, 2.0, 3.0])  # under, 3 bins, over
    assert numeric.test_cells(np.zeros(5)).tolist() == [0, 0, 1, 2, 2]
    constant = NumericBins.from_edges([1.0])  # a constant reference: one cell, nothing to test
    assert not constant.test_cells(np.zeros(constant.n_bins)).any()


def test_homogeneity_test_holds_its_level_on_quantile_bins():
    """The reference's min and max are edges, so its tail bins are empty by construction; as
    cells of their own they made 6 times too many rejections at n = 300 (0.11% for 0.018%)."""
    rng = np.random.default_rng(3)
    tiny = big = total = 0
    for _ in range(10):
        ref_values = rng.standard_normal(10_000)
        spec = NumericBins.from_sample(ref_values, n_bins=32)
        ref = spec.count(ref_values).counts
        cells = spec.test_cells(ref)
        for _ in range(400):
            counts = spec.count(rng.standard_normal(300)).counts
            p = homogeneity_test(counts, ref, cells=cells).p_value
            tiny += p <= 0.002
            big += p <= 0.009
            total += 1
    assert big / total < 0.0125 and tiny / total < 0.0045


def test_homogeneity_test_edge_cases():
    assert math.isnan(homogeneity_test([0, 0], [1, 2]).p_value)
    # One cell: nothing to test, so NaN (untested), never p = 1 ("no evidence").
    one = homogeneity_test([5, 0], [7, 0])
    assert math.isnan(one.p_value) and one.dof == 0
    with pytest.raises(ValueError, match="same length"):
        homogeneity_test([1, 2], [1, 2, 3])


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


def test_nan_to_is_numpys_nan_to_num_to_the_bit():
    from divtransforms.significance import nan_to

    rng = np.random.default_rng(1)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2e308, 1e-310, 1.7e308]
    for shape in [(), (5,), (3, 4)]:
        for _ in range(200):
            a = rng.choice(specials, size=shape)
            for nan in (0.0, 1.0):
                want, got = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=nan), nan_to(a, nan)
                assert type(got) is type(want)
                assert np.array_equal(got, want) and np.array_equal(
                    np.signbit(got), np.signbit(want)
                )


def test_ordered_cells_merge_adjacent_bins_only():
    ref = np.full(32, 100.0)  # quantile bins: equal shares
    for n in (10, 30, 100):
        cells = ordered_cells(ref, n)
        assert np.all(np.diff(cells) >= 0) and np.all(np.diff(cells) <= 1)  # runs of neighbours
        expected = np.bincount(cells, weights=n * ref / ref.sum())
        assert expected.min() >= 5.0 and len(expected) >= 2
        assert expected.max() < 10.0 + n / 32  # about equiprobable: no run longer than needed
    assert ordered_cells(ref, 9).max() == 0  # fewer than two cells of 5
    # sparse bins join the run of their neighbours, never a cell far away
    dense = np.array([500.0, 1.0, 1.0, 500.0, 2.0])
    assert ordered_cells(dense, 1000).tolist() == [0, 1, 1, 1, 1]
    assert ordered_cells(dense, 1e6).tolist() == [0, 1, 2, 3, 4]


def test_histogram_test_decides_at_every_n_from_ten():
    ref = np.r_[0, np.full(32, 300), 0]  # layout [under, 32 quantile bins, over]
    cells = NumericBins(np.linspace(0, 1, 33)).test_cells(ref)
    far = np.r_[np.zeros(33), 10]  # every value beyond the maximum
    h = homogeneity_test(far, ref, cells=cells, ordered=True)
    assert h.dof == 1 and h.p_value < 0.01
    calm = np.r_[0, np.ones(10), np.zeros(22), 0]
    assert homogeneity_test(calm, ref, cells=cells, ordered=True).dof == 1
    # below two cells of 5: the exact binomial test on the two halves
    _, p, dof = histogram_p_values(np.r_[0, np.zeros(32), 4], ref, 4, cells, ordered=True)
    assert int(dof) == 1 and float(p) == pytest.approx(2 * 0.5**4)
    _, p, _ = histogram_p_values(np.r_[0, 2, np.zeros(30), 2, 0], ref, 4, cells, True)
    assert float(p) == 1.0


def test_range_test_is_exact_under_exchangeability():
    rng = np.random.default_rng(5)
    n_ref, n, reps = 200, 20, 4000
    pooled = rng.standard_t(3, (reps, n_ref + n))
    ref, win = pooled[:, :n_ref], pooled[:, n_ref:]
    above = (win > ref.max(axis=1, keepdims=True)).sum(axis=1)
    below = (win < ref.min(axis=1, keepdims=True)).sum(axis=1)
    counts = np.stack([below, n - above - below, above], axis=1)
    ref_counts = np.array([0, n_ref, 0])
    _, p, _effect = range_test(counts, ref_counts)
    for level in (0.05, 0.2):
        assert (p <= level).mean() <= level + 3 * math.sqrt(level / reps)
    # the exact tail: k of n beyond the maximum, C(n, k) / C(N, k), doubled for two tails
    _k, p1, e1 = range_test(np.array([0, 7, 3]), ref_counts)
    assert p1 == pytest.approx(2 * math.comb(10, 3) / math.comb(210, 3)) and e1 == 0.3
    assert math.isnan(range_test(np.array([1, 2, 3]), np.array([5, 5, 5]))[1])  # no empty tail
    assert range_test(np.array([0, 10, 0]), ref_counts)[1] == 1.0


def test_a_window_far_away_cannot_switch_the_mean_test_off():
    rng = np.random.default_rng(9)
    ref = Moments.of(rng.standard_normal(10_000))
    for shift in (3.0, 20.0, 1000.0):
        win = Moments.of(rng.normal(shift, 1.0, 30))
        _, p, effect = mean_test(_cols(win), _cols(ref))
        assert p < 1e-6 and effect > shift / 2
    # a reference too skewed for a window of 30 values: not applied, however calm the window
    skewed = Moments.of(rng.lognormal(0.0, 2.0, 10_000))
    _, p, _ = mean_test(_cols(Moments.of(rng.lognormal(0.0, 2.0, 30))), _cols(skewed))
    assert math.isnan(p)
