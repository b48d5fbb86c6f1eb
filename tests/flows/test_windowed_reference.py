"""A monitor with a windowed, seasonal reference: ``[reference] windows`` and ``season`` build the
reference's own windows in process, and every record of the check says what judged it."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtransforms import ReferenceProfile
from flows.config import ConfigError, load_config, parse_config
from flows.demo import run as demo
from flows.monitor.run import run_monitor
from flows.reference import build_reference_version

pytestmark = [pytest.mark.beam]


def test_windowed_seasonal_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    demo.write_reference_data(tmp_path / "reference-data", n=5_000)  # 7 days of hourly data
    monkeypatch.setenv(demo.WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    path = demo.write_config(tmp_path, dashboard=False, notify_env=None)
    text = path.read_text().replace(
        "n_bins = 32", 'n_bins = 32\nwindows = true\nseason = "day_of_week"'
    )
    path.write_text(text)
    config = load_config(path)
    out = build_reference_version(config)
    profile = ReferenceProfile.load(tmp_path / "reference" / "reference.json")
    assert profile.reference_id == out["reference_id"]
    assert profile.schema_version == 4 and profile.windows.size_micros == 3_600_000_000
    assert profile.windows.k == 7 * 24
    for hour in range(3):
        demo.write_stream_file(tmp_path / "landing", hour, n=400, drifted=False)
    summary = run_monitor(config)
    rows = summary.records.to_pylist()
    assert rows and all(r["season"] and r["season"].startswith("day_of_week=") for r in rows)
    assert all(r["variation"] for r in rows)


def test_windowed_reference_options_are_checked():
    base = {"source": {"paths": ["x/*.parquet"]}, "reference": {"path": "r.json"}}
    with pytest.raises(ConfigError, match="reference.windows needs"):
        parse_config({**base, "reference": {"path": "r.json", "windows": True}})
    with pytest.raises(ConfigError, match="reference.season needs reference.windows"):
        parse_config({**base, "reference": {"path": "r.json", "season": "hour_of_day"}})
    with pytest.raises(ConfigError, match="season"):
        parse_config({**base, "reference": {"path": "r.json", "season": "minute"}})
    ok = parse_config(
        {
            "source": {"paths": ["x/*.parquet"], "timestamp_column": "ts"},
            "reference": {"path": "r.json", "windows": True, "season": "hour_of_week"},
            "window": {"size": "1h"},
        }
    )
    assert ok.reference.season == "hour_of_week"
