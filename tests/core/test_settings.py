"""Settings objects: one frozen object per check or build, and the keyword arguments users write."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest

from divtransforms import ReferenceProfile, compare
from divtransforms.settings import BuildSettings, CheckSettings

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC


def _data(rng: np.random.Generator, n: int, shift: float = 0.0) -> pa.Table:
    ts = ((T0 + rng.uniform(0, 6 * 3600, n)) * 1e6).astype("int64")
    return pa.table(
        {
            "x": rng.normal(shift, 1.0, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def _rows(table: pa.Table) -> str:
    rows = table.drop_columns(["created_at"]).to_pylist()
    return json.dumps(rows, default=str, sort_keys=True)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CheckSettings().window = "1h"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        BuildSettings().n_bins = 8  # type: ignore[misc]


def test_compare_takes_a_settings_object_or_its_fields_as_keywords():
    rng = np.random.default_rng(4)
    reference = ReferenceProfile.build(_data(rng, 4000), exclude=["ts"])
    current = _data(rng, 900, shift=0.2)
    keywords = compare(
        reference, current, timestamp_column="ts", window="1h", run_id="r", alpha=0.3, policy=None
    )
    settings = CheckSettings(window="1h", timestamp_column="ts", run_id="r", alpha=0.3, policy=None)
    assert keywords.num_rows == 12  # 2 features x 6 windows
    assert _rows(compare(reference, current, settings)) == _rows(keywords)
    # keywords replace the object's fields
    both = compare(reference, current, CheckSettings(window="2h", alpha=9.0), timestamp_column="ts",
                   window="1h", run_id="r", alpha=0.3, policy=None)  # fmt: skip
    assert _rows(both) == _rows(keywords)
    assert set(keywords.column("severity").to_pylist()) == {None}


def test_an_unknown_keyword_names_itself():
    reference = ReferenceProfile.build({"x": np.arange(100.0)})
    with pytest.raises(TypeError, match=r"compare\(\) got an unexpected keyword argument 'windw'"):
        compare(reference, {"x": np.arange(10.0)}, windw="1h")
    with pytest.raises(TypeError, match=r"build\(\) got an unexpected keyword argument 'bins'"):
        ReferenceProfile.build({"x": np.arange(100.0)}, bins=8)


def test_build_takes_a_settings_object_or_its_fields_as_keywords():
    rng = np.random.default_rng(5)
    data = _data(rng, 3000)
    kw = {"exclude": ["ts"], "n_bins": 8, "strategy": "uniform", "families": {"x": "normal"}}
    kw |= {"timestamp_column": "ts", "window": "1h"}
    by_keywords = ReferenceProfile.build(data, **kw).to_dict()
    by_object = ReferenceProfile.build(data, BuildSettings(**kw)).to_dict()
    for d in (by_keywords, by_object):
        d.pop("created_at"), d.pop("content_hash")
    assert by_object == by_keywords
    assert by_object["windows"] is not None and len(by_object["features"]) == 2


def test_check_settings_durations_and_horizon():
    s = CheckSettings(window="90m", allowed_lateness="10m", max_future="1h", now=1000.0)
    assert s.window_micros == 90 * 60 * 10**6 and s.lateness_micros == 600 * 10**6
    horizon = s.horizon()
    assert horizon is not None and horizon.bounds()[1] == round((1000.0 + 3600.0) * 1e6)
    assert CheckSettings().horizon() is None and CheckSettings().window_micros is None
    assert BuildSettings(window="2h").window_seconds == 7200.0
    assert BuildSettings(chunk=100).windowed and not BuildSettings().windowed
