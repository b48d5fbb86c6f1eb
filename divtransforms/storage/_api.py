"""The functions of :mod:`divtransforms.storage`: each normalises its path and hands it to
``_local`` (a local path) or to the backend of the URL's scheme (``_backends``)."""

from __future__ import annotations

import glob as _glob
import io
import mimetypes
import os
import re
from pathlib import Path
from typing import BinaryIO

from divtransforms.storage import _local
from divtransforms.storage._backends import backend
from divtransforms.storage._base import (
    ANY,
    Backend,
    FileInfo,
    Location,
    StorageNotFound,
    Writer,
)
from divtransforms.storage._paths import key_pattern, location, split_url
from divtransforms.storage._remote import RangeReader


def _on_bucket(url: str) -> tuple[Backend, str, str]:
    """(the backend of ``url``'s scheme, bucket, key)."""
    scheme, bucket, key = split_url(url)
    return backend(scheme), bucket, key


def _prefix(key: str) -> str:
    """The listing prefix of the "directory" ``key``."""
    return key.rstrip("/") + "/" if key.strip("/") else ""


# --------------------------------------------------------------------------- reading


def stat(path: str | os.PathLike[str]) -> FileInfo:
    """Size, modification time and version of a file; :class:`StorageNotFound` if missing."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.stat(loc)
    store, bucket, key = _on_bucket(loc)
    return store.stat(bucket, key)


def fingerprint(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(size, mtime_ns)``: what the monitor's ledger compares to see a file change."""
    info = stat(path)
    return info.size, info.mtime_ns


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an existing file (an object on a bucket)."""
    loc = location(path)
    if isinstance(loc, Path):
        return loc.is_file()
    try:
        stat(loc)
    except StorageNotFound:
        return False
    return True


def isdir(path: str | os.PathLike[str]) -> bool:
    """A local directory, or a bucket prefix with at least one object under ``path/``."""
    loc = location(path)
    if isinstance(loc, Path):
        return loc.is_dir()
    store, bucket, key = _on_bucket(loc)
    return next(iter(store.list(bucket, _prefix(key), limit=1)), None) is not None


def walk(path: str | os.PathLike[str]) -> list[FileInfo]:
    """Every file under the directory (prefix) ``path``, recursively, sorted by path; a
    missing directory has none."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.walk(loc)
    store, bucket, key = _on_bucket(loc)
    return sorted(store.list(bucket, _prefix(key)), key=lambda i: i.path)


def glob(pattern: str | os.PathLike[str]) -> list[FileInfo]:
    """Files matching ``pattern``, sorted by path: ``*`` and ``?`` within a segment, ``[..]``,
    ``**`` across segments (local paths: :func:`glob.glob` with ``recursive=True``). A pattern
    without wildcards matches the file itself."""
    loc = location(pattern)
    if isinstance(loc, Path):
        return _local.glob(loc)
    store, bucket, key = _on_bucket(loc)
    if not _glob.has_magic(key):
        try:
            return [stat(loc)]
        except StorageNotFound:
            return []
    literal = re.split(r"[*?\[]", key, maxsplit=1)[0]
    regex = key_pattern(key)
    return sorted(
        (
            i
            for i in store.list(bucket, literal)
            if regex.fullmatch(i.path.split("/", 3)[3] if i.path.count("/") >= 3 else "")
        ),
        key=lambda i: i.path,
    )


def open_read(path: str | os.PathLike[str]) -> BinaryIO:
    """A seekable binary file to read; a bucket object is read in ranges, all of one version
    (its replacement during the read is an error, not a mix)."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.open_read(loc)
    store, bucket, key = _on_bucket(loc)
    info = store.stat(bucket, key)
    return io.BufferedReader(RangeReader(store, bucket, key, info), buffer_size=1 << 21)


def read_versioned(path: str | os.PathLike[str]) -> tuple[bytes, FileInfo]:
    """The whole content and the :class:`FileInfo` of the version read (one request on a
    bucket); :class:`StorageNotFound` if missing."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.read_versioned(loc)
    store, bucket, key = _on_bucket(loc)
    return store.read(bucket, key)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    return read_versioned(path)[0]


# --------------------------------------------------------------------------- writing


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | Writer,
    *,
    if_version: str | None = ANY,
    content_type: str | None = None,
) -> str:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically:
    readers see the old content or the new, never a part. Returns the new version.

    ``if_version``: ``ANY`` (default) writes unconditionally; ``None`` only creates (the
    target must not exist); a version token replaces only that version. A lost condition raises
    :class:`PreconditionFailed`. On buckets the condition is checked by the store in the same
    request (GCS ``ifGenerationMatch``, S3 ``If-Match`` / ``If-None-Match``); locally it is
    checked just before the rename, which is atomic only among writers that hold the run lock.
    Locally the content goes to a temp file beside the target, fsynced, then renamed over it
    with the mode a plain ``open()`` gives (0666 minus the umask)."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.write(loc, data, if_version)
    if not isinstance(data, bytes | bytearray | memoryview):
        buf = io.BytesIO()
        data(buf)
        data = buf.getvalue()
    store, bucket, key = _on_bucket(loc)
    ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
    return store.write(bucket, key, bytes(data), if_version, ctype)


def remove(
    path: str | os.PathLike[str], *, missing_ok: bool = True, if_version: str | None = ANY
) -> None:
    """Delete a file (object); ``if_version`` only deletes that version."""
    loc = location(path)
    if isinstance(loc, Path):
        _local.remove(loc, missing_ok, if_version)
        return
    store, bucket, key = _on_bucket(loc)
    store.delete(bucket, key, None if if_version is ANY else if_version, missing_ok)


def remove_tree(path: str | os.PathLike[str]) -> int:
    """Delete a directory (every object under the prefix ``path/``); returns how many files."""
    loc = location(path)
    if isinstance(loc, Path):
        return _local.remove_tree(loc)
    files = walk(loc)
    for info in files:
        remove(info.path)
    return len(files)


def move(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Location:
    """Move a file; ``dst`` appears whole (local: a rename; buckets: an atomic write of the
    content, then ``src`` is deleted)."""
    s, d = location(src), location(dst)
    if isinstance(s, Path) and isinstance(d, Path):
        return _local.move(s, d)
    write_atomic(d, read_bytes(s))
    remove(s)
    return d


def makedirs(path: str | os.PathLike[str]) -> None:
    """Create a local directory (and parents); nothing to do on a bucket."""
    loc = location(path)
    if isinstance(loc, Path):
        _local.makedirs(loc)
