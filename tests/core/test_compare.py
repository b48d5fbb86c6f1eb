"""compare(): drift records equal the core functions, windows, running MLE, bad input."""

import json
import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as sp_entropy

from divtransforms import DRIFT_RECORD_SCHEMA, ReferenceProfile, accumulator_for, compare
from divtransforms.records import read_records, write_records_jsonl, write_records_parquet
from divtransforms.significance import homogeneity_test

RNG = np.random.default_rng(2026)


@pytest.fixture(scope="module")
def reference():
    n = 10_000
    return ReferenceProfile.build(
        {
            "x": RNG.normal(0, 1, n),
            "color": RNG.choice(["red", "green", "blue", "black"], n, p=[0.5, 0.3, 0.15, 0.05]),
        },
        n_bins=20,
    )


def test_records_equal_core_functions(reference):
    cur = {"x": RNG.normal(0.5, 1, 1000), "color": RNG.choice(["red", "green", "pink"], 1000)}
    table = compare(reference, cur, run_id="r1")
    assert table.schema.equals(DRIFT_RECORD_SCHEMA, check_metadata=False)
    recs = {r["feature"]: r for r in table.to_pylist()}
    x = recs["x"]
    fp = reference.features["x"]
    counts = fp.bins.count(cur["x"]).counts
    ref = fp.histogram.counts
    assert x["counts"] == counts.tolist()
    assert x["n"] == 1000 and x["n_reference"] == 10_000 and x["run_id"] == "r1"
    assert x["js_divergence"] == pytest.approx(jensenshannon(counts, ref, base=2) ** 2, rel=1e-9)
    assert x["js_distance"] == pytest.approx(math.sqrt(x["js_divergence"]))
    a = 0.5
    assert x["kl_divergence"] == pytest.approx(sp_entropy(counts + a, ref + a, base=2), rel=1e-9)
    assert x["kl_reverse"] == pytest.approx(sp_entropy(ref + a, counts + a, base=2), rel=1e-9)
    assert x["entropy_current"] == pytest.approx(sp_entropy(counts, base=2), rel=1e-12)
    assert x["cross_entropy"] - sp_entropy(counts + a, base=2) == pytest.approx(
        x["kl_divergence"], rel=1e-9
    )
    g = homogeneity_test(counts, ref)
    assert (x["g_statistic"], x["dof"], x["p_value"]) == (g.g_statistic, g.dof, g.p_value)
    assert x["p_value"] < 1e-6
    mu = next(p for p in x["mle_params"] if p["name"] == "mu")
    assert mu["window"] == pytest.approx(np.mean(cur["x"]), rel=1e-12)
    assert mu["z"] > 5
    assert x["mle_family"] == "normal"
    c = recs["color"]
    assert c["counts"][-1] == int(np.sum(cur["color"] == "pink"))  # unseen bin
    assert c["bin_labels"][-2:] == ["__other__", "__unseen__"]


def test_g_statistic_is_the_weighted_js():
    a, b = np.array([30, 50, 20, 0]), np.array([300, 400, 290, 10])
    g = homogeneity_test(a, b, pool=False)
    n = a.sum() + b.sum()
    pa_, pb_ = a.sum() / n, b.sum() / n
    m = (a + b) / n
    mi = pa_ * sp_entropy(a / a.sum(), m, base=2) + pb_ * sp_entropy(b / b.sum(), m, base=2)
    assert g.js_weighted == pytest.approx(mi, rel=1e-12)
    assert g.g_statistic == pytest.approx(2 * n * math.log(2) * mi, rel=1e-12)
    assert g.dof == 3


def _stream(n_windows=4, per_window=500, shift_from=2):
    t0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e6)
    xs, ts = [], []
    for w in range(n_windows):
        mu = 1.0 if w >= shift_from else 0.0
        xs.append(RNG.normal(mu, 1, per_window))
        ts.append(t0 + w * 3_600_000_000 + RNG.integers(0, 3_600_000_000, per_window))
    order = RNG.permutation(n_windows * per_window)
    return {
        "x": np.concatenate(xs)[order],
        "ts": pa.array(np.concatenate(ts)[order], type=pa.timestamp("us", tz="UTC")),
    }


