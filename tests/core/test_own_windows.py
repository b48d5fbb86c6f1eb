"""The leave-one-window-out diagnostic: a windowed reference judges its own windows."""

import numpy as np
import pytest

from divtransforms import ReferenceProfile
from divtransforms.own_windows import leave_one_window_out, own_alert_rate
from tests.core.test_variation import feed


@pytest.fixture(scope="module")
def wander_reference():
    rng = np.random.default_rng(41)
    data = feed(rng, 21, n=200, wander=0.15)
    return ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")


def test_a_feed_the_model_fits_judges_its_own_windows_calmly(wander_reference):
    prof = wander_reference
    records = leave_one_window_out(prof, features=["x"])
    assert records.num_rows == prof.windows.k == 21 * 24
    assert own_alert_rate(records) <= 0.02
    rows = records.to_pylist()
    assert all("other 503 reference windows" in r["variation"] for r in rows)
    assert all(r["tau"] is not None and r["tau"] > 0.05 for r in rows)
    assert rows[0]["window_start"] is not None and rows[0]["reference_id"] == prof.reference_id


def test_an_odd_window_stands_out_and_a_season_keeps_a_cycle_calm():
    rng = np.random.default_rng(42)
    data = feed(rng, 14, n=200)
    x = data["x"].copy()
    x[100 * 200 : 101 * 200] += 1.0  # hour 100 moved by 1 sd (a backfill, an outage)
    data["x"] = x
    prof = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
    rows = leave_one_window_out(prof, features=["x"]).to_pylist()
    assert rows[100]["severity"] != "ok"
    assert sum(r["severity"] != "ok" for r in rows) <= 4
    # a daily cycle: calm with the season, which removes it from the variation
    cycle = feed(rng, 14, n=200, cycle=0.5)
    prof = ReferenceProfile.build(cycle, exclude=["ts"], timestamp_column="ts", window="1h")
    seasonal = leave_one_window_out(prof, season="hour_of_day", features=["x"])
    assert own_alert_rate(seasonal) <= 0.02
    assert seasonal.column("season").to_pylist()[0].startswith("hour_of_day=")


def test_a_reference_without_windows_is_refused():
    rng = np.random.default_rng(43)
    prof = ReferenceProfile.build({"x": rng.normal(size=500)})
    with pytest.raises(ValueError, match="no windowed summary"):
        leave_one_window_out(prof)
    with pytest.raises(ValueError, match="unknown season"):
        data = feed(rng, 2, n=20)
        p = ReferenceProfile.build(data, exclude=["ts"], timestamp_column="ts", window="1h")
        leave_one_window_out(p, season="minute")
