"""Fault injection: SIGKILL of the real ``divmon run`` at random times and at every stage
boundary, each followed by a clean ``divmon run``; rows, windows and alerts counted exactly
(docs/reliability.md).

Every ``divmon run`` here is the installed command in a process of its own, on the local Prefect
API server of the session's test harness (``PREFECT_API_URL``), so a run costs seconds instead of
the 10-25 s of a server start. A kill at a stage boundary is made exactly by the run itself: the
test puts a ``sitecustomize`` on its ``PYTHONPATH`` that, when ``DIVMON_KILL_AT`` names a
boundary, wraps the function that ends that stage so that the process SIGKILLs itself there. A
uniform kill is a SIGKILL from the test at a random time. What a SIGKILL of ``divmon run`` does to
a server it started itself is ``tests/flows/cli/test_serve.py``'s.

``make test`` runs a bounded set: each boundary once and 3 uniform kills, and 2 rounds of
overlapping runs. ``DIVMON_FAULT_TRIALS=33`` (``make test-faults``) runs the full campaign: each
boundary twice, the rest uniform, and 5 rounds. The trials are dealt into ``PARTS`` independent
parts, each on a monitor of its own, so that the suite's workers share them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from divtransforms.alerting import AlertTracker
from flows.alerts.outbox import INPUT_ERROR, AlertLog, decision_key
from flows.config import load_config
from flows.demo import run as demo
from flows.demo.receiver import AlertReceiver
from flows.monitor.history import read_history
from flows.monitor.state import StateStore

pytestmark = [pytest.mark.slow, pytest.mark.beam, pytest.mark.prefect]
ROWS = 400
CAMPAIGN = int(os.environ.get("DIVMON_FAULT_TRIALS") or 0)  # 0: the bounded set of make test
PARTS = 2  # the SIGKILL trials in independent parts (one per xdist worker of make test)

# The stage boundaries, in the order a run reaches them. ``install`` wraps the function that ends
# each one so that the process kills itself right there.
BOUNDARIES = ["planned", "history", "recorded", "alert-log", "alerted", "delivering", "rename"]
NEEDS_ALERT = {"alert-log", "alerted", "delivering"}  # reached only by a run with a new alert

KILL_POINTS = r"""
import os
import signal


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def install(point, root):
    import flows.monitor.run as monitor
    from flows.alerts import outbox as alerts
    from flows.monitor import state as st

    if point == "planned":  # journal written, Beam not started
        save = st.StateStore.save

        def planned_save(self, s):
            save(self, s)
            if s.pending and s.pending["stage"] == "planned":
                die()

        st.StateStore.save = planned_save
    elif point == "history":  # history written, ledger not committed
        append = monitor.append_records

        def append_then_die(*a, **k):
            append(*a, **k)
            die()

        monitor.append_records = append_then_die
    elif point == "recorded":  # ledger committed, alerts not evaluated
        check = monitor.check_stage

        def check_then_die(*a, **k):
            check(*a, **k)
            die()

        monitor.check_stage = check_then_die
    elif point == "alert-log":  # alerts logged, state not committed
        save_log = alerts.AlertLog.save

        def log_then_die(self):
            save_log(self)
            die()

        alerts.AlertLog.save = log_then_die
    elif point == "alerted":  # state committed, nothing delivered
        stage = monitor.alert_stage

        def alert_then_die(*a, **k):
            stage(*a, **k)
            die()

        monitor.alert_stage = alert_then_die
    elif point == "delivering":  # the receiver has the first alert, the log does not say so
        refresh = alerts._refresh_status

        def delivered_then_die(entry):
            if any(d["status"] == "delivered" for d in entry["deliveries"].values()):
                die()
            refresh(entry)

        alerts._refresh_status = delivered_then_die
    elif point == "rename":  # inside one of our atomic writes: temp file complete, not renamed
        # divtransforms.storage.write_atomic commits by os.replace (os.link when creating)
        for name in ("replace", "link"):
            commit = getattr(os, name)

            def commit_then_die(src, dst, *a, _commit=commit, **k):
                if str(src).startswith(root) and str(src).endswith(".tmp"):
                    die()
                return _commit(src, dst, *a, **k)

            setattr(os, name, commit_then_die)
    elif point != "none":
        raise ValueError(point)
