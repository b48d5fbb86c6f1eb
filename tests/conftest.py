"""Suite-wide settings. Area fixtures live in tests/<area>/conftest.py."""

import os

import pytest
from hypothesis import HealthCheck, settings

# CI runs the same examples every time (a red build must be reproducible); locally, explore.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


# Object stores on 127.0.0.1 (tests/storage_servers.py), one of each per session, started on
# first use: tests take a fresh bucket with ``gcs_server.bucket()`` / ``s3_server.bucket()``.
@pytest.fixture(scope="session")
def gcs_server():
    from tests.storage_servers import gcs_emulator

    with gcs_emulator() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    from tests.storage_servers import s3_server as start

    with start() as server:
        yield server


@pytest.fixture(scope="session", params=["gs", "s3"])
def object_store(request):
    """Each object store in turn (tests that must hold on both)."""
    return request.getfixturevalue("gcs_server" if request.param == "gs" else "s3_server")
