"""Local files: the local half of every operation of :mod:`divtransforms.storage` (which picks
this module for a :class:`~pathlib.Path` and a backend for a bucket URL). Writes go to a temp file
beside the target, fsynced, then renamed over it; a killed writer's temp file names its host and
pid so that :func:`remove_stale_temp_files` can tell garbage from a write in flight."""

from __future__ import annotations

import errno
import glob as _glob
import os
import re
import shutil
import stat as _stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from divtransforms.storage._base import (
    ANY,
    FileInfo,
    PreconditionFailed,
    StorageError,
    StorageNotFound,
    Writer,
)
from divtransforms.storage._paths import location

#: Temp files of local atomic writes: ``.<name>.<8 random chars>.tmp`` next to the target
#: (``.<name>.<host>-<pid>.<8 random chars>.tmp`` since the writer is named in it).
TEMP_FILE_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_TEMP_HOLDER_RE = re.compile(r"\.([0-9a-f]{6})-(\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def info(path: str, st: os.stat_result) -> FileInfo:
    return FileInfo(path, st.st_size, st.st_mtime_ns, f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")


def error(exc: OSError, what: str, path: Path | str) -> StorageError:
    """``exc`` as a one-line :class:`StorageError` (:class:`StorageNotFound` for a missing
    file): ``<what> <path>: <reason>``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    cls = StorageNotFound if isinstance(exc, FileNotFoundError) else StorageError
    return cls(exc.errno, f"{what} {path}: {reason}")


# --------------------------------------------------------------------------- reading


def stat(path: Path) -> FileInfo:
    try:
        return info(str(path), os.stat(path))
    except OSError as exc:
        raise error(exc, "cannot stat", path) from None


def walk(path: Path) -> list[FileInfo]:
    out = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            try:
                out.append(info(p, os.stat(p)))
            except FileNotFoundError:  # removed while listing
                continue
    return sorted(out, key=lambda i: i.path)


def glob(pattern: Path) -> list[FileInfo]:
    out = []
    for m in _glob.glob(str(pattern), recursive=True):
        try:
            st = os.stat(m)
        except FileNotFoundError:  # removed between the glob and the stat
            continue
        if not _stat.S_ISDIR(st.st_mode):
            out.append(info(m, st))
    return sorted(out, key=lambda i: i.path)


def open_read(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise error(exc, "cannot read", path) from None


def read_versioned(path: Path) -> tuple[bytes, FileInfo]:
    try:
        with open(path, "rb") as fh:
            found = info(str(path), os.fstat(fh.fileno()))
            return fh.read(), found
    except OSError as exc:
        raise error(exc, "cannot read", path) from None


# --------------------------------------------------------------------------- writing


def write(path: Path, data: bytes | Writer, if_version: str | None) -> str:
    """:func:`~divtransforms.storage.write_atomic` of a local file: returns the new version."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            if isinstance(data, bytes | bytearray | memoryview):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if if_version is None:  # create only: a hard link fails if the target exists
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PreconditionFailed(
                    errno.EEXIST, f"{path} already exists (another writer?)"
                ) from None
            os.unlink(tmp)
        else:
            if if_version is not ANY:
                _check_version(path, if_version)
            os.replace(tmp, path)
        tmp = None
        return info(str(path), os.stat(path)).version
    except OSError as exc:
        _discard(tmp)
        if isinstance(exc, StorageError):
            raise
        raise error(exc, "cannot write", path) from exc
    except BaseException:
        _discard(tmp)
        raise


def remove(path: Path, missing_ok: bool, if_version: str | None) -> None:
    try:
        if if_version is not ANY and if_version is not None:
            _check_version(path, if_version)
        path.unlink()
    except FileNotFoundError:
        if not missing_ok:
            raise StorageNotFound(errno.ENOENT, f"{path}: no such file") from None
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise error(exc, "cannot remove", path) from None


def remove_tree(path: Path) -> int:
    n = sum(len(files) for _r, _d, files in os.walk(path))
    shutil.rmtree(path, ignore_errors=True)
    return n


def move(src: Path, dst: Path) -> Path:
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    except OSError as exc:
        raise error(exc, f"cannot move {src} to", dst) from None
    return dst


def makedirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(exc, "cannot create directory", path) from None


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``), else by a set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_version(path: Path, if_version: str) -> None:
    try:
        current = info(str(path), os.stat(path)).version
    except FileNotFoundError:
        raise PreconditionFailed(
            errno.ENOENT, f"{path} was removed since it was read (another writer committed first)"
        ) from None
    if current != if_version:
        raise PreconditionFailed(
            errno.EAGAIN, f"{path} changed since it was read (another writer committed first)"
        )


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


# --------------------------------------------------------------------------- temp files


def remove_stale_temp_files(
    directory: str | os.PathLike[str],
    *,
    recursive: bool = True,
    older_than: float | None = None,
) -> int:
    """Remove the temp files that a killed local :func:`~divtransforms.storage.write_atomic`
    left in ``directory``; returns how many. Buckets have none: an upload that dies leaves
    nothing.

    ``older_than`` (seconds): remove only a temp file whose writer is known dead (the name
    carries its host and pid, and that process no longer exists on this host) or, when the
    writer is unknown or alive, one not modified for that long; a write still in flight is left
    alone. ``None`` removes every temp file: only for a caller that knows no writer is active."""
    loc = location(directory)
    if not isinstance(loc, Path) or not loc.is_dir():
        return 0
    removed = 0
    now = time.time()
    for p in loc.rglob(".*.tmp") if recursive else loc.glob(".*.tmp"):
        if not (TEMP_FILE_RE.match(p.name) and p.is_file()):
            continue
        try:
            if older_than is not None and not _writer_dead(p.name):
                if now - p.stat().st_mtime < older_than:
                    continue
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(path: Path) -> str:
    """``.<name>.<host>-<pid>.``: the writer of a temp file, for :func:`remove_stale_temp_files`."""
    return f".{path.name}.{host_tag()}-{os.getpid()}."


def _writer_dead(name: str) -> bool:
    """Does the temp file's name say its writer was a process of this host that is gone?"""
    m = _TEMP_HOLDER_RE.search(name)
    if m is None or m.group(1) != host_tag():
        return False
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet is dead too (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
