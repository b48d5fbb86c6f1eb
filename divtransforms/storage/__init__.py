"""One filesystem layer for every path divtransforms reads or writes: local paths, ``gs://`` and
``s3://`` (docs/storage.md).

A *location* is a local path (given as ``str`` or :class:`os.PathLike`; returned as
:class:`pathlib.Path`) or an object-store URL (``gs://bucket/key``, ``s3://bucket/key``; returned
as ``str``). Local paths keep today's fast paths (``open``, ``glob``, temp file + rename);
buckets go through the providers' own clients, ``google-cloud-storage`` and ``boto3``, imported
on first use, because only they expose the preconditions that atomic commits and the run lease
need (a generation match on GCS, ``If-Match`` / ``If-None-Match`` on S3).

Every object write is atomic (an upload is all or nothing). :func:`write_atomic` is the one
commit: with ``if_version`` it succeeds only if the target still is the version read before
(``None``: only if it does not exist), else :class:`PreconditionFailed`. Errors are
:class:`StorageError` (an ``OSError``) with a one-line message naming the location; credentials
never appear in them.
Examples: docs/storage.md.

The package is its modules' public names: ``_api`` (the functions: each picks ``_local`` for a
local path or the scheme's backend), ``_base`` (the types and errors, the backend interface),
``_paths`` (locations), ``_local`` (local files), ``_backends`` (one backend per scheme:
``_gcs``, ``_s3``, which share ``_remote``).
"""

from __future__ import annotations

from divtransforms.storage._api import (
    exists,
    fingerprint,
    glob,
    isdir,
    makedirs,
    move,
    open_read,
    read_bytes,
    read_versioned,
    remove,
    remove_tree,
    stat,
    walk,
    write_atomic,
)
from divtransforms.storage._base import (
    ANY,
    FileInfo,
    Location,
    PreconditionFailed,
    StorageError,
    StorageNotFound,
)
from divtransforms.storage._local import TEMP_FILE_RE, remove_stale_temp_files
from divtransforms.storage._paths import browser_url, is_remote, join, location, name, parent

__all__ = [
    "ANY",
    "TEMP_FILE_RE",
    "FileInfo",
    "Location",
    "PreconditionFailed",
    "StorageError",
    "StorageNotFound",
    "browser_url",
    "exists",
    "fingerprint",
    "glob",
    "is_remote",
    "isdir",
    "join",
    "location",
    "makedirs",
    "move",
    "name",
    "open_read",
    "parent",
    "read_bytes",
    "read_versioned",
    "remove",
    "remove_stale_temp_files",
    "remove_tree",
    "stat",
    "walk",
    "write_atomic",
]
