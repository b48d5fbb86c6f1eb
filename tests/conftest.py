"""Suite-wide settings. Area fixtures live in tests/<area>/conftest.py."""

import os

from hypothesis import HealthCheck, settings

# CI runs the same examples every time (a red build must be reproducible); locally, explore.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")
