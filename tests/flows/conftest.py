"""Flow tests: one session-wide Prefect test harness on a temporary PREFECT_HOME (SQLite)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect: an isolated home, the measured startup timeout, no telemetry.
_HOME = tempfile.mkdtemp(prefix="divtransforms-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness) -> str:
    """The harness's API server, for a command in a process of its own (``PREFECT_API_URL``):
    the same server (Prefect's ephemeral API, as ``divmon run`` starts for itself), so a test
    that is not about the server's start pays no start of its own."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return url


@pytest.fixture()
def monitor_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A monitor directory: reference data, config (webhook target via env), reference built."""
    from flows.config import load_config
    from flows.demo import run as demo
    from flows.reference import build_reference_version

    demo.write_reference_data(tmp_path / "reference-data", n=5_000)
    monkeypatch.setenv(demo.WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    config_path = demo.write_config(tmp_path, dashboard=False)
    build_reference_version(load_config(config_path))
    return tmp_path
