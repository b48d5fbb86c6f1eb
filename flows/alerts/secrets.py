"""Secrets of alert targets and exports: an environment variable, or a Prefect Secret block.

Values are resolved when a message is sent and are never logged (``alerts.safe_error``).
"""

from __future__ import annotations

import os


class SecretMissing(ValueError):
    """A configured secret (environment variable or Secret block) is not available."""


def resolve_secret(target: str, env: str | None, secret_block: str | None) -> str:
    """The value of ``env`` when it is named, else of the Secret block ``secret_block``."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"notify {target!r}: environment variable {env} is not set")
        return value
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(secret_block).get()
    except ValueError as exc:
        raise SecretMissing(f"notify {target!r}: Secret block {secret_block!r} not found") from exc
    return str(value)
