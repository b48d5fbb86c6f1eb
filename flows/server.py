"""A local Prefect server as a child process, for ``divmon serve`` without ``PREFECT_API_URL``.

Prefect cannot schedule runs on the ephemeral API, so ``serve`` starts
``prefect server start --host 127.0.0.1 --port <free port>``, waits for ``/api/health``, points
this process at it, and stops it (SIGTERM to its process group, then SIGKILL after a grace period)
on exit. If this process dies without stopping it (SIGKILL), the kernel sends the server SIGTERM
(Linux ``PR_SET_PDEATHSIG``), so no orphaned server is left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(api_url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll ``<api_url>/health`` until it answers 200; returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with status {proc.returncode} before it became healthy"
            )
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout:.0f} s")
        time.sleep(0.5)


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("prefect server did not stop within %.0f s; killing it", grace)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: deliver SIGTERM to this child when the process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


@contextmanager
def local_server(*, timeout: float = 120.0, log_path: Path | None = None) -> Iterator[str]:
    """Start a local Prefect server child; yields its API URL; stops it on exit."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log.info("starting a local Prefect server: %s", " ".join(cmd[2:]))
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    try:
        waited = wait_healthy(api_url, timeout, proc)
        log.info("local Prefect server healthy at %s after %.1f s", api_url, waited)
        yield api_url
    finally:
        stop(proc)
        if log_path:
            out.close()
        log.info("local Prefect server stopped")
