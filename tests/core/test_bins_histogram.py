"""Bin specs and histograms: conservation of counts, numpy.histogram's conventions, merging."""

import math
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from divtransforms import CategoricalBins, Histogram, NumericBins, bin_spec_from_dict
from divtransforms.bins import OTHER_LABEL, UNSEEN_LABEL
from divtransforms.grid import Grid
from divtransforms.sketch import BloomFilter, hash_strings

EDGES = np.array([-1.0, 0.0, 0.5, 2.0])
SPEC = NumericBins(EDGES)

floats_with_specials = st.one_of(
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 0.5, 2.0]),
)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.integers(0, 200), elements=floats_with_specials))
def test_counts_are_conserved_and_follow_numpy(x):
    c = SPEC.count(x)
    assert c.counts.dtype == np.int64
    assert c.counts.sum() + c.n_missing + c.n_invalid == x.size
    assert c.n_missing == int(np.isnan(x).sum())
    finite = x[~np.isnan(x)]
    assert c.counts[0] == int((finite < EDGES[0]).sum())
    assert c.counts[-1] == int((finite > EDGES[-1]).sum())
    inside = finite[(finite >= EDGES[0]) & (finite <= EDGES[-1])]
    np.testing.assert_array_equal(c.counts[1:-1], np.histogram(inside, EDGES)[0])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_block_binning_across_blocks_equals_numpy_histogram(monkeypatch_block, block, edges, seed):
    """Counts summed over sorted blocks (tiny blocks here, so that NaN, ties, tails and the
    closed last edge fall on every side of a block boundary) equal numpy.histogram's."""
    spec = NumericBins.from_edges(edges)
    e = spec.edges
    r = np.random.default_rng(seed)
    specials = [np.nan, np.inf, -np.inf, np.nan, -0.0, 0.0]
    x = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), r.normal(0, 2, 97)])
    x = np.concatenate([x, specials])
    r.shuffle(x)
    with monkeypatch_block(block):
        got = spec.count_floats(x, 1)
    finite = x[~np.isnan(x)]
    inside = finite[(finite >= e[0]) & (finite <= e[-1])]
    want = [np.sum(finite < e[0]), *np.histogram(inside, e)[0], np.sum(finite > e[-1])]
    assert got.counts.tolist() == [int(v) for v in want]
    assert (got.n_missing, got.n_invalid) == (2, 1)


@pytest.fixture(scope="module")
def monkeypatch_block():
    from contextlib import contextmanager

    @contextmanager
    def setting(block):
        saved = NumericBins.BLOCK
        NumericBins.BLOCK = block
        try:
            yield
        finally:
            NumericBins.BLOCK = saved

    return setting


def _numpy_counts(x, e):
    """The reference: ``numpy.histogram`` on the edges plus the tails, NaN apart."""
    finite = x[~np.isnan(x)]
    inside = finite[(finite >= e[0]) & (finite <= e[-1])]
    return [int(np.sum(finite < e[0])), *np.histogram(inside, e)[0].tolist(),
            int(np.sum(finite > e[-1]))]  # fmt: skip


@contextmanager
def grid_settings(cells, block):
    """Every batch on the grid path, with few cells (many edges per cell: the binary search
    takes several steps) and small blocks (NaN, ties and tails across block boundaries)."""
    saved = NumericBins.GRID_MIN, Grid.CELLS, Grid.BLOCK
    NumericBins.GRID_MIN, Grid.CELLS, Grid.BLOCK = 0, cells, block
    try:
        yield
    finally:
        NumericBins.GRID_MIN, Grid.CELLS, Grid.BLOCK = saved


