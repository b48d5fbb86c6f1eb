"""Divergences against scipy on many random inputs, and their documented edge cases."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as sp_entropy

from divtransforms import (
    cross_entropy,
    entropy,
    hellinger,
    js_distance,
    js_divergence,
    kl_divergence,
    psi,
)

BASES = [2.0, math.e]


@st.composite
def count_pairs(draw, min_bins=1, max_bins=40, positive=False):
    k = draw(st.integers(min_bins, max_bins))
    lo = 1 if positive else 0
    elems = st.integers(lo, 10_000)
    p = draw(arrays(np.int64, k, elements=elems).filter(lambda a: a.sum() > 0))
    q = draw(arrays(np.int64, k, elements=elems).filter(lambda a: a.sum() > 0))
    return p.astype(float), q.astype(float)


@settings(max_examples=200, deadline=None)
@given(count_pairs(), st.sampled_from(BASES))
def test_entropy_matches_scipy(pq, base):
    p, _ = pq
    assert entropy(p, base) == pytest.approx(sp_entropy(p, base=base), rel=1e-12, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(count_pairs(), st.sampled_from(BASES))
def test_kl_matches_scipy_including_infinity(pq, base):
    p, q = pq
    ours = kl_divergence(p, q, base)
    theirs = sp_entropy(p, q, base=base)
    assert not math.isnan(ours)
    if math.isinf(theirs):
        assert ours == math.inf
    else:
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
        assert ours >= 0


@settings(max_examples=200, deadline=None)
@given(count_pairs(), st.sampled_from(BASES), st.sampled_from([0.0, 0.5, 1.0]))
def test_kl_is_cross_entropy_minus_entropy(pq, base, alpha):
    p, q = pq
    kl = kl_divergence(p, q, base, alpha)
    ce = cross_entropy(p, q, base, alpha)
    h = entropy(p + alpha, base)
    if math.isinf(kl):
        assert math.isinf(ce)
    else:
        assert kl == pytest.approx(ce - h, rel=1e-9, abs=1e-10)


@settings(max_examples=200, deadline=None)
@given(count_pairs(), st.sampled_from(BASES))
def test_js_matches_scipy_symmetric_and_bounded(pq, base):
    p, q = pq
    js = js_divergence(p, q, base)
    assert js == pytest.approx(jensenshannon(p, q, base=base) ** 2, rel=1e-8, abs=1e-12)
    assert js == js_divergence(q, p, base)
    assert 0.0 <= js <= math.log(2, base) + 1e-15
    assert js_distance(p, q, base) == pytest.approx(
        jensenshannon(p, q, base=base), rel=1e-8, abs=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(count_pairs())
def test_js_zero_iff_equal(pq):
    p, q = pq
    assert js_divergence(p, 3 * p) == 0.0
    pn, qn = p / p.sum(), q / q.sum()
    if not np.allclose(pn, qn, rtol=0, atol=1e-12):
        assert js_divergence(p, q) > 0


@settings(max_examples=100, deadline=None)
@given(count_pairs(positive=True))
def test_psi_is_symmetric_kl_and_hellinger_bounded(pq):
    p, q = pq
    expected = kl_divergence(p, q, alpha=0.5) + kl_divergence(q, p, alpha=0.5)
    assert psi(p, q) == pytest.approx(expected, rel=1e-12)
    assert psi(p, q) == pytest.approx(psi(q, p), rel=1e-12)
    h = hellinger(p, q)
    assert 0 <= h <= 1
    pn, qn = p / p.sum(), q / q.sum()
    assert h == pytest.approx(np.sqrt(0.5 * np.sum((np.sqrt(pn) - np.sqrt(qn)) ** 2)), abs=1e-7)


def test_known_values():
    assert entropy([1, 1, 1, 1]) == 2.0
    assert entropy([1, 0, 0]) == 0.0
    assert js_divergence([1, 0], [0, 1]) == 1.0
    assert kl_divergence([1, 1], [1, 0]) == math.inf
    assert kl_divergence([1, 0], [1, 1]) == pytest.approx(1.0)
    assert kl_divergence([1, 1], [1, 0], alpha=0.5) < math.inf
    assert cross_entropy([1, 1], [1, 1]) == entropy([1, 1])
    assert psi([1, 0], [0, 1], alpha=0) == math.inf
    assert hellinger([1, 0], [0, 1]) == 1.0


def test_two_dimensional_inputs_are_rowwise():
    rng = np.random.default_rng(1)
    p = rng.integers(1, 100, size=(5, 8))
    q = rng.integers(1, 100, size=(5, 8))
    rows = np.array([js_divergence(a, b) for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(js_divergence(p, q), rows, rtol=1e-13)
    np.testing.assert_allclose(
        kl_divergence(p, q, alpha=0.5),
        [kl_divergence(a, b, alpha=0.5) for a, b in zip(p, q, strict=True)],
        rtol=1e-13,
    )
    np.testing.assert_allclose(entropy(p), [entropy(a) for a in p], rtol=1e-13)


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        ([1, -1], [1, 1], "negative"),
        ([1, float("nan")], [1, 1], "NaN"),
        ([1, 2, 3], [1, 2], "same number of bins"),
        ([0, 0], [1, 1], "sums to zero"),
        ([], [], "no bins"),
        ([[[1]]], [[[1]]], "1-D"),
    ],
)
def test_bad_input_is_a_clear_value_error(p, q, message):
    with pytest.raises(ValueError, match=message):
        kl_divergence(p, q)


def test_bad_base_and_alpha():
    with pytest.raises(ValueError, match="base"):
        entropy([1, 2], base=1)
    with pytest.raises(ValueError, match="alpha"):
        kl_divergence([1, 2], [1, 2], alpha=-1)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 10_000), min_size=k, max_size=k),
            st.lists(st.integers(0, 10_000), min_size=k, max_size=k),
        )
    ),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([2.0, math.e, 10.0]),
)
def test_divergences_of_a_record_are_the_functions_one_by_one_to_the_bit(pq, alpha, base):
    from divtransforms.divergence import divergences

    p, q = (np.asarray(v, dtype=np.float64) for v in pq)
    assume(p.sum() > 0 and q.sum() > 0)
    got = divergences(p, q, base, alpha)
    want = {
        "entropy_current": entropy(p, base),
        "cross_entropy": cross_entropy(p, q, base, alpha),
        "kl_divergence": kl_divergence(p, q, base, alpha),
        "kl_reverse": kl_divergence(q, p, base, alpha),
        "js_divergence": js_divergence(p, q, base),
        "psi": psi(p, q, base, alpha),
        "hellinger": hellinger(p, q),
    }
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert type(got[k]) is type(v) and (
            got[k] == v or (math.isnan(v) and math.isnan(got[k]))
        ), k
    rows = divergences(np.stack([p, p]), np.stack([q, q]), base, alpha)
    for k, v in want.items():
        assert rows[k].tolist() == [v, v] or math.isnan(v), k
