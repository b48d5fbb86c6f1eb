"""CombineFns called directly (create/add/merge/extract on several batches), without a pipeline."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divtransforms import Histogram
from divtransforms.beam.combiners import (
    ExactValuesFn,
    FeatureStatsFn,
    NumericSummaryFn,
    VocabularyFn,
)
from divtransforms.inference import choose_family
from divtransforms.mle import infer_family


def _run(fn, batches, split=2):
    """add half the batches to one accumulator, the rest to another, merge, extract."""
    accs = [fn.create_accumulator() for _ in range(split)]
    for i, b in enumerate(batches):
        accs[i % split] = fn.add_input(accs[i % split], b)
    return fn.extract_output(fn.merge_accumulators(accs))


def test_feature_stats_equal_core_on_whole_data(profile, rng):
    from tests.helpers import make_current

    table = make_current(rng, 2500)
    batches = table.to_batches(max_chunksize=400)
    out = _run(FeatureStatsFn(profile), batches, split=3)
    assert out.rows == table.num_rows
    for name, fp in profile.features.items():
        expected = Histogram.of(fp.bins, table.column(name), name)
        assert out.histograms[name] == expected
        assert out.histograms[name].n_total == table.num_rows  # every value accounted for
        # the accumulator over the whole column at once, as an independent reference
        win = fp.empty_mle()
        win = (
            win.add_counts(expected.counts)
            if fp.family == "categorical"
            else win.add(table.column(name), name)
        )
        got = out.mle[name]
        assert got.n == win.n and got.n_invalid == win.n_invalid
        for k, v in win.estimate().params.items():
            assert math.isclose(got.estimate().params[k], v, rel_tol=1e-12, abs_tol=1e-12)


def test_feature_stats_accepts_dicts_of_numpy_arrays(profile, rng):
    from tests.helpers import make_current

    table = make_current(rng, 600)
    as_dicts = [
        {n: b.column(n).to_numpy(zero_copy_only=False) for n in b.schema.names}
        for b in table.to_batches(max_chunksize=250)
    ]
    a = _run(FeatureStatsFn(profile), as_dicts)
    b = _run(FeatureStatsFn(profile), table.to_batches(max_chunksize=250))
    assert a.to_dict() == b.to_dict()


def test_wrong_types_are_counted_invalid_not_dropped(profile):
    batch = pa.record_batch(
        {
            "x": pa.array(["1.5", "abc", None, "2", ""]),
            "amount": pa.array([1.0, -2.0, 3.0, float("nan"), 4.0]),
            "color": pa.array(["red", None, "zzz", "blue", "red"]),
        }
    )
    out = _run(FeatureStatsFn(profile), [batch], split=1)
    hx = out.histograms["x"]
    assert (hx.n, hx.n_missing, hx.n_invalid) == (2, 2, 1)
    assert out.mle["x"].n_invalid == 1
    ha = out.histograms["amount"]
    assert (ha.n, ha.n_missing, ha.n_invalid) == (4, 1, 0)
    assert out.mle["amount"].n_invalid == 1  # -2 is not lognormal
    hc = out.histograms["color"]
    assert (hc.n, hc.n_missing) == (4, 1)


def test_missing_feature_column_is_counted_as_absent(profile):
    batch = pa.record_batch({"x": [1.0], "color": ["red"], "extra": [2]})
    fn = FeatureStatsFn(profile, known=set(profile.features))
    stats = fn.add_input(fn.create_accumulator(), batch)
    assert stats.columns["amount"] == {"absent": 1} and stats.histograms["amount"].n == 0
    assert stats.columns["x"] == {"numeric": 1} and stats.columns["extra"] == {"numeric": 1}


def test_vocabulary_fn_merges_counts():
    batches = [
        pa.record_batch({"c": ["a", "b", "a", None]}),
        pa.record_batch({"c": ["b", "b", "c"]}),
        pa.record_batch({"c": [True, False]}),
    ]
    assert _run(VocabularyFn(["c"]), batches) == {
        "c": {"a": 2, "b": 3, "c": 1, "true": 1, "false": 1}
    }


@pytest.mark.parametrize(
    "sample",
    [
        lambda r: r.integers(0, 2, 500).astype(float),
        lambda r: r.poisson(3.0, 500).astype(float),
        lambda r: r.lognormal(0.0, 1.0, 500),
        lambda r: r.normal(5.0, 1.0, 500),
    ],
)
def test_numeric_summary_family_equals_infer_family(sample, rng):
    x = sample(rng)
    s = _run(NumericSummaryFn(["v"]), [{"v": c} for c in np.array_split(x, 4)])["v"]
    assert choose_family(s).family == infer_family(x)


def test_exact_values_fn_keeps_every_value(rng):
    x = rng.normal(size=1000)
    parts = np.array_split(x, 5)
    out = _run(ExactValuesFn(), parts, split=3)
    assert np.array_equal(np.sort(out), np.sort(x))


edge_lists = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=70
)


@settings(max_examples=300, deadline=None)
@given(
    edge_lists,
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=200),
    st.integers(0, 2**32 - 1),
)
def test_block_binning_equals_numpy_histogram(edges, extra, seed):
    from divtransforms import NumericBins

    spec = NumericBins.from_edges(edges)
    e = spec.edges
    r = np.random.default_rng(seed)
    # adversarial values: the edges themselves, their neighbours, tails, inf, NaN, random
    probes = np.concatenate(
        [
            e,
            np.nextafter(e, np.inf),
            np.nextafter(e, -np.inf),
            r.uniform(e[0] - 1, e[-1] + 1, 300),
            np.asarray(extra, float),
            [np.inf, -np.inf, np.nan],
        ]
    )
    got = spec.count_floats(probes, 3)
    want = _numpy_counts(e, probes)
    assert np.array_equal(got.counts, want)
    assert (got.n_missing, got.n_invalid) == (int(np.isnan(probes).sum()), 3)


def _numpy_counts(e, x):
    """The oracle: two tail counts and ``numpy.histogram`` of the values inside (NaN dropped)."""
    x = x[~np.isnan(x)]
    inside = x[(x >= e[0]) & (x <= e[-1])]
    return np.concatenate(([np.sum(x < e[0])], np.histogram(inside, e)[0], [np.sum(x > e[-1])]))


def test_block_binning_on_quantile_edges_of_skewed_data(rng):
    from divtransforms import NumericBins

    for sample in (
        rng.lognormal(0, 2, 50_000),
        rng.standard_cauchy(50_000),
        np.round(rng.exponential(1.0, 50_000), 1),
    ):
        spec = NumericBins.from_sample(sample, n_bins=64)
        x = np.concatenate([sample, rng.permutation(sample) * 1.01, spec.edges])
        assert np.array_equal(spec.count_floats(x).counts, _numpy_counts(spec.edges, x))
