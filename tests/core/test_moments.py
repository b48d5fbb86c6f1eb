"""Mergeable moments: batches and merges agree with scipy and with each other."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divtransforms import moments as moments_module
from divtransforms.moments import Moments, ValueSummary, merge_moments


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=80), st.integers(1, 6))
def test_merged_moments_equal_scipy(values, parts):
    x = np.asarray(values)
    m = Moments()
    for chunk in np.array_split(x, parts):
        m = m.merge(Moments.of(chunk))
    assert m.n == x.size
    scale = max(1.0, float(np.abs(x).max()))
    assert math.isclose(m.mean, x.mean(), rel_tol=1e-9, abs_tol=1e-9 * scale)
    d = x - x.mean()
    for got, want, k in ((m.m2, d**2, 2), (m.m3, d**3, 3), (m.m4, d**4, 4)):
        assert math.isclose(got, float(want.sum()), rel_tol=1e-6, abs_tol=1e-6 * scale**k), k
    if x.size > 3 and x.std() > 1e-3 * scale:
        assert math.isclose(m.skewness, float(stats.skew(x)), rel_tol=1e-6, abs_tol=1e-6)
        assert math.isclose(m.kurtosis, float(stats.kurtosis(x)), rel_tol=1e-6, abs_tol=1e-6)


def _exact_central_sums(x):
    """``sum (x - mean)^k`` for k = 2, 3, 4 in exact rational arithmetic, rounded once."""
    xs = [Fraction(v) for v in x.tolist()]
    mean = sum(xs) / len(xs)
    return [float(sum((v - mean) ** k for v in xs)) for k in (2, 3, 4)]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["normal", "offset", "lognormal", "counts", "t3"]),
    st.integers(1, 700),
    st.sampled_from([7, 64, 1 << 14]),
    st.integers(0, 2**32 - 1),
)
def test_power_sums_are_within_a_few_rounding_errors_of_the_exact_ones(shape, n, block, seed):
    """The bound docs/performance.md states: each central sum is within 4 eps * sum |r|^k of
    the exact value (pairwise sums per block, blocks added in order; tiny blocks here), on
    skewed, heavy-tailed, integer and offset data; the mean is unaffected."""
    r = np.random.default_rng(seed)
    x = {
        "normal": lambda: r.normal(0, 1, n),
        "offset": lambda: 1e6 + r.normal(0, 1e-3, n),
        "lognormal": lambda: r.lognormal(0, 2, n),
        "counts": lambda: r.poisson(3, n).astype(float),
        "t3": lambda: r.standard_t(3, n),
    }[shape]()
    saved = moments_module.POWER_BLOCK
    moments_module.POWER_BLOCK = block
    try:
        m = Moments.of(x)
    finally:
        moments_module.POWER_BLOCK = saved
    exact = _exact_central_sums(x)
    d = np.abs(x - x.mean())
    blocks = -(-n // block)
    for got, want, k in zip((m.m2, m.m3, m.m4), exact, (2, 3, 4), strict=True):
        bound = (4 + blocks) * np.finfo(float).eps * float(np.sum(d**k)) + 1e-300
        assert abs(got - want) <= bound, (k, got, want, bound)


def test_merge_is_exact_around_a_large_offset():
    rng = np.random.default_rng(5)
    x = 1e9 + rng.normal(0, 1e-3, 30_000)
    one = Moments.of(x)
    parts = Moments()
    for chunk in np.array_split(x, 17):
        parts = parts.merge(Moments.of(chunk))
    assert parts.n == one.n
    assert parts.mean == one.mean or math.isclose(parts.mean, one.mean, rel_tol=1e-15)
    for k in ("m2", "m3", "m4"):
        assert math.isclose(getattr(parts, k), getattr(one, k), rel_tol=1e-9, abs_tol=1e-30), k
    assert math.isclose(one.variance, float(np.var(x - 1e9)), rel_tol=1e-9)


def test_array_merge_matches_scalar_merge():
    rng = np.random.default_rng(1)
    a, b = Moments.of(rng.exponential(size=50)), Moments.of(rng.exponential(size=70))
    scalar = a.merge(b)
    cols = merge_moments(
        np.array([a.n, a.n]), np.array([a.mean, a.mean]), np.array([a.m2] * 2),
        np.array([a.m3] * 2), np.array([a.m4] * 2), np.array([b.n] * 2),
        np.array([b.mean] * 2), np.array([b.m2] * 2), np.array([b.m3] * 2), np.array([b.m4] * 2),
    )  # fmt: skip
    for got, want in zip(cols[1:], (scalar.mean, scalar.m2, scalar.m3, scalar.m4), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_empty_and_constant_moments():
    assert math.isnan(Moments().mean) and math.isnan(Moments().skewness)
    c = Moments.of(np.full(10, 3.5))
    assert (c.mean, c.variance, c.skewness, c.kurtosis) == (3.5, 0.0, 0.0, 0.0)
    assert Moments.from_list(c.to_list()) == c


def test_value_summary_merges_predicates_and_log_moments():
    s = ValueSummary.of(np.array([1.0, 2.0, 4.0])).merge(ValueSummary.of(np.array([3.0, np.nan])))
    assert (s.n, s.lo, s.hi, s.all_counts, s.all_binary, s.all_positive) == (
        4, 1.0, 4.0, True, False, True,
    )  # fmt: skip
    assert math.isclose(s.logx.mean, float(np.log([1, 2, 4, 3]).mean()), rel_tol=1e-12)
    z = s.merge(ValueSummary.of(np.array([0.0, -1.5])))
    assert not z.all_positive and not z.all_counts and z.logx.n == 0