"""

# On PYTHONPATH of a killed ``divmon run``: install the kill point once flows.monitor.run is loaded.
SITECUSTOMIZE = r"""
import os
import sys

if os.environ.get("DIVMON_KILL_AT"):
    import importlib.machinery

    class _AfterMonitor:
        def find_spec(self, name, path=None, target=None):
            if name != "flows.monitor.run":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                import divmon_kill_points

                env = os.environ
                divmon_kill_points.install(env["DIVMON_KILL_AT"], env["DIVMON_KILL_ROOT"])

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterMonitor())
"""

# A monitor run in a forked child (the overlapping-runs test): run_monitor, the body of the flow.
DRIVER = r"""
os.environ.update(ENV)
install(POINT, ROOT)

import flows.monitor.run as monitor
from flows.config import load_config
from flows.alerts.notify import build_notifiers, retry_settings

try:
    config = load_config(CONFIG)
    summary = monitor.run_monitor(
        config, notifiers=build_notifiers(config), retries=retry_settings(config)
    )
except Exception as exc:
    with open(RESULT, "w") as fh:
        fh.write(f"ERROR {exc}")
    raise SystemExit(1)
with open(RESULT, "w") as fh:
    fh.write(f"DONE {summary.n_rows_read} {len(summary.new_alerts)}")
"""

_PRELOAD = [
    "apache_beam",
    "pyarrow",
    "flows.monitor.run",
    "flows.alerts.notify",
    "pipelines.check_job",
]


class _Child:
    """A monitor run in a child forked from a forkserver that has Beam and the flows imported
    (a run costs ~2 s instead of ~7 s with a fresh interpreter). The child runs ``DRIVER``."""

    _ctx = None

    def __init__(self, root: Path, point: str, env: dict, *, keep=(demo.WEBHOOK_ENV,)):
        """``env``'s variables named in ``keep`` (all of them with ``keep=None``) are set in
        the child before the run."""
        if _Child._ctx is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _Child._ctx = ctx
        self.result = root.parent / f"result-{uuid.uuid4().hex}.txt"
        if keep is not None:
            env = {k: env[k] for k in keep if k in env}
        scope = {"__name__": "__driver__", "ENV": env, "POINT": point, "ROOT": str(root)}
        scope.update(CONFIG=str(root / "monitor.toml"), RESULT=str(self.result))
        self.proc = _Child._ctx.Process(target=exec, args=(KILL_POINTS + DRIVER, scope))
        self.proc.start()

    def wait(self, timeout: float = 300) -> int | None:
        self.proc.join(timeout)
        return self.proc.exitcode

    @property
    def returncode(self) -> int | None:
        return self.proc.exitcode

    def output(self) -> str:
        try:
            return self.result.read_text()
        except FileNotFoundError:
            return ""


def _child(root: Path, point: str, env: dict) -> _Child:
    return _Child(root, point, env)


def _divmon_cmd(root: Path) -> list[str]:
    script = Path(sys.executable).with_name("divmon")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]
    return [*cmd, "run", "--config", str(root / "monitor.toml")]


def _session_left(sid: int) -> list[int]:
    """Live processes still in the session of a killed command (it was a session leader)."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            left.append(int(entry))
    return left


