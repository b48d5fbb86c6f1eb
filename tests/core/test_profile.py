"""Reference profiles: building, round trip, and failing loudly on bad files."""

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ProfileError, ReferenceProfile
from divtransforms.profile import PROFILE_SCHEMA_VERSION


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 5000
    x = rng.normal(10, 2, n)
    x[::97] = np.nan
    return pa.table(
        {
            "x": x,
            "amount": rng.lognormal(1, 0.7, n),
            "clicks": rng.poisson(2.0, n),
            "country": pa.array(rng.choice(["fr", "de", "es", "it"], n, p=[0.4, 0.3, 0.2, 0.1])),
            "ts": pa.array(np.arange(n) * 1_000_000, type=pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture(scope="module")
def profile(data):
    return ReferenceProfile.build(data, families={"amount": "gamma"}, n_bins=16, source="unit")


def test_build_infers_kinds_and_families(profile, data):
    f = profile.features
    assert set(f) == {"x", "amount", "clicks", "country"}  # timestamps are not features
    assert (f["x"].kind, f["x"].family) == ("numeric", "normal")
    assert f["amount"].family == "gamma"
    assert f["clicks"].family == "poisson"
    assert (f["country"].kind, f["country"].family) == ("categorical", "categorical")
    assert f["x"].histogram.n_missing == len(range(0, 5000, 97))
    assert f["x"].histogram.n + f["x"].histogram.n_missing == data.num_rows
    assert f["x"].bins.n_bins == 18


def test_build_and_the_jobs_choose_features_by_one_rule(caplog):
    """ReferenceProfile.build (columns in memory) and infer_kinds (a schema and a sample: the
    in-process and Beam builds) choose the same features of the same kinds, skip the same
    columns with the same log lines, and fail alike on a named timestamp or missing column."""
    from divtransforms.kinds import infer_kinds

    n = 400
    table = pa.table(
        {
            "ts": pa.array(np.arange(n) * 60_000_000, type=pa.timestamp("us", tz="UTC")),
            "x": np.random.default_rng(1).normal(size=n),
            "uid": pa.array([f"id{i}" for i in range(n)]),
            "row": np.arange(n),
            "day": pa.array([f"2026-01-{1 + i % 28:02d} 10:00:00" for i in range(n)]),
            "color": pa.array(["red", "blue"] * (n // 2)).dictionary_encode(),
        }
    )
    for given in ({}, {"kinds": {"uid": "categorical"}}, {"exclude": ["x"]}):
        caplog.clear()
        with caplog.at_level("INFO", logger="divtransforms.kinds"):
            built = ReferenceProfile.build(table, **given).features
        build_log = caplog.messages[:]
        caplog.clear()
        with caplog.at_level("INFO", logger="divtransforms.kinds"):
            inferred = infer_kinds(table.schema, sample=table, **given)
        assert {k: f.kind for k, f in built.items()} == inferred, given
        assert build_log == caplog.messages, given
        assert "reference: column 'ts' skipped: it holds timestamps" in build_log
        assert any(m.startswith("reference: column 'row' skipped") for m in build_log)
        assert ("uid" in built) == ("kinds" in given)  # naming a column keeps it
    assert set(ReferenceProfile.build(table).features) == {"x", "color"}
    for bad, message in (
        ({"features": ["x", "ts"]}, "feature 'ts' holds timestamps"),
        ({"features": ["x", "nope"]}, "features ['nope'] are not in the data"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            ReferenceProfile.build(table, **bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            infer_kinds(table.schema, sample=table, **bad)


def test_round_trip_is_equal_and_id_is_stable(profile, tmp_path):
    path = profile.save(tmp_path / "ref.json")
    loaded = ReferenceProfile.load(path)
    assert loaded == profile
    assert loaded.reference_id == profile.reference_id
    assert loaded.reference_id.startswith("ref-")
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == PROFILE_SCHEMA_VERSION
    assert doc["content_hash"].startswith("sha256:")
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp files


def test_pandas_and_dict_inputs_give_the_same_profile(data):
    cols = ["x", "clicks", "country"]
    p1 = ReferenceProfile.build(data.select(cols))
    p2 = ReferenceProfile.build(data.select(cols).to_pandas())
    p3 = ReferenceProfile.build({c: data[c].to_numpy(zero_copy_only=False) for c in cols})
    for p in (p2, p3):
        for name in cols:
            assert p.features[name].to_dict() == p1.features[name].to_dict(), name


def _write(tmp_path, doc, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_wrong_version_names_file_and_problem(profile, tmp_path):
    doc = profile.to_dict()
    doc["schema_version"] = 99
    path = _write(tmp_path, doc)
    with pytest.raises(ProfileError, match=r"bad\.json.*schema version 99"):
        ReferenceProfile.load(path)


def test_tampered_file_fails_the_hash(profile, tmp_path):
    doc = profile.to_dict()
    doc["features"]["x"]["counts"][3] += 1
    doc["features"]["x"]["n"] += 1
    with pytest.raises(ProfileError, match=r"bad\.json.*content hash mismatch"):
        ReferenceProfile.load(_write(tmp_path, doc))


def test_truncated_file_is_reported(profile, tmp_path):
    path = profile.save(tmp_path / "ref.json")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ProfileError, match=r"ref\.json.*not valid JSON"):
        ReferenceProfile.load(path)


def test_malformed_and_foreign_files(tmp_path, profile):
    with pytest.raises(ProfileError, match="not a divtransforms reference profile"):
        ReferenceProfile.load(_write(tmp_path, {"hello": 1}))
    doc = profile.to_dict()
    del doc["features"]["x"]["bins"]
    with pytest.raises(ProfileError, match="malformed"):
        ReferenceProfile.load(_write(tmp_path, doc))
    with pytest.raises(ProfileError, match="not found"):
        ReferenceProfile.load(tmp_path / "nope.json")


def test_build_errors_name_the_feature(data):
    with pytest.raises(ValueError, match="nope"):
        ReferenceProfile.build(data, features=["nope"])
    with pytest.raises(ValueError, match="'x'.*family"):
        ReferenceProfile.build(data, features=["x"], families={"x": "weibull"})
    with pytest.raises(ValueError, match="'e'.*no finite values"):
        ReferenceProfile.build({"e": np.full(10, np.nan)})
    with pytest.raises(ValueError, match="'ts'.*timestamps"):
        ReferenceProfile.build(data, features=["ts"])


def test_explicit_edges_and_no_family(data):
    p = ReferenceProfile.build(data, features=["x"], edges={"x": [0, 10, 20]}, families={"x": None})
    assert p.features["x"].bins.edges.tolist() == [0, 10, 20]
    assert p.features["x"].mle is None
    assert ReferenceProfile.from_dict(p.to_dict()) == p
