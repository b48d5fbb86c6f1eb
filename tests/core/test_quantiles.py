"""Exact quantiles in bounded memory (divtransforms.quantiles) against numpy.quantile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from divtransforms import quantiles
from divtransforms.quantiles import CellCounts, ExactQuantiles, inverted_cdf_ranks


def _search(
    x: np.ndarray, n_bins: int, batch: int, first_count: bool = False
) -> tuple[ExactQuantiles, np.ndarray, int]:
    """``first_count``: the first count runs before n and the ranks are known (``CellCounts``,
    on the first batch's range), as the reference build does with its summary pass."""
    finite = x[np.isfinite(x)]
    q = np.linspace(0.0, 1.0, n_bins + 1)
    ranks = inverted_cdf_ranks(finite.size, q)
    counted, passes = None, 0
    if first_count:
        counted = CellCounts()
        for start in range(0, x.size, batch):
            counted.add(x[start : start + batch])
        passes = 1
    search = ExactQuantiles(finite.size, finite.min(), finite.max(), ranks, None, counted)
    while not search.done:
        for start in range(0, x.size, batch):
            search.add(x[start : start + batch])
        search.end_pass()
        passes += 1
    found = search.values()
    return search, np.array([found[int(r)] for r in ranks]), passes


def _assert_exact(
    x: np.ndarray, n_bins: int = 32, batch: int = 1000, first_count: bool = False
) -> int:
    search, got, passes = _search(x, n_bins, batch, first_count)
    finite = x[np.isfinite(x)]
    expected = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf")
    np.testing.assert_array_equal(got, expected)
    for v in np.unique(expected):
        assert search.below(float(v)) == np.count_nonzero(finite < v)
    return passes


@pytest.mark.parametrize("n", [1, 2, 3, 10, 33, 1000, 12345])
def test_ranks_are_numpys(n):
    q = np.linspace(0.0, 1.0, 33)
    expected = np.quantile(np.arange(n, dtype=np.float64), q, method="inverted_cdf")
    np.testing.assert_array_equal(inverted_cdf_ranks(n, q), expected.astype(np.intp))


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.normal(size=200_000),
        lambda r: r.lognormal(3.0, 2.0, 200_000),  # heavy right tail: one refinement
        lambda r: 1e6 + r.normal(0.0, 1e-3, 200_000),  # narrow spread far from 0
        lambda r: r.poisson(3.0, 200_000).astype(np.float64),  # atoms
        lambda r: np.append(r.normal(size=199_999), 1e300),  # one far outlier
        lambda r: np.append(r.normal(size=199_998), [-1e308, 1e308]),  # width overflows
        lambda r: r.normal(size=200_000) * 1e-310,  # subnormal
        lambda r: np.sort(r.normal(size=200_000)),
        lambda r: np.where(r.random(200_000) < 0.1, np.nan, r.normal(size=200_000)),
        lambda r: np.repeat([1.0, np.nextafter(1.0, 2.0)], [120_000, 80_000]),
    ],
)
@pytest.mark.parametrize("first_count", [False, True])
def test_exact_on_awkward_data(make, first_count):
    _assert_exact(make(np.random.default_rng(3)), batch=1 << 14, first_count=first_count)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: np.sort(r.normal(size=100_000)),  # the first batch spans a sliver of the range
        lambda r: np.sort(r.normal(size=100_000))[::-1].copy(),
        lambda r: np.concatenate([np.full(5000, 3.0), r.normal(size=95_000)]),  # constant start
        lambda r: np.concatenate([np.full(5000, np.nan), r.lognormal(0, 3, 95_000)]),
        lambda r: np.concatenate([[0.0, 5e-324], r.normal(size=99_998) * 1e300]),
    ],
)
def test_first_count_on_a_poor_first_batch_is_still_exact(make):
    """The first batch sets the first grid; values beyond it pile up in the end cells, which
    later passes count again on finer grids: more passes, the same exact values."""
    _assert_exact(make(np.random.default_rng(6)), batch=5000, first_count=True)