def _drifted(hour: int) -> bool:
    return (hour // 4) % 2 == 1  # 4 calm hours, 4 drifted hours, ...: alerts and recoveries


def _expected_alert_keys(root: Path) -> set[str]:
    """What the tracker decides over the whole history in one pass (event-time order)."""
    config = load_config(root / "monitor.toml")
    policy = config.build_policy()
    from flows.monitor.run import monitor_reference

    ref_id = monitor_reference(config).reference_id
    decisions = AlertTracker(policy).run(read_history(root / "history").to_pylist())
    return {decision_key(d, ref_id) for d in decisions}


def _check_invariants(root: Path, hours: int, receiver: AlertReceiver) -> dict:
    history = read_history(root / "history").to_pylist()
    windows = Counter((r["feature"], r["window_start"]) for r in history)
    assert len(windows) == 2 * hours, "a window is missing"
    assert set(windows.values()) == {1}, "a window is duplicated"
    for feature in ("amount", "country"):
        assert sum(r["n"] for r in history if r["feature"] == feature) == hours * ROWS
    state = StateStore(root / "history" / "_state", root=root).load()
    assert state.pending is None and len(state.ledger) == hours
    assert all(e.status == "checked" for e in state.ledger.values())
    assert list(root.rglob("*.tmp")) == [], "a temp file was left behind"
    log = AlertLog.open(root / "history")
    keys = [e["dedup_key"] for e in log.entries if e["severity"] != INPUT_ERROR]
    assert len(keys) == len(set(keys))
    assert set(keys) == _expected_alert_keys(root), "alerts lost or invented"
    assert all(e["status"] == "delivered" for e in log.entries)
    got = Counter(a["dedup_key"] for a in receiver.alerts())
    assert set(got) == set(keys), "a logged alert never reached the receiver"
    return {"alerts": len(keys), "duplicates": sum(c - 1 for c in got.values())}


def _monitor(tmp_path: Path, receiver: AlertReceiver) -> tuple[Path, dict]:
    root = tmp_path / "monitor"
    demo.write_reference_data(root / "reference-data", n=3_000)
    # No cooldown: a boundary after the alerts (NEEDS_ALERT) is reached only by a run with a new
    # alert, and the trial toggles the drift for it; within a cooldown the toggle alerts nothing.
    demo.write_config(root, dashboard=False, extra="\n[policy.default]\ncooldown = 0\n")
    env = {**os.environ, demo.WEBHOOK_ENV: receiver.url}
    from flows.reference import build_reference_version

    build_reference_version(load_config(root / "monitor.toml"))
    return root, env


def _where(root: Path, files: int) -> str:
    """Where a run was killed, from what it left: nothing, a journal, or its commit."""
    state = StateStore(root / "history" / "_state", root=root).load()
    if state.pending is not None:
        return "between plan and state commit"
    return "after the state commit" if len(state.ledger) == files else "before the plan"


def _plan(rng: random.Random) -> tuple[list[str], int]:
    """The kill points in a random order, and how many times each boundary is to be hit."""
    rounds = 2 if CAMPAIGN >= 3 * len(BOUNDARIES) else 1
    n = CAMPAIGN or len(BOUNDARIES) + 3
    if n <= rounds * len(BOUNDARIES):
        raise ValueError(f"DIVMON_FAULT_TRIALS={CAMPAIGN}: at least {len(BOUNDARIES) + 1}")
    plan = BOUNDARIES * rounds + ["uniform"] * (n - rounds * len(BOUNDARIES))
    rng.shuffle(plan)
    return plan, rounds


@pytest.mark.parametrize("part", range(PARTS), ids=[f"part{k + 1}of{PARTS}" for k in range(PARTS)])
def test_sigkill_trials_of_divmon_run(tmp_path: Path, prefect_api_url: str, part: int):
    """Each trial lands one new hourly file, starts ``divmon run``, SIGKILLs it (at a boundary,
    or at a uniformly random time within the duration of the previous clean run), checks that
    nothing of it is left running, runs ``divmon run`` again to completion and checks rows,
    windows, alerts and state exactly. A boundary a run did not reach is tried again.

    The plan (every boundary ``rounds`` times, the rest uniform) is dealt into ``PARTS`` parts,
    each with a monitor of its own: together they run every trial of the plan."""
    rng = random.Random(13)
    whole, _ = _plan(rng)
    plan = whole[part::PARTS]
    wanted = Counter(plan)  # this part's share of the plan: each must really be hit
    rng = random.Random(13 + part)
    extra_allowed = 6 // PARTS
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (hook / "divmon_kill_points.py").write_text(KILL_POINTS)
    with AlertReceiver() as receiver:
        root, env = _monitor(tmp_path, receiver)
        env.update(PREFECT_API_URL=prefect_api_url, PREFECT_HOME=str(tmp_path / "prefect-home"))
        cmd = _divmon_cmd(root)

        def clean_run() -> float:
            t0 = time.monotonic()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            assert "Traceback" not in done.stderr, done.stderr[-3000:]
            return time.monotonic() - t0

        drifted = False
        demo.write_stream_file(root / "landing", 0, n=ROWS, drifted=drifted)
        durations = [clean_run()]
        killed_at: Counter[str] = Counter()
        landed: Counter[str] = Counter()  # where the uniform kills fell
        trial = 0
        figures: dict = {}
        while trial < len(plan):
            point = plan[trial]
            trial += 1
            # a boundary after the alerts needs a new alert: drift starts or ends in this hour
            drifted = (not drifted) if point in NEEDS_ALERT else rng.random() < 0.5
            demo.write_stream_file(root / "landing", trial, n=ROWS, drifted=drifted)
            kill_env = dict(env)
            if point != "uniform":
                kill_env.update(
                    PYTHONPATH=os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")])),
                    DIVMON_KILL_AT=point,
                    DIVMON_KILL_ROOT=str(root),
                )
            child = subprocess.Popen(
                cmd,
                env=kill_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if point == "uniform":
                try:
                    child.wait(rng.uniform(0, durations[-1]))
                except subprocess.TimeoutExpired:
                    os.kill(child.pid, signal.SIGKILL)  # divmon run alone, not its group
            child.wait(300)
            killed = child.returncode == -signal.SIGKILL
            assert killed or child.returncode == 0, (point, child.returncode)
            killed_at[point if killed else f"{point} (finished first)"] += 1
            if not killed and point != "uniform" and extra_allowed:
                plan.append(point)  # the boundary was not reached in this run: try again
                extra_allowed -= 1
            assert _session_left(child.pid) == [], "a killed divmon run left processes behind"
            if point == "uniform" and killed:
                landed[_where(root, trial + 1)] += 1
            if point == "rename" and killed:
                assert list(root.rglob("*.tmp")), "the kill was not inside an atomic write"
            durations.append(clean_run())
            figures = _check_invariants(root, trial + 1, receiver)
        for point in BOUNDARIES:
            assert killed_at[point] == wanted[point], killed_at  # every boundary really hit
        assert killed_at["uniform"] >= wanted["uniform"] // 2, killed_at
    rows = sum(pq.read_metadata(p).num_rows for p in (root / "landing").glob("*.parquet"))
    report = {
        "part": f"{part + 1} of {PARTS}",
        "trials": len(plan),
        "rows": rows,
        "files": trial + 1,
        "kills": dict(killed_at),
        "uniform_kills_landed": dict(landed),
        "clean_run_s": [round(min(durations), 1), round(max(durations), 1)],
    }
    report.update(figures)
    print("SIGKILL trials of divmon run:", json.dumps(report, sort_keys=True))
    assert rows == (len(plan) + 1) * ROWS


def test_overlapping_runs_with_stale_locks(tmp_path: Path):
    """A killed run's lock file (its pid long gone) and two runs started together: exactly one
    runs, the other stops at once naming the holder; then a run killed while holding the lock
    does not block the next one. 2 rounds (5 in the campaign), invariants checked after each.
    Runs ``run_monitor`` in forked children: this is about the lock, not Prefect."""
    with AlertReceiver() as receiver:
        root, env = _monitor(tmp_path, receiver)
        lock = root / "history" / "_state" / "run.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        for round_ in range(5 if CAMPAIGN else 2):
            demo.write_stream_file(root / "landing", 2 * round_, n=ROWS, drifted=round_ >= 3)
            lock.write_text(json.dumps({"pid": 999_999_999, "owner": "killed run"}))
            a, b = _child(root, "none", env), _child(root, "none", env)
            outs = [(p.wait(300), p.output()) for p in (a, b)]
            done = [o for o in outs if o[0] == 0]
            refused = [o for o in outs if o[0] != 0]
            assert len(done) == 1 and len(refused) == 1, outs
            assert "another run holds the run lock" in refused[0][1]
            # the holder is killed mid-run; the next run is not blocked by anything it left
            demo.write_stream_file(root / "landing", 2 * round_ + 1, n=ROWS, drifted=False)
            killed = _child(root, "history", env)
            killed.wait(300)
            assert killed.returncode == -signal.SIGKILL
            clean = _child(root, "none", env)
            assert clean.wait(300) == 0, clean.output()
            _check_invariants(root, 2 * (round_ + 1), receiver)