edge_values = st.one_of(
    st.floats(-3, 3, allow_nan=False),
    st.floats(-1e308, 1e308),  # +-1e308 (no grid spans them), subnormals, -0.0
    st.integers(-5, 5).map(float),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(edge_values, min_size=1, max_size=40),
    st.sampled_from([1, 2, 3, 7, 64, 4096]),
    st.sampled_from([1, 5, 64, 1 << 14]),
    st.integers(0, 2**32 - 1),
)
def test_grid_binning_equals_numpy_histogram_and_the_sorted_blocks(edges, cells, block, seed):
    """The grid path gives numpy.histogram's counts (and the sort path's) on any edges: ties,
    edges spanning +-1e308 (no grid: the sort path), subnormal widths, integers, heavy tails,
    values at, just beside and between the edges, inf, NaN, -0.0."""
    spec = NumericBins.from_edges(edges)
    e = spec.edges
    r = np.random.default_rng(seed)
    lo, hi = float(e[0]), float(e[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        parts = [
            e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), r.choice(e, 50),
            r.uniform(lo, hi, 200) if np.isfinite(hi - lo) else r.normal(size=200),
            r.standard_cauchy(50) * (abs(lo) + abs(hi) + 1.0) / 10,
            r.integers(-6, 6, 50).astype(float),
            [np.nan, np.inf, -np.inf, np.nan, -0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324],
        ]  # fmt: skip
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    x = x[r.permutation(x.size)]
    with grid_settings(cells, block):
        got = spec.count_floats(x, 3)
    assert got.counts.tolist() == _numpy_counts(x, e)
    assert (got.n_missing, got.n_invalid) == (int(np.isnan(x).sum()), 3)
    assert got.counts.tolist() == spec._sort_counts(x).counts.tolist()


def test_grid_binning_on_skewed_and_discrete_data():
    """Quantile edges of heavy-tailed, skewed, discrete and tightly clustered samples (edges
    bunched into a few cells): the default grid equals numpy.histogram on fresh data."""
    r = np.random.default_rng(11)
    samples = {
        "lognormal": lambda n: r.lognormal(0, 2.5, n),
        "cauchy": lambda n: r.standard_cauchy(n),
        "poisson": lambda n: r.poisson(2, n).astype(float),
        "far outliers": lambda n: np.r_[r.normal(size=n - 10), r.normal(1e12, 1, 10)],
        "1e9 + tiny noise": lambda n: 1e9 + r.normal(0, 1e-6, n),
    }
    for name, draw in samples.items():
        for n_bins in (1, 32, 300):
            spec = NumericBins.from_sample(draw(20_000), n_bins=n_bins)
            assert Grid.of(spec.edges) is not None
            x = np.concatenate([draw(30_000), spec.edges, [np.nan, np.inf, -np.inf]])
            got = spec.count_floats(x)
            assert got.counts.tolist() == _numpy_counts(x, spec.edges), (name, n_bins)
            assert got.n_missing == 1


def test_edges_infinities_and_labels():
    x = np.array([-1.0, 0.0, 0.5, 2.0, -np.inf, np.inf, np.nan, 2.0000001, -1.0000001])
    c = SPEC.count(x)
    # [-1, 0) gets -1; [0, 0.5) gets 0; [0.5, 2] (closed) gets 0.5 and 2.0
    assert c.counts.tolist() == [2, 1, 1, 2, 2]
    assert c.n_missing == 1
    assert SPEC.labels == ["< -1", "[-1, 0)", "[0, 0.5)", "[0.5, 2]", "> 2"]


def test_arrow_and_numpy_inputs_agree_and_nulls_are_missing():
    values = [1.0, None, 0.2, 7.0, -3.0]
    a = SPEC.count(pa.array(values))
    b = SPEC.count(np.array([1.0, np.nan, 0.2, 7.0, -3.0]))
    c = SPEC.count(pa.chunked_array([pa.array(values[:2]), pa.array(values[2:])]))
    for other in (b, c):
        assert a.counts.tolist() == other.counts.tolist()
        assert a.n_missing == other.n_missing == 1
    ints = SPEC.count(pa.array([0, 1, None], type=pa.int32()))
    assert ints.counts.tolist() == [0, 0, 1, 1, 0] and ints.n_missing == 1


def test_text_in_a_numeric_column_is_counted_invalid():
    c = SPEC.count(np.array(["1.5", "abc", "", None, 0.1, "nan"], dtype=object))
    assert c.n_invalid == 1
    assert c.n_missing == 3
    assert c.counts.sum() == 2
    with pytest.raises(ValueError, match="feature 'f'"):
        SPEC.count(pa.array([[1.0]]), feature="f")


def test_quantile_and_uniform_edges():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10_000)
    q = NumericBins.from_sample(x, "quantile", 10)
    assert q.n_bins == 12
    counts = q.count(x).counts
    assert counts[0] == counts[-1] == 0
    assert np.all(np.abs(counts[1:-1] - 1000) <= 1)
    u = NumericBins.from_sample(x, "uniform", 4)
    np.testing.assert_allclose(u.edges, np.linspace(x.min(), x.max(), 5))
    with pytest.raises(ValueError, match="strategy"):
        NumericBins.from_sample(x, "bogus")