def test_windows_running_mle_and_conservation(reference):
    data = _stream()
    table = compare(reference, data, features=["x"], timestamp_column="ts", window="1h")
    recs = table.to_pylist()
    assert len(recs) == 4
    assert [r["n"] for r in recs] == [500] * 4
    assert sum(r["n"] + r["n_missing"] + r["n_invalid"] for r in recs) == 2000
    starts = [r["window_start"] for r in recs]
    assert starts == sorted(starts)
    assert starts[0] == datetime(2026, 11, 1, tzinfo=UTC)
    assert all((r["window_end"] - r["window_start"]).total_seconds() == 3600 for r in recs)
    # the drift shows in windows 2 and 3 only
    assert recs[0]["severity"] == recs[1]["severity"] == "ok"
    assert recs[3]["p_value"] < 1e-10 and recs[3]["severity"] == "critical"
    # the running MLE after the last window equals one fit of all the data
    last_mu = next(p for p in recs[-1]["mle_params"] if p["name"] == "mu")
    one = accumulator_for("normal").add(data["x"]).estimate()
    assert last_mu["running"] == pytest.approx(one.params["mu"], rel=1e-12)
    assert last_mu["running_se"] == pytest.approx(one.se["mu"], rel=1e-12)


def test_running_state_carries_over_between_calls(reference):
    data = _stream()
    x = data["x"]
    first = accumulator_for("normal").add(x[:700])
    table = compare(reference, {"x": x[700:]}, features=["x"], mle_state={"x": first.to_dict()})
    mu = next(p for p in table.to_pylist()[0]["mle_params"] if p["name"] == "mu")
    assert mu["running"] == pytest.approx(np.mean(x), rel=1e-12)


def test_empty_and_all_missing_windows(reference):
    table = compare(reference, {"x": np.full(20, np.nan), "color": [None] * 20})
    for r in table.to_pylist():
        assert r["n"] == 0 and r["n_missing"] == 20 and r["missing_rate"] == 1.0
        assert math.isnan(r["js_divergence"]) and math.isnan(r["p_value"])
    empty = compare(reference, {"x": np.array([]), "color": np.array([], dtype=object)})
    assert [r["n"] for r in empty.to_pylist()] == [0, 0]


def test_bad_input_is_named(reference):
    with pytest.raises(ValueError, match="timestamp_column"):
        compare(reference, {"x": [1.0], "color": ["red"]}, window="1h")
    # A row without an event time is left out and counted, the rest is checked.
    table = compare(
        reference,
        {"x": [1.0, 2.0], "ts": pa.array([1, None])},
        features=["x"],
        timestamp_column="ts",
        window="1h",
    )
    assert table.column("n").to_pylist() == [1]
    excluded = json.loads(table.schema.metadata[b"divtransforms.excluded_rows"])
    assert excluded["count"] == 1 and "'ts'" in excluded["reason"] and "row 1" in excluded["reason"]
    with pytest.raises(ValueError, match="duration"):
        compare(
            reference, {"x": [1.0], "ts": [1]}, features=["x"], timestamp_column="ts", window="soon"
        )


def test_invalid_values_are_counted(reference):
    table = compare(
        reference, {"x": np.array([0.1, "oops", None, 2.0], dtype=object)}, features=["x"]
    )
    r = table.to_pylist()[0]
    assert (r["n"], r["n_missing"], r["n_invalid"]) == (2, 1, 1)


def test_reference_from_data_and_pandas(reference):
    ref = {"x": RNG.normal(size=2000)}
    cur = {"x": RNG.normal(size=500)}
    t1 = compare(ref, cur)
    assert t1.num_rows == 1 and t1.column("n").to_pylist() == [500]
    import pandas as pd

    t2 = compare(ReferenceProfile.build(ref), pd.DataFrame(cur))
    assert t2.column("js_divergence").to_pylist() == t1.column("js_divergence").to_pylist()


