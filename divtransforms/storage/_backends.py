"""The object-store backends by scheme: one client per process and scheme, made on first use
(``google-cloud-storage`` and ``boto3`` are imported then, not when this module loads)."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from divtransforms.storage._base import Backend, StorageError
from divtransforms.storage._gcs import GcsBackend
from divtransforms.storage._s3 import S3Backend

#: The backend class of each scheme (``_base.SCHEMES``).
BACKENDS: dict[str, Callable[[], Backend]] = {"gs": GcsBackend, "s3": S3Backend}

_LOCK = threading.Lock()
_MADE: dict[tuple[int, str], Backend] = {}


def backend(scheme: str) -> Backend:
    """The process's backend for ``scheme`` (clients are made once per process: a forked child
    makes its own, never sharing the parent's connections)."""
    key = (os.getpid(), scheme)
    with _LOCK:
        found = _MADE.get(key)
        if found is None:
            make = BACKENDS.get(scheme)
            if make is None:  # location() rejects other schemes first
                raise StorageError(errno.EINVAL, f"unsupported storage scheme {scheme}://")
            found = _MADE[key] = make()
    return found


def reset() -> None:
    """Forget the clients (tests that change the endpoint or credentials)."""
    with _LOCK:
        _MADE.clear()
