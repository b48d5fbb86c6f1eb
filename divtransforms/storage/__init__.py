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
"""

from __future__ import annotations

import errno
import glob as _glob
import io
import mimetypes
import os
import re
import shutil
import stat as _stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

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

Location = Path | str
SCHEMES = ("gs", "s3")


class StorageError(OSError):
    """A read or write failed (missing bucket, permission denied, full disk...): names the path."""

    def __str__(self) -> str:  # one line, without OSError's "[Errno n]" prefix
        return str(self.strerror if self.strerror is not None else super().__str__())


class StorageNotFound(StorageError, FileNotFoundError):
    """The file or object does not exist."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the target changed (or appeared) since it was read."""


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: ``if_version`` of an unconditional write.
ANY: Any = _Any()


@dataclass(frozen=True)
class FileInfo:
    """A file or object: its location, size, modification time and version token (the GCS
    generation, the S3 ETag, locally ``mtime_ns:size:inode``; pass it as ``if_version``)."""

    path: str
    size: int
    mtime_ns: int
    version: str


# --------------------------------------------------------------------------- locations


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an object-store URL (``scheme://``, other than ``file://``)."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def location(path: str | os.PathLike[str]) -> Location:
    """``path`` normalised: a URL stays a ``str`` (its scheme checked), anything else is a
    :class:`~pathlib.Path` (``file://`` prefix and ``~`` expanded)."""
    if isinstance(path, str):
        if path.startswith("file://"):
            return Path(path[len("file://") :])
        if "://" in path:
            scheme = path.split("://", 1)[0].lower()
            if scheme not in SCHEMES:
                raise StorageError(
                    errno.EINVAL,
                    f"{path}: unsupported storage scheme {scheme}:// (local paths, gs://, s3://)",
                )
            return path
    return Path(os.path.expanduser(os.fspath(path)))


def join(base: str | os.PathLike[str], *parts: str) -> Location:
    """``base`` / ``parts`` (``/`` between object-key segments)."""
    loc = location(base)
    if isinstance(loc, Path):
        return loc.joinpath(*parts)
    out = loc.rstrip("/")
    for part in parts:
        out += "/" + str(part).strip("/")
    return out


def parent(path: str | os.PathLike[str]) -> Location:
    loc = location(path)
    if isinstance(loc, Path):
        return loc.parent
    scheme, bucket, key = _split(loc)
    head = key.rstrip("/").rsplit("/", 1)[0] if "/" in key.rstrip("/") else ""
    return f"{scheme}://{bucket}/{head}".rstrip("/") if head else f"{scheme}://{bucket}"


def name(path: str | os.PathLike[str]) -> str:
    """The last path segment."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def _split(url: str) -> tuple[str, str, str]:
    scheme, rest = url.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(errno.EINVAL, f"{url}: no bucket in the URL")
    return scheme.lower(), bucket, key


def browser_url(path: str | os.PathLike[str]) -> str:
    """A URL a person opens: ``file://`` locally, the cloud console's object URL for buckets."""
    loc = location(path)
    if isinstance(loc, Path):
        return loc.resolve().as_uri()
    scheme, bucket, key = _split(loc)
    if scheme == "gs":
        return f"https://storage.cloud.google.com/{bucket}/{key}"
    return f"https://{bucket}.s3.amazonaws.com/{key}"


def _on_bucket(url: str):
    """(the backend of ``url``'s scheme, bucket, key)."""
    from divtransforms.storage._remote import backend

    scheme, bucket, key = _split(url)
    return backend(scheme), bucket, key


# --------------------------------------------------------------------------- reading


def stat(path: str | os.PathLike[str]) -> FileInfo:
    """Size, modification time and version of a file; :class:`StorageNotFound` if missing."""
    loc = location(path)
    if isinstance(loc, Path):
        try:
            return _local_info(str(loc), os.stat(loc))
        except OSError as exc:
            raise _local_error(exc, "cannot stat", loc) from None
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
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return next(iter(store.list(bucket, prefix, limit=1)), None) is not None


def walk(path: str | os.PathLike[str]) -> list[FileInfo]:
    """Every file under the directory (prefix) ``path``, recursively, sorted by path; a
    missing directory has none."""
    loc = location(path)
    if isinstance(loc, Path):
        out = []
        for root, _dirs, files in os.walk(loc):
            for f in files:
                p = os.path.join(root, f)
                try:
                    out.append(_local_info(p, os.stat(p)))
                except FileNotFoundError:  # removed while listing
                    continue
        return sorted(out, key=lambda i: i.path)
    store, bucket, key = _on_bucket(loc)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return sorted(store.list(bucket, prefix), key=lambda i: i.path)


def glob(pattern: str | os.PathLike[str]) -> list[FileInfo]:
    """Files matching ``pattern``, sorted by path: ``*`` and ``?`` within a segment, ``[..]``,
    ``**`` across segments (local paths: :func:`glob.glob` with ``recursive=True``). A pattern
    without wildcards matches the file itself."""
    loc = location(pattern)
    if isinstance(loc, Path):
        out = []
        for m in _glob.glob(str(loc), recursive=True):
            try:
                st = os.stat(m)
            except FileNotFoundError:  # removed between the glob and the stat
                continue
            if not _stat.S_ISDIR(st.st_mode):
                out.append(_local_info(m, st))
        return sorted(out, key=lambda i: i.path)
    store, bucket, key = _on_bucket(loc)
    if not _glob.has_magic(key):
        try:
            return [stat(loc)]
        except StorageNotFound:
            return []
    literal = re.split(r"[*?\[]", key, maxsplit=1)[0]
    regex = _translate(key)
    return sorted(
        (
            i
            for i in store.list(bucket, literal)
            if regex.fullmatch(i.path.split("/", 3)[3] if i.path.count("/") >= 3 else "")
        ),
        key=lambda i: i.path,
    )


def _translate(pattern: str) -> re.Pattern[str]:
    """A glob over object keys -> regex: ``**`` any characters, ``*`` and ``?`` not ``/``."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def open_read(path: str | os.PathLike[str]) -> BinaryIO:
    """A seekable binary file to read; a bucket object is read in ranges, all of one version
    (its replacement during the read is an error, not a mix)."""
    loc = location(path)
    if isinstance(loc, Path):
        try:
            return open(loc, "rb")
        except OSError as exc:
            raise _local_error(exc, "cannot read", loc) from None
    from divtransforms.storage._remote import RangeReader

    store, bucket, key = _on_bucket(loc)
    info = store.stat(bucket, key)
    return io.BufferedReader(RangeReader(store, bucket, key, info), buffer_size=1 << 21)


def read_versioned(path: str | os.PathLike[str]) -> tuple[bytes, FileInfo]:
    """The whole content and the :class:`FileInfo` of the version read (one request on a
    bucket); :class:`StorageNotFound` if missing."""
    loc = location(path)
    if isinstance(loc, Path):
        try:
            with open(loc, "rb") as fh:
                info = _local_info(str(loc), os.fstat(fh.fileno()))
                return fh.read(), info
        except OSError as exc:
            raise _local_error(exc, "cannot read", loc) from None
    store, bucket, key = _on_bucket(loc)
    return store.read(bucket, key)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    return read_versioned(path)[0]


# --------------------------------------------------------------------------- writing

#: Temp files of local atomic writes: ``.<name>.<8 random chars>.tmp`` next to the target
#: (``.<name>.<host>-<pid>.<8 random chars>.tmp`` since the writer is named in it).
TEMP_FILE_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_TEMP_HOLDER_RE = re.compile(r"\.([0-9a-f]{6})-(\d+)\.[A-Za-z0-9_]{8}\.tmp$")

Writer = Callable[[IO[bytes]], Any]


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
        return _write_local(loc, data, if_version)
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
        try:
            if if_version is not ANY and if_version is not None:
                _check_local_version(loc, if_version)
            loc.unlink()
        except FileNotFoundError:
            if not missing_ok:
                raise StorageNotFound(errno.ENOENT, f"{loc}: no such file") from None
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise _local_error(exc, "cannot remove", loc) from None
        return
    store, bucket, key = _on_bucket(loc)
    store.delete(bucket, key, None if if_version is ANY else if_version, missing_ok)


def remove_tree(path: str | os.PathLike[str]) -> int:
    """Delete a directory (every object under the prefix ``path/``); returns how many files."""
    loc = location(path)
    if isinstance(loc, Path):
        n = sum(len(files) for _r, _d, files in os.walk(loc))
        shutil.rmtree(loc, ignore_errors=True)
        return n
    files = walk(loc)
    for info in files:
        remove(info.path)
    return len(files)


def move(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Location:
    """Move a file; ``dst`` appears whole (local: a rename; buckets: an atomic write of the
    content, then ``src`` is deleted)."""
    s, d = location(src), location(dst)
    if isinstance(s, Path) and isinstance(d, Path):
        try:
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)
        except OSError as exc:
            raise _local_error(exc, f"cannot move {s} to", d) from None
        return d
    write_atomic(d, read_bytes(s))
    remove(s)
    return d


def makedirs(path: str | os.PathLike[str]) -> None:
    """Create a local directory (and parents); nothing to do on a bucket."""
    loc = location(path)
    if isinstance(loc, Path):
        try:
            loc.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _local_error(exc, "cannot create directory", loc) from None


def remove_stale_temp_files(
    directory: str | os.PathLike[str],
    *,
    recursive: bool = True,
    older_than: float | None = None,
) -> int:
    """Remove the temp files that a killed local :func:`write_atomic` left in ``directory``;
    returns how many. Buckets have none: an upload that dies leaves nothing.

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


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _temp_prefix(path: Path) -> str:
    """``.<name>.<host>-<pid>.``: the writer of a temp file, for :func:`remove_stale_temp_files`."""
    return f".{path.name}.{_host_tag()}-{os.getpid()}."


def _writer_dead(name: str) -> bool:
    """Does the temp file's name say its writer was a process of this host that is gone?"""
    m = _TEMP_HOLDER_RE.search(name)
    if m is None or m.group(1) != _host_tag():
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


# --------------------------------------------------------------------------- local files


def _local_info(path: str, st: os.stat_result) -> FileInfo:
    return FileInfo(path, st.st_size, st.st_mtime_ns, f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")


def _local_error(exc: OSError, what: str, path: Path | str) -> StorageError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    cls = StorageNotFound if isinstance(exc, FileNotFoundError) else StorageError
    return cls(exc.errno, f"{what} {path}: {reason}")


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


def _check_local_version(path: Path, if_version: str) -> None:
    try:
        current = _local_info(str(path), os.stat(path)).version
    except FileNotFoundError:
        raise PreconditionFailed(
            errno.ENOENT, f"{path} was removed since it was read (another writer committed first)"
        ) from None
    if current != if_version:
        raise PreconditionFailed(
            errno.EAGAIN, f"{path} changed since it was read (another writer committed first)"
        )


def _write_local(path: Path, data: bytes | Writer, if_version: str | None) -> str:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
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
                _check_local_version(path, if_version)
            os.replace(tmp, path)
        tmp = None
        return _local_info(str(path), os.stat(path)).version
    except OSError as exc:
        _discard(tmp)
        if isinstance(exc, StorageError):
            raise
        raise _local_error(exc, "cannot write", path) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass
