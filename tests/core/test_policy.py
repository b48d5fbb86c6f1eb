"""Policy: per-window rules, records as evidence, and the alert tracker's state machine.

The calibration panel is ``tests/core/test_policy_panel.py`` (slow) and ``make bench``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import bench_policy
from divtransforms.alerting import AlertTracker
from divtransforms.compare import CheckSettings, RecordStamp, drift_record
from divtransforms.policy import FeaturePolicy, Policy, PolicyError
from divtransforms.profile import ReferenceProfile
from divtransforms.window import feature_stats_of_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(3)
    return ReferenceProfile.build(
        {
            "x": rng.normal(0.0, 1.0, 10_000),
            "c": rng.choice(["a", "b", "c", "d"], 10_000, p=[0.5, 0.3, 0.15, 0.05]),
        },
        families={"x": "normal"},
        kinds={"x": "numeric", "c": "categorical"},
    )


def window_record(profile, feature, values, i=0, policy="default"):
    fp = profile.features[feature]
    stats = feature_stats_of_batch({feature: fp}, {feature: values})
    hist, acc = stats.histograms[feature], stats.mle[feature]
    return drift_record(
        fp,
        hist,
        acc,
        acc,
        settings=CheckSettings(policy=policy),
        stamp=RecordStamp(
            "t", profile.reference_id, T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)
        ),
    )


def test_long_no_drift_stream_stays_calm(profile):
    """800 real records (drift_record) of a stationary stream: alert rate within the documented
    1% per window (+3 standard errors), and the tracker sends at most that many alerts."""
    rng = np.random.default_rng(11)
    policy = Policy()
    tracker = AlertTracker(policy)
    severities, alerts = [], 0
    for i in range(800):
        n = (100, 300, 1000)[i % 3]
        rec = window_record(profile, "x", rng.normal(0.0, 1.0, n), i)
        severities.append(policy.assess(rec))
        decision = tracker.update(rec)
        alerts += decision is not None and decision.severity != "recovered"
    rate = np.mean([s in ("warning", "critical") for s in severities])
    assert rate <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / 800)
    assert alerts <= rate * 800


def test_vectorised_path_matches_records():
    """The benchmark's vectorised windows and compare() + Policy.assess agree, on every shape."""
    agree, total, worst = bench_policy.cross_check(n_windows=3)
    assert agree == total and worst < 1e-9


def test_record_carries_the_p_values_the_policy_decided_on(profile):
    rng = np.random.default_rng(4)
    rec = window_record(profile, "x", rng.normal(0.4, 1.0, 500))
    explained = Policy().explain(rec)
    by_name = {t["name"]: t for t in rec["tests"]}
    assert [t["name"] for t in explained["tests"]] == [
        "histogram",
        "mean",
        "dispersion",
        "out_of_range",
        "missing_rate",
        "invalid_rate",
    ]
    for t in explained["tests"]:
        assert t["p_value"] == by_name[t["name"]]["p_value"]
    mu = next(p for p in rec["mle_params"] if p["name"] == "mu")
    assert (mu["z"], mu["p_value"]) == (by_name["mean"]["statistic"], by_name["mean"]["p_value"])
    assert rec["p_value"] == by_name["histogram"]["p_value"]
    assert rec["severity"] == explained["severity"] == "critical"
    assert rec["severity_reason"] == explained["reason"] and "mean: p=" in rec["severity_reason"]


def test_min_samples_makes_small_windows_insufficient(profile):
    policy = Policy.from_dict({"default": {"min_samples": 50}})
    rng = np.random.default_rng(1)
    # too small for every test but the exact out-of-range one, which sees nothing here
    small = window_record(profile, "x", rng.normal(1.0, 1.0, 49), policy=policy)
    assert policy.assess(small) == "insufficient" == small["severity"]
    big = window_record(profile, "x", rng.normal(3.0, 1.0, 50), policy=policy)
    assert policy.assess(big) == "critical"
    tracker = AlertTracker(policy)
    assert tracker.update(small) is None
    assert tracker.active("x") is None
    # the tracker reads the record's severity (assessed once); without one its policy decides
    unassessed = window_record(profile, "x", rng.normal(1.0, 1.0, 49), policy=None)
    assert unassessed["severity"] is None and tracker.update(unassessed) is None
    assert tracker.update(big).severity == "critical"


def test_severity_levels_and_effect_floor(profile):
    rng = np.random.default_rng(2)
    policy = Policy()
    assert policy.assess(window_record(profile, "x", rng.normal(0.25, 1.0, 5000))) == "warning"
    assert policy.assess(window_record(profile, "x", rng.normal(1.0, 1.0, 5000))) == "critical"
    shifted = np.array(["a"] * 45 + ["b"] * 30 + ["c"] * 15 + ["d"] * 10)
    rec = window_record(profile, "c", np.tile(shifted, 20))
    assert policy.assess(rec) == "warning"
    # Same data, a higher floor on the bias-corrected JS: significant but too small to matter.
    strict = Policy.from_dict({"features": {"c": {"warn": 0.05, "critical": 0.1}}})
    assert strict.assess(rec) == "ok"
    explained = policy.explain(rec)
    assert "histogram" in explained["reason"]


def _rec(i: int, feature: str = "x") -> dict:
    return {
        "feature": feature,
        "window_start": T0 + timedelta(hours=i),
        "window_end": T0 + timedelta(hours=i + 1),
    }


def _feed(tracker: AlertTracker, severities: str, feature: str = "x") -> list[tuple[int, str]]:
    code = {"o": "ok", "w": "warning", "c": "critical", "i": "insufficient"}
    out = []
    for i, s in enumerate(severities):
        d = tracker.update(_rec(i, feature), code[s])
        if d is not None:
            out.append((i, d.severity))
    return out


def test_consecutive_windows_rule():
    tracker = AlertTracker(Policy(FeaturePolicy(consecutive=3, cooldown=0)))
    # Two breaches, a break, then three in a row (an insufficient window is neutral).
    assert _feed(tracker, "wwowwiw") == [(6, "warning")]


def test_escalation_recovery_and_single_recovery():
    tracker = AlertTracker(Policy(FeaturePolicy(consecutive=1, cooldown=0, recovery=2)))
    # warning, escalates to critical (sent), stays critical (not sent again), one ok is not yet a
    # recovery, two are (sent once), more ok windows send nothing.
    assert _feed(tracker, "wcccoooo") == [(0, "warning"), (1, "critical"), (5, "recovered")]


def test_cooldown_suppresses_flapping():
    tracker = AlertTracker(Policy(FeaturePolicy(consecutive=1, cooldown=3, recovery=1)))
    # alert at 0, recovered at 1, breaches at 2 and 3 fall in the cooldown (<= 3 windows since the
    # alert), the one at 4 is sent; recovery is only sent for an alert that was sent.
    assert _feed(tracker, "wowwwo") == [
        (0, "warning"),
        (1, "recovered"),
        (4, "warning"),
        (5, "recovered"),
    ]
    quiet = AlertTracker(Policy(FeaturePolicy(consecutive=1, cooldown=3, recovery=1)))
    assert _feed(quiet, "wowo") == [(0, "warning"), (1, "recovered")]


def test_tracker_state_round_trips_through_json():
    policy = Policy(FeaturePolicy(consecutive=2, cooldown=1))
    a = AlertTracker(policy)
    _feed(a, "ow")
    b = AlertTracker.from_dict(json.loads(json.dumps(a.to_dict())), policy)
    assert b.update(_rec(2), "warning").severity == "warning"
    assert a.update(_rec(2), "warning").severity == "warning"
    with pytest.raises(PolicyError, match="schema_version"):
        AlertTracker.from_dict({"schema_version": 99, "features": {}})


