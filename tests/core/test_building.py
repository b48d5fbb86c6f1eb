"""ProfileBuilder (passes over batches, bounded memory) against ReferenceProfile.build."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ReferenceProfile
from divtransforms.building import ProfileBuilder
from divtransforms.kinds import infer_kinds
from divtransforms.settings import BuildSettings


def _build(table: pa.Table, batch_rows: int = 997, **kw) -> ReferenceProfile:
    kinds = kw.pop("kinds", None) or infer_kinds(table.schema)
    builder = ProfileBuilder(kinds, BuildSettings(**kw))
    while columns := builder.columns():
        for batch in table.select(columns).to_batches(max_chunksize=batch_rows):
            builder.add(batch)
        builder.end_pass()
    return builder.profile()


def _table(rng: np.random.Generator, n: int = 20_000) -> pa.Table:
    x = rng.normal(5.0, 2.0, n)
    x[rng.random(n) < 0.05] = np.nan
    return pa.table(
        {
            "x": x,
            "amount": rng.lognormal(3.0, 1.0, n),
            "count": rng.poisson(3.0, n).astype(np.int64),
            "flag": rng.random(n) < 0.3,
            "const": np.full(n, 7.0),
            "city": pa.array(
                rng.choice(["a", "b", "c", None, "d"], n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
            ),
            "text": pa.array([f"v{i}" for i in rng.integers(0, 400, n)]),
        }
    )


def _assert_same(built: ReferenceProfile, expected: ReferenceProfile) -> None:
    assert built.features.keys() == expected.features.keys()
    for name, fp in expected.features.items():
        got = built.features[name]
        assert got.histogram == fp.histogram, name  # bins, counts, missing, invalid: exact
        assert (got.kind, got.family, got.reason) == (fp.kind, fp.family, fp.reason), name
        if fp.mle is None:
            assert got.mle is None
            continue
        a, b = got.mle.to_dict(), fp.mle.to_dict()
        for key in a:  # summaries merged batch by batch: equal up to rounding
            va, vb = a[key], b[key]
            if isinstance(va, list) and va and isinstance(va[0], float | int):
                np.testing.assert_allclose(va, vb, rtol=1e-12, atol=1e-300, err_msg=name)
            elif isinstance(va, float):
                assert math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-300), (name, key)
            else:
                assert va == vb, (name, key)


def test_equals_in_memory_build():
    table = _table(np.random.default_rng(11))
    _assert_same(_build(table), ReferenceProfile.build(table))


@pytest.mark.parametrize("batch_rows", [7, 64, 5000])
def test_any_batching_gives_the_same_bins_and_counts(batch_rows):
    table = _table(np.random.default_rng(12), 3000)
    _assert_same(_build(table, batch_rows=batch_rows), ReferenceProfile.build(table))


def test_uniform_edges_families_and_explicit_edges():
    table = _table(np.random.default_rng(13))
    kw = {
        "strategy": "uniform",
        "n_bins": 7,
        "families": {"x": "normal", "amount": None},
        "edges": {"count": [0, 1, 2, 5, 10]},
        "top_n": 2,
    }
    _assert_same(_build(table, **kw), ReferenceProfile.build(table, **kw))


def test_invalid_values_are_counted():
    table = pa.table({"x": pa.array(["1.5", "2", "abc", None, "", "7", "x"] * 300)})
    kinds = {"x": "numeric"}
    built = _build(table, kinds=kinds)
    expected = ReferenceProfile.build(table, kinds=kinds)
    _assert_same(built, expected)
    assert built.features["x"].histogram.n_invalid == 600


def test_no_finite_values_is_a_clear_error():
    table = pa.table({"x": pa.array([math.nan, None, math.inf] * 10, type=pa.float64())})
    with pytest.raises(ValueError, match="feature 'x': no finite values"):
        _build(table)


def test_empty_vocabulary_is_a_clear_error():
    table = pa.table({"c": pa.array([None] * 5, type=pa.string())})
    with pytest.raises(ValueError, match="feature 'c': no non-missing values"):
        _build(table)


def test_wrong_kind_and_family_are_rejected():
    with pytest.raises(ValueError, match="unknown feature kinds"):
        ProfileBuilder({"x": "text"})
    with pytest.raises(ValueError, match="unknown MLE family"):
        ProfileBuilder({"x": "numeric"}, BuildSettings(families={"x": "weibull"}))


def test_profile_before_the_passes_is_an_error():
    builder = ProfileBuilder({"x": "numeric"})
    with pytest.raises(RuntimeError, match="more passes"):
        builder.profile()


def test_threads_give_the_same_profile_bit_for_bit():
    """Per-feature work on several threads (``divtransforms.parallel``) computes every
    feature's numbers exactly as on one: same profile, same batch statistics, to the bit."""
    from divtransforms import parallel
    from divtransforms.window import feature_stats_of_batch

    table = _table(np.random.default_rng(5))
    wide = table.append_column("y", pa.array(np.random.default_rng(6).gamma(2.0, size=20_000)))
    with parallel.using(1):
        one = _build(wide, batch_rows=3000)
        stats1 = feature_stats_of_batch(one.features, wide).to_dict()
    with parallel.using(4):
        assert parallel.threads() == 4
        four = _build(wide, batch_rows=3000)
        stats4 = feature_stats_of_batch(four.features, wide).to_dict()
    assert parallel.threads() == 1
    assert {n: f.to_dict() for n, f in four.features.items()} == {
        n: f.to_dict() for n, f in one.features.items()
    }
    assert stats4 == stats1


def test_parallel_map_keeps_order_and_raises_as_on_one_thread(monkeypatch):
    from divtransforms import parallel

    with parallel.using(3):
        assert parallel.map_ordered(lambda v: v * v, range(50)) == [v * v for v in range(50)]
        assert parallel.map_ordered(str, [7]) == ["7"]

        def bad(v: int) -> int:
            if v == 17:
                raise ValueError("feature 'v17': broken")
            return v

        with pytest.raises(ValueError, match="v17"):
            parallel.map_ordered(bad, range(40))
    monkeypatch.setenv("DIVMON_THREADS", "3")
    assert parallel.available_threads() == 3
    monkeypatch.setenv("DIVMON_THREADS", "many")
    with pytest.raises(ValueError, match="DIVMON_THREADS"):
        parallel.available_threads()
    with pytest.raises(ValueError):
        with parallel.using(0):
            pass