def test_ties_collapse_and_constant_sample():
    x = np.array([0.0] * 90 + [1.0] * 10)
    spec = NumericBins.from_sample(x, "quantile", 10)
    assert spec.edges.tolist() == [0.0, 1.0]
    const = NumericBins.from_sample(np.full(50, 3.0))
    assert const.count(np.array([3.0, 2.0, 4.0])).counts.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="no finite values"):
        NumericBins.from_sample(np.array([np.nan, np.inf]), feature="z")


def test_bad_edges_are_rejected():
    for edges in ([1.0], [0.0, 0.0 + 0j], [2.0, 1.0], [0.0, np.inf]):
        with pytest.raises((ValueError, TypeError)):
            NumericBins(np.asarray(edges, dtype=float))


def test_categorical_vocabulary_other_and_unseen():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5
    spec = CategoricalBins.from_sample(ref, top_n=2)
    assert spec.vocabulary == ("a", "b")
    assert spec.other_values == ("c", "d")
    assert spec.labels == ["a", "b", OTHER_LABEL, UNSEEN_LABEL]
    c = spec.count(np.array(["a", "c", "zzz", None, "b", "d", float("nan")], dtype=object))
    assert c.counts.tolist() == [1, 1, 2, 1]
    assert c.n_missing == 2
    arrow = spec.count(pa.array(["a", "c", "zzz", None, "b", "d"]).dictionary_encode())
    assert arrow.counts.tolist() == [1, 1, 2, 1]


def test_categorical_non_string_values_compare_as_strings():
    spec = CategoricalBins.from_sample(np.array([1, 2, 2, 3]))
    assert set(spec.vocabulary) == {"1", "2", "3"}
    assert spec.count(pa.array([2, 2, 5])).counts.tolist() == [2, 0, 0, 0, 1]
    b = CategoricalBins.from_sample([True, False, True])
    assert b.vocabulary == ("true", "false")
    assert b.count(np.array([True, True])).counts.tolist()[:2] == [2, 0]


def test_untracked_rest_is_told_from_unseen_values_by_the_membership_sketch():
    spec = CategoricalBins.from_value_counts(
        {f"v{i}": 100 - i for i in range(30)}, top_n=5, max_other=10
    )
    assert not spec.track_unseen and spec.membership is not None
    c = spec.count(["v0", "v20", "never", "new"])
    assert c.counts[0] == 1 and c.counts[-2] == 1 and c.counts[-1] == 2
    assert bin_spec_from_dict(spec.to_dict()) == spec  # the sketch travels with the profile
    # A profile written before sketches existed pools new values with the untracked rest.
    old = CategoricalBins(spec.vocabulary, (), track_unseen=False)
    c = old.count(["v0", "v20", "never"])
    assert c.counts[-2] == 2 and c.counts[-1] == 0


def test_membership_sketch_false_positive_rate_is_as_stated():
    ids = pa.array([f"id-{i}" for i in range(50_000)])
    sketch = BloomFilter.of(ids, fpr=0.01)
    assert sketch.contains(ids).all()  # never a false negative
    fresh = sketch.contains(pa.array([f"new-{i}" for i in range(50_000)])).mean()
    assert 0.005 < fresh < 0.015
    # Stable across processes: the same hashes whatever the chunking.
    assert (
        hash_strings(ids.slice(7, 3)).tolist()
        == hash_strings(pa.array(["id-7", "id-8", "id-9"])).tolist()
    )