def test_policy_validation_names_the_key():
    with pytest.raises(PolicyError, match="unknown keys \\['treshold'\\]"):
        Policy.from_dict({"default": {"treshold": 1}})
    with pytest.raises(PolicyError, match="features.x: critical"):
        Policy.from_dict({"features": {"x": {"warn": 0.5, "critical": 0.1}}})
    with pytest.raises(PolicyError, match="significance"):
        FeaturePolicy(significance=1.5)
    assert (
        Policy.from_dict({"features": {"x": {"consecutive": 2}}}).for_feature("x").warn
        == FeaturePolicy().warn
    )


@given(
    seq=st.text(alphabet="owci", max_size=60),
    consecutive=st.integers(1, 3),
    cooldown=st.integers(0, 4),
    recovery=st.integers(1, 3),
    split=st.integers(0, 60),
)
@settings(max_examples=200)
def test_tracker_properties(seq, consecutive, cooldown, recovery, split):
    policy = Policy(FeaturePolicy(consecutive=consecutive, cooldown=cooldown, recovery=recovery))
    whole = _feed(AlertTracker(policy), seq)
    # Persisting the state at any point and resuming gives the same alerts.
    first = AlertTracker(policy)
    code = {"o": "ok", "w": "warning", "c": "critical", "i": "insufficient"}
    resumed = []
    for i, s in enumerate(seq):
        if i == split:
            first = AlertTracker.from_dict(json.loads(json.dumps(first.to_dict())), policy)
        d = first.update(_rec(i), code[s])
        if d is not None:
            resumed.append((i, d.severity))
    assert resumed == whole
    # Recoveries alternate with openings: never two in a row, never before an alert.
    opened = False
    for i, sev in whole:
        if sev == "recovered":
            assert opened
            opened = False
        else:
            assert seq[i] in "wc"
            breaches = [s for s in seq[: i + 1] if s != "i"]
            assert all(s in "wc" for s in breaches[-consecutive:])
            assert len(breaches) >= consecutive
            opened = True


# ------------------------------------------------------------------------- event-time order


def test_a_late_window_never_resolves_the_live_incident():
    """The issue's case: windows 03-06 are critical when a late file brings window 00 (ok)."""
    policy = Policy(FeaturePolicy(consecutive=1, cooldown=0, recovery=1))
    tracker = AlertTracker(policy)
    assert tracker.run([{**_rec(i), "severity": "critical"} for i in range(3, 7)])[0].severity == (
        "critical"
    )
    assert tracker.run([{**_rec(0), "severity": "ok"}]) == []  # no recovery
    assert tracker.active("x") == "critical"
    # the incident still resolves in event time, on the next newer window
    (rec,) = tracker.run([{**_rec(7), "severity": "ok"}])
    assert rec.severity == "recovered" and rec.window_start == _rec(7)["window_start"]


def test_a_late_breach_alerts_on_its_own_and_never_re_arms_the_incident():
    policy = Policy(FeaturePolicy(consecutive=2, cooldown=5, recovery=1))
    tracker = AlertTracker(policy)
    assert [d.severity for d in tracker.run(_sev(range(5, 8), "w"))] == ["warning"]
    assert [d.severity for d in tracker.run(_sev([8], "o"))] == ["recovered"]
    # A backfill of windows 0-2: its own consecutive rule, its own alert, no recovery sent.
    late = tracker.run(_sev(range(0, 3), "c") + _sev([3], "o"))
    assert [(d.severity, d.window_start) for d in late] == [("critical", _rec(1)["window_start"])]
    # the live state is untouched: still in cooldown after the alert at 6, no active incident
    assert tracker.active("x") is None
    assert tracker.run(_sev([9, 10], "w")) == []  # cooldown of the live incident holds
    state = tracker.to_dict()
    assert state["features"]["x"]["newest"] == _rec(10)["window_end"].isoformat()


def test_version_1_tracker_state_still_loads():
    state = {
        "schema_version": 1,
        "features": {"x": {"streak": 1, "ok_streak": 0, "active": "warning", "since_alert": 0}},
    }
    tracker = AlertTracker(Policy(FeaturePolicy(consecutive=1, recovery=1)), state)
    assert tracker.active("x") == "warning"
    assert tracker.update(_rec(0), "ok").severity == "recovered"


