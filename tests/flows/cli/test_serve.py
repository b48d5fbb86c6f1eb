"""``divmon serve`` without PREFECT_API_URL: local server child, scheduled runs, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.demo import run as demo
from flows.monitor.history import read_history

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.beam]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _monitor_without_api(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A monitor with its reference and one landing file; an environment without a Prefect API."""
    from flows.config import load_config
    from flows.reference import build_reference_version

    demo.write_reference_data(tmp_path / "reference-data", n=3_000)
    config_path = demo.write_config(tmp_path, dashboard=False, notify_env=None)
    build_reference_version(load_config(config_path))
    demo.write_stream_file(tmp_path / "landing", 0, n=500, drifted=False)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return config_path, env


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    config_path, env = _monitor_without_api(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "serve",
            "--config",
            str(config_path),
            "--interval",
            "4",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    deadline = time.monotonic() + 150
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        m = re.search(r"local Prefect server at http://127\.0\.0\.1:(\d+)/api", line)
        if m:
            # Keep reading: a full pipe would block the serve process (and its runs).
            proc.lines = lines
            threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
            return proc, int(m.group(1))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        lines.append(proc.stdout.read())
    raise AssertionError(f"divmon serve (exit {proc.returncode}):\n" + "".join(lines[-30:]))


def test_serve_starts_a_local_server_runs_on_schedule_and_stops(tmp_path: Path):
    proc, port = _start_serve(tmp_path)
    try:
        # The first scheduled run checks the landing file (one window, two features). The
        # bound is generous: on a loaded 2-core machine a run's own process takes a minute.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if read_history(tmp_path / "history").num_rows >= 2:
                break
            time.sleep(1)
        rows = read_history(tmp_path / "history").num_rows
        assert rows == 2, "".join(proc.lines[-40:])
        assert _port_open(port)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert not _port_open(port), "the local Prefect server was left running"


def test_sigkilled_serve_leaves_no_prefect_server_behind(tmp_path: Path):
    proc, port = _start_serve(tmp_path)
    assert _port_open(port)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _port_open(port), "a SIGKILLed divmon serve left its Prefect server running"


# ---------------------------------------------------- divmon run: its temporary API server


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie holds no port, runs nothing


def _descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` (from /proc's parent links), with its command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
            children.setdefault(stat[1], []).append(int(entry))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as fh:
                    found[child] = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(child)
    return found


def _server_of(pid: int) -> tuple[int, int] | None:
    """(pid, port) of the Prefect API server under ``pid`` once it answers /api/health."""
    for child, cmdline in _descendants(pid).items():
        m = re.search(r"uvicorn .*--port (\d+)", cmdline)
        if m and _alive(child):
            try:
                import urllib.request

                url = f"http://127.0.0.1:{m.group(1)}/api/health"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return child, int(m.group(1))
            except OSError:
                pass
    return None


def test_sigkilled_divmon_run_leaves_no_prefect_server_behind(tmp_path: Path):
    """Without PREFECT_API_URL, ``divmon run`` runs on a temporary API server (a child process).
    SIGKILL ``divmon run`` alone (not its group) once that server is healthy: every process it
    had started must be gone within 30 s (Prefect's own ephemeral server stayed, orphaned). Then a
    run that is not killed checks the data, exits 0 and leaves no process behind either."""
    config_path, env = _monitor_without_api(tmp_path)
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(config_path)]
    with open(tmp_path / "killed.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 150
        while (server := _server_of(proc.pid)) is None and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "killed.out").read_text()[-2000:]
            time.sleep(0.2)
        assert server is not None, "divmon run never had a healthy API server"
        started = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # divmon run alone, no chance to clean up
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {p: c for p, c in started.items() if _alive(p)}
        assert not left, f"a SIGKILLed divmon run left these running: {left}"
        assert not _port_open(server[1])
    finally:
        for p in started:
            if _alive(p):
                os.kill(p, signal.SIGKILL)

    with open(tmp_path / "clean.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
    seen: dict[int, set[str]] = {}  # every command line a descendant had (fork, exec, zombie)
    while proc.poll() is None:
        for pid, cmdline in _descendants(proc.pid).items():
            seen.setdefault(pid, set()).add(cmdline)
        time.sleep(0.2)
    try:
        assert proc.returncode == 0, (tmp_path / "clean.out").read_text()[-2000:]
        assert any("uvicorn" in c for cs in seen.values() for c in cs), seen  # its own server
        assert read_history(tmp_path / "history").num_rows == 2
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in seen if _alive(p)], "divmon run left a process running"
    finally:
        for p in seen:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
