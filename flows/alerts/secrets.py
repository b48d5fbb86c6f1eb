"""Secrets of alert targets and exports: an environment variable, or a Prefect Secret block.

Values are resolved when a message is sent and are never logged (``alerts.safe_error``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from prefect.blocks.core import Block

B = TypeVar("B", bound="Block")


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
        value = saved_block(secret_block, Secret).get()
    except ValueError as exc:
        raise SecretMissing(f"notify {target!r}: Secret block {secret_block!r} not found") from exc
    return str(value)


def saved_block(name: str | None, kind: type[B]) -> B:
    """The Prefect block saved as ``name``, which must be a ``kind``. Loaded from sync code, where
    ``kind.load`` returns the block itself (it has an async form too). A ValueError when there is
    no such block."""
    if not name:
        raise ValueError(f"no {kind.__name__} block named")
    block = kind.load(name)
    if not isinstance(block, kind):
        raise TypeError(f"block {name!r} is a {type(block).__name__}, not a {kind.__name__}")
    return block
