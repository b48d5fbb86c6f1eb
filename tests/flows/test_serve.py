"""``divmon serve`` without PREFECT_API_URL: local server child, scheduled runs, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import demo
from flows.history import read_history

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.beam]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    from flows.config import load_config
    from flows.reference import build_reference_version

    demo.write_reference_data(tmp_path / "reference-data", n=3_000)
    config_path = demo.write_config(tmp_path, dashboard=False, notify_env=None)
    build_reference_version(load_config(config_path))
    demo.write_stream_file(tmp_path / "landing", 0, n=500, drifted=False)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
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
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if read_history(tmp_path / "history").num_rows >= 2:
                break
            time.sleep(1)
        assert read_history(tmp_path / "history").num_rows == 2
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