def _sev(hours, code: str) -> list[dict]:
    severity = {"o": "ok", "w": "warning", "c": "critical"}[code]
    return [{**_rec(i), "severity": severity} for i in hours]


@given(
    live=st.text(alphabet="owci", min_size=1, max_size=30),
    late=st.text(alphabet="owci", max_size=30),
    consecutive=st.integers(1, 3),
    recovery=st.integers(1, 3),
)
@settings(max_examples=200)
def test_late_windows_change_nothing_about_the_live_stream(live, late, consecutive, recovery):
    """Late windows interleaved anywhere leave the live stream's alerts exactly as without them,
    and the late ones never send a recovery."""
    policy = Policy(FeaturePolicy(consecutive=consecutive, cooldown=1, recovery=recovery))
    code = {"o": "ok", "w": "warning", "c": "critical", "i": "insufficient"}
    offset = len(late)  # live windows come after every late one in event time
    plain = AlertTracker(policy)
    expected = [plain.update(_rec(offset + i), code[s]) for i, s in enumerate(live)]
    mixed = AlertTracker(policy)
    got, late_alerts = [], []
    pending = list(enumerate(late))
    for i, s in enumerate(live):
        got.append(mixed.update(_rec(offset + i), code[s]))
        if pending:  # after each live window, one late window arrives
            j, t = pending.pop(0)
            d = mixed.update(_rec(j), code[t])
            if d is not None:
                late_alerts.append(d)
    assert [(d.severity if d else None) for d in got] == [
        (d.severity if d else None) for d in expected
    ]
    assert all(d.severity != "recovered" for d in late_alerts)


def test_gross_drift_in_small_windows_is_never_ok(profile):
    """Issue 21: a window far away, a unit change, another column's values: critical from
    n = 10 (the exact out-of-range test may alert below min_samples); the histogram decides
    at n = 30 (dof >= 1, a p-value, not the old p = 1 of an empty table)."""
    rng = np.random.default_rng(21)
    for values in (rng.normal(20.0, 1.0, 10), 1000.0 * rng.standard_normal(10)):
        rec = window_record(profile, "x", values)
        assert rec["severity"] == "critical" and "out_of_range: p=" in rec["severity_reason"]
    rec = window_record(profile, "x", rng.integers(0, 100, 30).astype(float))
    assert rec["severity"] == "critical" and rec["dof"] >= 1 and rec["p_value"] < 1e-6
    calm = window_record(profile, "x", rng.standard_normal(10))
    assert calm["severity"] == "insufficient" and calm["severity_reason"].startswith("n=10 <")


def test_a_constant_that_changes_is_critical_at_ten_values():
    reference = ReferenceProfile.build({"year": np.full(10_000, 2015.0)})
    assert "; )" not in reference.features["year"].reason  # no empty list of rivals
    rec = window_record(reference, "year", np.full(10, 2016.0))
    assert rec["severity"] == "critical"
    by_name = {t["name"]: t for t in rec["tests"]}
    assert by_name["out_of_range"]["p_value"] < 1e-30  # the reference saw 0 of 10,000
    assert window_record(reference, "year", np.full(10, 2015.0))["severity"] == "insufficient"
    assert window_record(reference, "year", np.full(50, 2015.0))["severity"] == "ok"


def test_untested_is_insufficient_never_ok():
    """A 3% flag in 30 values: one bin, and the mean test does not apply to so skewed a
    reference at this n. Nothing decides, so the window is insufficient, with the reason."""
    rng = np.random.default_rng(5)
    flag = ReferenceProfile.build({"f": (rng.random(10_000) < 0.03).astype(float)})
    rec = window_record(flag, "f", (rng.random(30) < 0.03).astype(float))
    assert rec["severity"] == "insufficient"
    assert rec["severity_reason"].startswith("no test could decide at n=30")
    by_name = {t["name"]: t for t in rec["tests"]}
    assert np.isnan(by_name["histogram"]["p_value"]) and np.isnan(rec["p_value"])


