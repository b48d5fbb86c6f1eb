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


# Data of the Beam and pipeline tests (tests/beam, tests/pipelines; helpers in tests/helpers.py).
@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(20261125)


@pytest.fixture
def reference_table(rng):
    from tests.helpers import make_reference

    return make_reference(rng)


@pytest.fixture
def profile(reference_table):
    from divtransforms import ReferenceProfile

    return ReferenceProfile.build(reference_table)


@pytest.fixture
def anonymous_gcp(monkeypatch):
    """Beam's Google credentials are "none found" at once (anonymous clients, as with
    --no_auth), instead of after Beam's ~25 s of retries looking for them; for tests that talk
    to the storage emulator (tests/pipelines, tests/flows)."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