def test_first_count_saves_a_pass_on_typical_data():
    x = np.random.default_rng(4).normal(size=300_000)
    assert _search(x, 32, 1 << 16, first_count=True)[2] == 2  # the count and the gather


def test_typical_data_needs_two_passes_and_little_memory():
    x = np.random.default_rng(4).normal(size=300_000)
    search, _, passes = _search(x, 32, 1 << 16)
    assert passes == 2
    gathered = sum(v.size for *_, v in search._resolved if v is not None)
    assert gathered < x.size // 20  # only the values of the cells that hold a wanted rank


def test_constant_and_single_value_need_no_pass():
    assert _assert_exact(np.full(1000, 2.5)) == 0
    assert _assert_exact(np.array([7.0])) == 0


def test_changed_data_between_passes_is_an_error():
    x = np.random.default_rng(5).normal(size=100_000)
    search = ExactQuantiles(x.size, x.min(), x.max(), inverted_cdf_ranks(x.size, [0.5]))
    search.add(x)
    search.end_pass()
    search.add(x[:10])
    with pytest.raises(RuntimeError, match="changed between passes"):
        search.end_pass()


@settings(max_examples=150, deadline=None)
@given(
    x=arrays(
        np.float64,
        st.integers(1, 400),
        elements=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.sampled_from([0.0, 1.0, -1.0, 1e-300, 5e-324]),
        ),
    ),
    n_bins=st.integers(1, 40),
    batch=st.integers(1, 100),
    first_count=st.booleans(),
)
def test_property_equals_numpy(monkeypatch_small, x, n_bins, batch, first_count):
    if not np.isfinite(x).any():
        return
    _assert_exact(x, n_bins, batch, first_count)


@pytest.fixture(scope="module")
def monkeypatch_small():
    """Tiny cells and gathers, so that small examples go through every refinement path."""
    mp = pytest.MonkeyPatch()
    mp.setattr(quantiles, "CELLS", 8)
    mp.setattr(quantiles, "GATHER_MAX", 4)
    yield
    mp.undo()


@pytest.mark.parametrize("first_count", [False, True])
@pytest.mark.parametrize("late", ["none", "last batch", "first batch"])
def test_a_full_cell_of_one_repeated_value_is_counted_only_when_a_second_value_shows_up(
    monkeypatch, first_count, late
):
    """Atoms (integer or 0/1 data) fill cells too full to gather; such a cell's counts start
    with its second distinct value, the earlier values (all one atom) added at once. The
    order statistics and the counts below them stay exact wherever the second value comes."""
    monkeypatch.setattr(quantiles, "GATHER_MAX", 50)
    rng = np.random.default_rng(3)
    x = rng.poisson(3.0, 20_000).astype(np.float64)
    near = np.nextafter(3.0, 4.0)  # in the atom's cell at any grid
    if late == "last batch":
        x[-5:] = near
    elif late == "first batch":
        x[:5] = near
    passes = _assert_exact(x, batch=997, first_count=first_count)
    assert passes <= 6


def test_first_count_widens_its_integers_before_they_could_overflow():
    """``CellCounts`` holds int16 counts below 2**15 values, int32 below 2**31, int64 beyond
    (a wide table keeps a thousand of them): widened before a cell could overflow, equal to the
    plain count throughout."""
    rng = np.random.default_rng(4)
    counted = CellCounts()
    want = np.zeros(quantiles.CELLS, dtype=np.int64)
    seen = []
    for size in (30_000, 2_767, 1, 5_000):  # 32,767 fits int16; the next value does not
        x = np.full(size, 1.0) if not seen else rng.normal(1.0, 1e-9, size)
        counted.add(x)
        seen.append(x)
        want = np.bincount(
            quantiles._cells(np.concatenate(seen), *counted.grid), minlength=quantiles.CELLS
        )
        assert counted.counts.tolist() == want.tolist()
        assert counted.counts.dtype == (np.int16 if counted.n <= 32_767 else np.int32)
    counted.n = (1 << 31) - 2  # as if two billion values had been counted
    counted.add(np.ones(3))
    assert counted.counts.dtype == np.int64
