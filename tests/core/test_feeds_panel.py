"""A reduced structured-feed panel (``benchmarks/bench_feeds.py``): feeds that vary from window
to window stay calm with a windowed or seasonal reference, and a real change is still caught."""

import numpy as np
import pytest

from benchmarks import bench_feeds

pytestmark = pytest.mark.slow


def test_structured_feeds_stay_calm_and_changes_are_caught():
    rng = np.random.default_rng(2026)
    feeds = {f.name: f for f in bench_feeds.NO_DRIFT}
    cases = [
        ("daily cycle +-0.5 sd", None),
        ("daily cycle +-0.5 sd", "hour_of_day"),
        ("day-level wander tau=0.2", None),
        ("categorical, weekly pattern", "day_of_week"),
    ]
    for name, season in cases:
        feed = feeds[name]
        today = bench_feeds.judge(feed, None, rng, 3, 300, between=False)
        flags = bench_feeds.judge(feed, season, rng, 3, 300)
        assert flags.size == 72
        assert flags.mean() <= 3 / 72, (name, season, flags.mean())
        if name != "day-level wander tau=0.2":  # a wander of 3 days may be quiet by chance
            assert today.mean() >= 0.2, (name, today.mean())
    wander = bench_feeds.Feed("wander", bench_feeds._numeric(wander=0.1))
    shifted = bench_feeds._numeric(wander=0.1, shift=0.5)
    assert bench_feeds.judge(wander, None, rng, 2, 300, new=shifted).mean() >= 0.85
    cycle = bench_feeds.Feed("cycle", bench_feeds._numeric(cycle=0.5))
    broken = bench_feeds._numeric(cycle=0.5, broken_hour=6)
    flags = bench_feeds.judge(cycle, "hour_of_day", rng, 3, 300, new=broken).reshape(3, 24)
    assert flags[:, 6].all() and flags[:, [0, 1, 2, 3, 4, 8, 10, 12]].mean() == 0.0