@pytest.mark.parametrize("spec", [SPEC, CategoricalBins(("x", "y"), ("z",))])
def test_spec_round_trip(spec):
    assert bin_spec_from_dict(spec.to_dict()) == spec


values_st = arrays(np.float64, st.integers(0, 60), elements=floats_with_specials)


@settings(max_examples=200, deadline=None)
@given(values_st, values_st, values_st)
def test_merge_is_associative_commutative_and_equals_concatenation(a, b, c):
    ha, hb, hc = (Histogram.of(SPEC, v) for v in (a, b, c))
    assert ha.merge(hb) == hb.merge(ha)
    assert ha.merge(hb).merge(hc) == ha.merge(hb.merge(hc))
    whole = Histogram.of(SPEC, np.concatenate([a, b, c]))
    assert ha.merge(hb).merge(hc) == whole
    assert whole.n_total == a.size + b.size + c.size


def test_histogram_probabilities_and_errors():
    h = Histogram.of(SPEC, [0.1, 0.2, 1.0])
    np.testing.assert_allclose(h.probabilities(), [0, 0, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(h.probabilities(0.5).sum(), 1.0)
    assert h.probabilities(0.5)[0] == pytest.approx(0.5 / 5.5)
    with pytest.raises(ValueError, match="sums to zero"):
        Histogram.empty(SPEC).probabilities()
    with pytest.raises(ValueError, match="different bin specs"):
        h.merge(Histogram.empty(NumericBins(np.array([0.0, 1.0]))))
    with pytest.raises(ValueError, match="counts"):
        Histogram(SPEC, np.array([1, 2]))
    assert Histogram.from_dict(h.to_dict()) == h
    assert math.isclose(h.n, 3)


def test_categorical_strings_do_not_depend_on_the_container():
    spec = CategoricalBins.from_sample(np.array([1.0, 2.0, 2.0]))
    assert set(spec.vocabulary) == {"1", "2"}
    typed = spec.count(np.array([1.0, 2.0, np.nan])).counts.tolist()
    for values in (
        np.array([1.0, 2.0, None], dtype=object),
        np.array([1.0, 2.0, float("nan")], dtype=object),
        np.array(["1", 2.0, None], dtype=object),  # mixed types: each value formatted alone
        pa.array([1.0, 2.0, None]),
    ):
        assert spec.count(values).counts.tolist() == typed


def _coded(words: list[str | None], codes: list[int | None], offset: int) -> pa.Array:
    """A dictionary array as Parquet reading gives (possibly sliced), the dictionary with
    duplicate and null words allowed."""
    arr = pa.DictionaryArray.from_arrays(
        pa.array(codes, type=pa.int32()), pa.array(words, type=pa.string())
    )
    return arr.slice(offset)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from("abcdefgh")), min_size=1, max_size=9),
    st.data(),
)
def test_dictionary_columns_count_as_their_decoded_values(words, data):
    codes = data.draw(st.lists(st.one_of(st.none(), st.integers(0, len(words) - 1)), max_size=60))
    offset = data.draw(st.integers(0, len(codes)))
    arr = _coded(words, codes, offset)
    plain = arr.dictionary_decode()
    from divtransforms.values import value_counts

    ref = {"a": 9, "b": 8, "c": 7, "d": 6, "e": 5}
    specs = [
        CategoricalBins.from_value_counts(ref, top_n=2),  # the rest tracked: other / unseen
        CategoricalBins.from_value_counts(ref, top_n=2, max_other=1),  # the membership sketch
        CategoricalBins(("a", "b"), (), track_unseen=False),  # an old profile: all pooled
    ]
    for spec in specs:
        got, want = spec.count(arr), spec.count(plain)
        assert got.counts.tolist() == want.counts.tolist()
        assert (got.n_missing, got.n_invalid) == (want.n_missing, want.n_invalid)
        assert spec.count(pa.chunked_array([arr])).counts.tolist() == want.counts.tolist()
    assert value_counts(arr) == value_counts(plain)
