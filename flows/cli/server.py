"""A local Prefect server as a child process that dies with this one.

Two uses, when no Prefect API is configured (``PREFECT_API_URL`` in the environment or the
Prefect profile):

- ``divmon serve``: Prefect cannot schedule runs on the ephemeral API, so it starts
  ``prefect server start --host 127.0.0.1 --port <free port>`` (with its services).
- ``divmon run`` and every other command that talks to the API (``prefect_api()``): Prefect's
  own ephemeral API is a uvicorn process that a SIGKILL of ours leaves running, orphaned, with
  its port and its SQLite database open. ``prefect_api()`` starts the same server (the command
  Prefect's ``SubprocessASGIServer`` runs, ephemeral services only, no UI) itself and points
  Prefect at it, so Prefect never starts its own.

Either way: wait for ``/api/health``, stop it on exit (SIGTERM to its process group, then SIGKILL
after a grace period), and if this process dies without stopping it (SIGKILL), the kernel sends
the server SIGTERM (Linux ``PR_SET_PDEATHSIG``), so no orphaned server is left behind.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def prefect_defaults() -> None:
    """Settings the project uses for its own runs, unless the user set them (see docs/flows.md).

    Also keeps httpx's INFO lines (one per request, with the full URL) out of the CLI's log:
    notification URLs are secrets.
    """
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "PREFECT_HOME" not in os.environ and not (Path.home() / ".prefect").exists():
        os.environ["PREFECT_HOME"] = str(Path.cwd() / ".prefect")


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
        time.sleep(0.1)


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


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` (Linux) asking the kernel to SIGTERM the child when this process dies.

    ``prctl`` is looked up here, in the parent: the hook runs between fork and exec and must not
    import or allocate much. PR_SET_PDEATHSIG follows the thread that forks, so call this from
    the main thread. If we died before the child's ``prctl``, the child is already orphaned and
    exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def hook() -> None:
        prctl(1, sigterm, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _server_command(port: int, ephemeral: bool) -> tuple[list[str], dict[str, str]]:
    if ephemeral:
        # What Prefect runs for its ephemeral API (prefect.server.api.server.
        # SubprocessASGIServer): the API only, no UI, the services of an ephemeral server.
        cmd = [sys.executable, "-m", "uvicorn", "--factory"]
        cmd += ["prefect.server.api.server:create_app", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--log-level", "error", "--lifespan", "on"]
        env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
        return cmd, {**env, "PREFECT__SERVER_FINAL": "1"}
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    return [*cmd, "--port", str(port)], {}


@contextmanager
def local_server(
    *, timeout: float = 120.0, log_path: Path | None = None, ephemeral: bool = False
) -> Iterator[str]:
    """Start a local Prefect server child; yields its API URL; stops it on exit.

    ``ephemeral``: the API alone, as Prefect's ephemeral mode runs it (for one command), instead
    of ``prefect server start`` with its scheduler and other services (for ``serve``).
    """
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    cmd, server_env = _server_command(port, ephemeral)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.update(server_env)
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    log.info("starting a local Prefect server: %s", " ".join(cmd[2:]))
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
            preexec_fn=_die_with_parent_hook(),
        )
    finally:
        if not isinstance(out, int):  # (DEVNULL is an int)
            out.close()  # the child has its own descriptor
    try:
        try:
            wait_healthy(api_url, timeout, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}" + (f" (its log: {log_path})" if log_path else "")) from None
        log.info("local Prefect server healthy at %s after %.1f s", api_url, time.monotonic() - t0)
        yield api_url
    finally:
        stop(proc)
        log.info("local Prefect server stopped")


@contextmanager
def prefect_api(*, timeout: float | None = None) -> Iterator[str | None]:
    """The Prefect API for one command: the configured one (``PREFECT_API_URL``, from the
    environment or the active Prefect profile), else a temporary API server child of this
    process, in place of Prefect's ephemeral one, that dies with it (module docstring).

    Yields the URL (``None`` when ephemeral mode is disabled and no URL is set: Prefect then
    reports that itself). The server's output goes to ``$PREFECT_HOME/ephemeral-server.log``.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    configured = PREFECT_API_URL.value()
    if configured or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        yield configured
        return
    if timeout is None:
        timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    log_path = Path(PREFECT_HOME.value()) / "ephemeral-server.log"
    with local_server(timeout=timeout, log_path=log_path, ephemeral=True) as api_url:
        os.environ["PREFECT_API_URL"] = api_url  # for any process this command starts
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                try:
                    yield api_url
                finally:
                    _drain_prefect_workers()
        finally:
            os.environ.pop("PREFECT_API_URL", None)


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send the flow run's queued logs and events while the server is still up (as Prefect's
    test harness does before it stops its server); otherwise they are retried at exit against
    a closed port ("Error logging to API"), which also delays the exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception as exc:  # best effort: the command's result does not depend on it
            log.debug("could not drain %s: %s", worker.__name__, exc)