def test_js_near_its_maximum_is_never_ok():
    from divtransforms.policy import Evidence, decide
    from divtransforms.significance import DriftTest

    fp = FeaturePolicy()

    def evidence(js, n=50):
        nan = np.array([np.nan])
        return Evidence(
            np.array([float(n)]),
            [
                DriftTest("histogram", "histogram", nan, np.array([0.5]), np.array([js])),
                DriftTest("mean", "location", nan, np.array([0.5]), np.array([0.0])),
            ],
        )

    # Nearly disjoint histograms that no test finds drift in (a long-tailed feature whose
    # window shares few values with the reference) are not judged "ok": too sparse to judge.
    assert decide(fp, evidence(0.6))[0] == "insufficient"
    assert "too sparse to judge" in evidence(0.6).reason(fp, "insufficient")
    assert decide(fp, evidence(0.4))[0] == "ok"
    assert decide(fp, evidence(0.6, n=20))[0] == "insufficient"


def test_all_missing_is_judged_by_the_exact_missing_rate_test():
    """One row missing of a feature the reference misses half the time is no evidence; a few
    rows all missing of a feature the reference never misses are critical."""
    rng = np.random.default_rng(8)
    half = rng.standard_normal(10_000)
    half[rng.random(10_000) < 0.5] = np.nan
    reference = ReferenceProfile.build({"h": half, "d": rng.standard_normal(10_000)})
    rec = window_record(reference, "h", np.array([np.nan]))
    assert rec["severity"] == "insufficient" and rec["quality_severity"] == "ok"
    rec = window_record(reference, "d", np.array([np.nan, np.nan, np.nan]))
    assert rec["severity"] == "critical" == rec["quality_severity"]
    assert "all 3 values missing" in rec["quality_reason"]


_Y2286 = datetime(2286, 11, 20, 17, tzinfo=UTC)


def test_a_window_beyond_the_horizon_never_sets_the_trackers_clock():
    """Issue 26: one window dated 2286 (an epoch in ms read with no format) made every later
    real window late: a critical per drifted window, never a recovery. A window ending more
    than ``max_future`` after now is judged like a late one and never becomes the newest."""
    now = (T0 + timedelta(hours=24)).timestamp()
    tracker = AlertTracker(Policy(FeaturePolicy(consecutive=1, recovery=1)), now=now)
    assert tracker.run(_sev([0, 1], "o")) == []
    poison = {**_rec(0), "window_start": _Y2286, "window_end": _Y2286 + timedelta(hours=1)}
    tracker.run([{**poison, "severity": "critical"}])  # alerted on its own, changes nothing
    assert tracker.to_dict()["features"]["x"]["newest"] == _rec(1)["window_end"].isoformat()
    alerts = tracker.run(_sev([2, 3], "c")) + tracker.run(_sev([4], "o"))
    assert [(d.severity, d.window_start) for d in alerts] == [
        ("critical", _rec(2)["window_start"]),
        ("recovered", _rec(4)["window_start"]),
    ]


def test_a_state_poisoned_before_the_horizon_existed_heals():
    """A tracker state whose newest window is far beyond the horizon (written by a version
    without it) is forgotten on the next plausible window: drift alerts once and recovers."""
    state = {
        "schema_version": 2,
        "features": {
            "x": {"streak": 0, "ok_streak": 0, "active": None, "since_alert": None,
                  "newest": (_Y2286 + timedelta(hours=1)).isoformat()},
        },
    }  # fmt: skip
    now = (T0 + timedelta(hours=24)).timestamp()
    policy = Policy(FeaturePolicy(consecutive=1, recovery=1))
    tracker = AlertTracker(policy, state, now=now)
    alerts = [d.severity for d in tracker.run(_sev([0, 1, 2], "c") + _sev([3], "o"))]
    assert alerts == ["critical", "recovered"]
    assert tracker.to_dict()["features"]["x"]["newest"] == _rec(3)["window_end"].isoformat()
    # the horizon can be lifted: then the 2286 window is trusted as before
    lifted = AlertTracker(policy, state, max_future=None, now=now)
    assert [d.severity for d in lifted.run(_sev([0, 1], "c") + _sev([2], "o"))] == ["critical"]
