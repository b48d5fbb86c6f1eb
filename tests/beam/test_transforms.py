"""Beam composites in real pipelines (FnApiRunner): records equal divtransforms.compare()."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that

from divtransforms import ReferenceProfile, compare
from divtransforms.beam.reference import BuildReference
from divtransforms.beam.transforms import DriftMonitor
from divtransforms.window import split_by_window
from tests.helpers import (
    T0,
    assert_records_equal,
    local_pipeline,
    make_current,
    records_match,
)

pytestmark = pytest.mark.beam


def test_global_window_records_equal_compare(profile, rng):
    current = make_current(rng, 3000)
    expected = compare(profile, current, run_id="run-1")
    with local_pipeline() as p:
        records = (
            p
            | beam.Create(current.to_batches(max_chunksize=500))
            | DriftMonitor(profile, run_id="run-1")
        )
        assert_that(records, records_match(expected))


def test_windowed_records_and_running_mle_equal_compare(profile, rng):
    current = make_current(rng, 4000, hours=5)
    state = {n: fp.mle.to_dict() for n, fp in profile.features.items()}  # seed = reference
    expected = compare(
        profile, current, timestamp_column="ts", window="1h", run_id="r", mle_state=state
    )
    assert expected.num_rows == 3 * 6  # T0 is mid-hour: 5 hours of data touch 6 windows
    with local_pipeline() as p:
        records = (
            p
            | beam.Create(current.to_batches(max_chunksize=700))
            | DriftMonitor(
                profile, window="1h", timestamp_column="ts", run_id="r", initial_state=state
            )
        )
        assert_that(records, records_match(expected))


def test_mle_state_output_continues_across_runs(profile, rng):
    first, second = make_current(rng, 1500), make_current(rng, 1500)
    both = pa.concat_tables([first, second])
    expected = compare(profile, both, run_id="r")
    import builtins

    builtins._divtransforms_state = []  # FnApiRunner in-process: a module-level sink works
    with local_pipeline() as p:
        out = (
            p
            | beam.Create(first.to_batches(max_chunksize=600))
            | DriftMonitor(profile, run_id="r", with_mle_state=True)
        )
        out["mle_state"] | beam.Map(lambda s: __import__("builtins")._divtransforms_state.append(s))
    (state,) = builtins._divtransforms_state
    with local_pipeline() as p:
        records = (
            p
            | beam.Create(second.to_batches(max_chunksize=600))
            | DriftMonitor(profile, run_id="r", initial_state=state)
        )
        # the running estimate after both runs equals the estimate on all the data
        running = records | beam.Map(
            lambda r: (r["feature"], [(q["name"], q["running"]) for q in (r["mle_params"] or [])])
        )
        want = [
            (r["feature"], [(q["name"], q["window"]) for q in (r["mle_params"] or [])])
            for r in expected.to_pylist()
        ]

        def check(actual):
            got = dict(actual)
            for feature, params in want:
                for (name, value), (name2, value2) in zip(params, got[feature], strict=True):
                    assert name == name2
                    assert np.isclose(value, value2, rtol=1e-12, atol=1e-12), (feature, name)

        assert_that(running, check)


def test_split_by_window_is_vectorised_and_complete(rng):
    current = make_current(rng, 1000, hours=4)
    batch = current.to_batches()[0]
    parts, _ = split_by_window(batch, "ts", 3600 * 10**6)
    assert [s for s, _ in parts] == [(T0 // 3600 + i) * 3600 * 10**6 for i in range(5)]
    assert sum(p.num_rows for _, p in parts) == batch.num_rows
    for start, part in parts:
        micros = part.column("ts").cast(pa.int64()).to_numpy()
        assert np.all((micros >= start) & (micros < start + 3600 * 10**6))


def test_build_reference_exact_equals_core_build(reference_table):
    expected = ReferenceProfile.build(reference_table)
    kinds = {n: fp.kind for n, fp in expected.features.items()}
    import builtins

    builtins._divtransforms_profiles = []
    with local_pipeline() as p:
        (
            p
            | beam.Create(reference_table.to_batches(max_chunksize=900))
            | BuildReference(kinds, exact=True)
            | beam.Map(lambda prof: __import__("builtins")._divtransforms_profiles.append(prof))
        )
    (got,) = builtins._divtransforms_profiles
    for name, fp in expected.features.items():
        g = got.features[name]
        assert g.kind == fp.kind and g.family == fp.family
        assert g.bins == fp.bins and g.histogram == fp.histogram
        e_est, g_est = fp.mle.estimate(), g.mle.estimate()
        for k, v in e_est.params.items():
            assert np.isclose(g_est.params[k], v, rtol=1e-12), (name, k)
        # one family rule and one fit for both builds; the dispersion centre and moments agree
        assert g.reason == fp.reason and g.reason
        if fp.fit is not None:
            assert g.fit["quality"] == fp.fit["quality"]
            assert np.isclose(g.fit["g_statistic"], fp.fit["g_statistic"], rtol=1e-9)
        if hasattr(fp.mle, "center"):
            assert np.isclose(g.mle.center, fp.mle.center, rtol=1e-12)
            assert g.mle.dev.n == fp.mle.dev.n
            assert np.isclose(g.mle.dev.mean, fp.mle.dev.mean, rtol=1e-9)


def test_build_reference_approximate_edges_are_close_to_exact(rng):
    x = rng.normal(size=20_000)
    table = pa.table({"x": x})
    import builtins

    builtins._divtransforms_profiles = []
    with local_pipeline() as p:
        (
            p
            | beam.Create(table.to_batches(max_chunksize=3000))
            | BuildReference({"x": "numeric"}, n_bins=16)
            | beam.Map(lambda prof: __import__("builtins")._divtransforms_profiles.append(prof))
        )
    (got,) = builtins._divtransforms_profiles
    edges = got.features["x"].bins.edges
    assert edges[0] == x.min() and edges[-1] == x.max()
    # rank error of every inner edge well under one bin (1/16 of the data)
    ranks = np.searchsorted(np.sort(x), edges[1:-1]) / x.size
    assert np.max(np.abs(ranks - np.linspace(0, 1, 17)[1:-1])) < 0.01
    assert got.features["x"].histogram.n == x.size
    assert got.features["x"].family == "normal"


def test_records_from_beam_equal_records_from_core_table_conversion(profile, rng):
    # a dict-of-numpy input gives the same records as Arrow batches
    current = make_current(rng, 800).drop_columns(["ts"])
    expected = compare(profile, current, run_id="d")
    dicts = [
        {n: b.column(n).to_numpy(zero_copy_only=False) for n in ("x", "amount", "color")}
        for b in current.to_batches(max_chunksize=300)
    ]
    with local_pipeline() as p:
        records = p | beam.Create(dicts) | DriftMonitor(profile, run_id="d")
        assert_that(records, records_match(expected))
    assert_records_equal(expected, expected)


def test_transforms_show_their_reference_and_window_in_the_graph(profile):
    from apache_beam.transforms.display import DisplayData

    monitor = DriftMonitor(profile, window="1h", timestamp_column="ts", allowed_lateness="10m")
    items = {i.key: i.value for i in DisplayData.create_from(monitor).items}
    assert items["reference_id"] == profile.reference_id
    assert items["features"] == ", ".join(profile.features)
    assert (items["window_seconds"], items["allowed_lateness_seconds"]) == (3600.0, 600.0)
    build = BuildReference({"x": "numeric"}, n_bins=16, source="ref.parquet")
    items = {i.key: i.value for i in DisplayData.create_from(build).items}
    assert (items["n_bins"], items["source"], items["features"]) == (16, "ref.parquet", "x")


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_build_reference_bins_a_constant_feature_like_the_core(strategy):
    """Beam's range and approximate-quantile paths make the same one-bin spec as the core."""
    import builtins

    table = pa.table({"c": np.full(5000, 2.5), "x": np.linspace(0, 1, 5000)})
    expected = ReferenceProfile.build(table, strategy=strategy, n_bins=8)
    builtins._divtransforms_profiles = []
    with local_pipeline() as p:
        (
            p
            | beam.Create(table.to_batches(max_chunksize=1000))
            | BuildReference({"c": "numeric", "x": "numeric"}, n_bins=8, strategy=strategy)
            | beam.Map(lambda prof: __import__("builtins")._divtransforms_profiles.append(prof))
        )
    (got,) = builtins._divtransforms_profiles
    assert got.features["c"].bins == expected.features["c"].bins
    assert got.features["c"].histogram == expected.features["c"].histogram
    if strategy == "uniform":
        assert got.features["x"].bins == expected.features["x"].bins