def test_records_persist_as_parquet_and_jsonl(reference, tmp_path):
    table = compare(
        reference,
        _stream(),
        features=[
            "x",
        ],
        timestamp_column="ts",
        window="1h",
    )
    write_records_parquet(table, tmp_path / "date=2026-11-01" / "part-a.parquet")
    (tmp_path / "_state").mkdir()
    (tmp_path / "_state" / "junk.parquet").write_bytes(b"not parquet")
    back = read_records(tmp_path)
    assert back.num_rows == table.num_rows
    assert back.column("js_divergence").to_pylist() == table.column("js_divergence").to_pylist()
    write_records_jsonl(table, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == table.num_rows and '"feature": "x"' in lines[0]


def test_severity_comes_from_the_default_policy_unless_told_otherwise(reference):
    drifted = {"x": RNG.normal(1.0, 1, 2000), "color": RNG.choice(["red", "green"], 2000)}
    calm = {"x": RNG.normal(0, 1, 2000), "color": RNG.choice(["red"], 2000)}
    sev = {r["feature"]: r["severity"] for r in compare(reference, drifted).to_pylist()}
    assert sev["x"] == "critical"
    assert sev["color"] in ("warning", "critical")
    assert compare(reference, calm, features=["x"]).column("severity").to_pylist()[0] == "ok"
    assert compare(reference, drifted, policy=None).column("severity").to_pylist() == [None, None]
    tiny = {"x": RNG.normal(0.5, 1, 5), "color": ["red"] * 5}
    assert set(compare(reference, tiny).column("severity").to_pylist()) == {"insufficient"}
    with pytest.raises(ValueError, match="policy"):
        compare(reference, calm, policy="strict")


def test_a_windows_records_equal_each_features_record_alone_to_the_bit():
    """``window_records`` computes the divergences of all features with the same number of bins
    as rows of one array and the quality tests at once: every field equals the record that
    ``drift_record`` makes for the feature alone (floats bit for bit, NaN where NaN)."""
    from divtransforms.compare import RecordStamp, drift_record, window_records
    from divtransforms.running import RunningEstimates
    from divtransforms.window import feature_stats_of_batch

    rng = np.random.default_rng(8)
    n = 3000
    ref = pa.table(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.normal(5, 2, n),
            "k": rng.poisson(2.0, n).astype(float),
            "c": rng.choice(["x", "y", "z"], n),
            "gone": rng.normal(size=n),
        }
    )
    profile = ReferenceProfile.build(ref)
    cur = pa.table(
        {
            "a": rng.normal(0.3, 1, 500),
            "b": rng.normal(5, 2, 500),
            "k": rng.poisson(2.5, 500).astype(float),
            "c": rng.choice(["x", "y", "w"], 500),
            "gone": np.full(500, np.nan),  # a window without values: NaN divergences
        }
    )
    stats = feature_stats_of_batch(profile.features, cur)
    running = RunningEstimates.seed(profile.features)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    stamp = RecordStamp(run_id="r", created_at=when)
    together = window_records(profile.features, stats, running, stamp=stamp)
    for rec in together:
        name = rec["feature"]
        alone = drift_record(
            profile.features[name],
            stats.histograms[name],
            stats.mle.get(name),
            running.get(name),
            stamp=stamp,
            columns=stats.columns.get(name),
        )
        assert json.dumps(rec, default=str, sort_keys=True) == json.dumps(
            alone, default=str, sort_keys=True
        ), name


def test_every_driver_expects_the_same_columns():
    """The columns a check does not report as new come from one function: the features, the
    columns the reference ignored, the event time a streaming source attaches and the timestamp
    column. compare() left out the event time before; now a batch that carries it (as a Pub/Sub
    source's does) gets no "new column" record for it, as in DriftMonitor and the local engine."""
    from divtransforms.eventtime import EVENT_TIME_COLUMN
    from divtransforms.window import known_columns

    profile = ReferenceProfile.build({"x": np.arange(100.0), "id": np.arange(100)}, exclude=["id"])
    assert known_columns(profile) == {"x", "id", EVENT_TIME_COLUMN}
    assert known_columns(profile, "ts") == {"x", "id", EVENT_TIME_COLUMN, "ts"}
    ts = pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 100, pa.timestamp("us", tz="UTC"))
    data = {"x": np.arange(100.0), "id": np.arange(100), "ts": ts, "extra": np.ones(100)}
    data[EVENT_TIME_COLUMN] = np.arange(100, dtype=np.int64)
    table = compare(profile, data, timestamp_column="ts", window="1d")
    assert sorted(table.column("feature").to_pylist()) == ["extra", "x"]
    assert table.to_pylist()[0]["kind"] == "unprofiled"
