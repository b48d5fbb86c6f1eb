"""A monitor with a rolling reference (``[reference] rolling``, issue 22 step 4): each run's
checked windows and breaches are folded under the run lock, the reference rolls at event-time
day boundaries, the history names the reference that judged each window, and the state survives
a restart and a crash between the check and the fold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from divtransforms import ReferenceProfile
from divtransforms.sequential import reference_key
from flows.config import ConfigError, load_config, parse_config
from flows.demo import run as demo
from flows.monitor import rolling
from flows.monitor.history import read_history
from flows.monitor.run import run_monitor
from flows.monitor.state import StateStore
from flows.reference import build_reference_version


def monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rolling_text: str):
    demo.write_reference_data(tmp_path / "reference-data", n=8_000)  # 7 days of hourly data
    monkeypatch.setenv(demo.WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    path = demo.write_config(tmp_path, dashboard=False, notify_env=None)
    text = path.read_text().replace("n_bins = 32", f"n_bins = 32\nwindows = true\n{rolling_text}")
    path.write_text(text)
    config = load_config(path)
    build_reference_version(config)
    return config


def stream(tmp_path: Path, hours: range, drifted_from: int | None = None) -> None:
    for hour in hours:
        drifted = drifted_from is not None and hour >= drifted_from
        demo.write_stream_file(tmp_path / "landing", hour, n=120, drifted=drifted)


def ids_by_hour(config) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for r in read_history(config.history_dir).to_pylist():
        hour = int((r["window_start"] - demo.START).total_seconds() // 3600)
        out.setdefault(hour, set()).add(r["reference_id"])
    return out


def test_a_rolling_monitor_rolls_records_and_resumes(tmp_path, monkeypatch):
    config = monitor(tmp_path, monkeypatch, 'rolling = "4d"')
    seed = ReferenceProfile.load(config.reference_path)
    stream(tmp_path, range(0, 26), drifted_from=20)  # day 0 and two hours of day 1
    first = run_monitor(config)
    assert first.reference_id == seed.reference_id
    roll = first.reference_roll
    assert roll is not None and roll["seed"] == roll["parent"] == seed.reference_id
    assert roll["anchor"] == "2026-01-06T00:00:00+00:00"
    assert roll["from"] == "2026-01-02T00:00:00+00:00"
    rolled_id = roll["reference_id"]
    assert rolled_id != seed.reference_id
    # the drifted hours 20-23 breached amount: held out of amount's reference only
    amount, country = roll["features"]["amount"], roll["features"]["country"]
    assert amount["held"] >= 3 and amount["windows"] == 96 - amount["held"]
    assert country["windows"] == 96 - country["held"]
    version = config.reference_path.parent / "versions" / roll["version"]
    rolled = ReferenceProfile.load(version)
    assert rolled.reference_id == rolled_id and rolled.windows.k == 96
    assert f"seed {seed.reference_id}" in rolled.source
    assert ReferenceProfile.load(config.reference_path) == seed  # reference.path: the seed
    state_dir = config.state_dir
    assert not list(Path(state_dir).glob("rolling-windows-*.json"))  # folded and removed
    saved = json.loads((Path(state_dir) / "rolling.json").read_text())
    assert saved["schema_version"] == 1 and saved["current"]["reference_id"] == rolled_id

    # a crash after the next run's check and before its fold: the kept windows wait for a run
    stream(tmp_path, range(26, 30))
    with monkeypatch.context() as m:
        m.setattr(rolling, "after_run", lambda *a, **k: (_ for _ in ()).throw(OSError("kill")))
        with pytest.raises(OSError, match="kill"):
            run_monitor(config)
    assert len(list(Path(state_dir).glob("rolling-windows-*.json"))) == 1
    resumed = run_monitor(load_config(config.base_dir + "/monitor.toml"))  # a restart
    assert resumed.reference_id == rolled_id and resumed.reference_roll is None  # not due
    assert not list(Path(state_dir).glob("rolling-windows-*.json"))
    saved = json.loads((Path(state_dir) / "rolling.json").read_text())
    assert len(saved["folded"]) == 2
    # the detectors carried across the roll: keyed on the rolled reference, counting every hour
    det = StateStore.for_config(config).load().mle_state["amount"]["cusum"]
    assert det["reference"] == reference_key(rolled.features["amount"]) and det["windows"] == 30
    by_hour = ids_by_hour(config)
    assert by_hour[3] == {seed.reference_id} and by_hour[27] == {rolled_id}
    # a lost version file: rolled again from the state; a CUSUM alarm of the next run held out
    # its excursion (back to its change point, before the roll), so the profile is a new one,
    # which the state then names
    version.unlink()
    again = run_monitor(config).reference_id
    saved = json.loads((Path(state_dir) / "rolling.json").read_text())
    assert saved["current"]["reference_id"] == again != rolled_id
    anchor = saved["current"]["anchor_micros"]
    held_before = {n: [s for s in v if s < anchor] for n, v in saved["held"].items()}
    assert any(len(held_before.get(n, [])) > e["held"] for n, e in roll["features"].items())
    redone = config.reference_path.parent / "versions" / saved["current"]["version"]
    assert ReferenceProfile.load(redone).reference_id == again
    assert run_monitor(config).reference_id == again  # no third roll

    # the seed rebuilt from other data: the rolling state starts afresh from it
    demo.write_reference_data(tmp_path / "reference-data", n=9_000, seed=2)
    build_reference_version(config)
    new_seed = ReferenceProfile.load(config.reference_path)
    stream(tmp_path, range(30, 32))
    again = run_monitor(config)
    assert again.reference_id == new_seed.reference_id
    saved = json.loads((Path(state_dir) / "rolling.json").read_text())
    assert saved["seed_id"] == new_seed.reference_id and saved["folded"] == again.run_ids
    # its roll at the same day boundary: the new seed's last three days (the checked hours are
    # after the boundary)
    assert saved["current"]["seed"] == new_seed.reference_id
    assert saved["current"]["features"]["amount"] == {"windows": 72, "checked": 0, "held": 0}


def test_rolling_options_are_checked():
    base = {
        "source": {"paths": ["x/*.parquet"], "timestamp_column": "ts"},
        "window": {"size": "1h"},
    }

    def ref(**kw):
        return parse_config({**base, "reference": {"path": "r.json", "windows": True, **kw}})

    assert ref(rolling="28d").rolling_micros() == (
        28 * 86_400_000_000, 86_400_000_000, 7 * 86_400_000_000,
    )  # fmt: skip
    assert ref(rolling="28d", absorb_after="off").rolling_micros()[2] is None
    with pytest.raises(ConfigError, match="reference.rolling needs reference.windows"):
        parse_config({**base, "reference": {"path": "r.json", "rolling": "28d"}})
    with pytest.raises(ConfigError, match="multiple of the window size"):
        ref(rolling="28d", roll_every="90m")
    with pytest.raises(ConfigError, match="at least 4 times"):
        ref(rolling="2d")
    with pytest.raises(ConfigError, match="shorter than reference.rolling"):
        ref(rolling="28d", absorb_after="30d")
    with pytest.raises(ConfigError, match="absorb_after and keep_versions need reference.rolling"):
        ref(absorb_after="1d")
    with pytest.raises(ConfigError, match="rolling"):
        ref(rolling="soon")
    with pytest.raises(ConfigError, match="keep_versions"):
        ref(rolling="28d", keep_versions=1)
    assert rolling.store_of(ref(rolling="28d", keep_versions=5)).kept_versions() == 5
    assert rolling.store_of(ref(rolling="28d")).kept_versions() == 56


def test_the_run_summary_artifact_names_the_roll(monkeypatch):
    from flows import check
    from flows.monitor.run import RunSummary

    texts: list[str] = []
    monkeypatch.setattr(check, "create_markdown_artifact", lambda text, **kw: texts.append(text))
    monkeypatch.setattr(check, "create_table_artifact", lambda *a, **kw: None)
    config = parse_config({"source": {"paths": ["x/*.parquet"]}, "reference": {"path": "r.json"}})
    roll = {
        "reference_id": "ref-2", "seed": "ref-0", "from": "a", "anchor": "b",
        "features": {"x": {"restarted": "c"}, "y": {}}, "fallback": ["y"],
    }  # fmt: skip
    check.publish_artifacts(config, RunSummary(reference_roll=roll), None)
    assert (
        "- reference rolled: `ref-2` (windows ending in (a, b], seed `ref-0`); x restarts "
        "at c; the seed's for y" in texts[0]
    )
