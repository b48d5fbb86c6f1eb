"""What the object-store backends share: the ranged reader, the check that a write reported as
lost did in fact land, and the judgement of a failed delete. (The backends themselves: ``_gcs``,
``_s3``; the registry that picks one per scheme: ``_backends``.)"""

from __future__ import annotations

import calendar
import errno
import io
from collections.abc import Callable
from datetime import datetime

from divtransforms.storage._base import Backend, FileInfo, PreconditionFailed, StorageError


def mtime_ns(updated: datetime | None) -> int:
    """Nanoseconds since the epoch of a store's update time, computed as Beam's FileSystems did
    (``round(seconds * 1e9)``) so that ledgers written with Beam's listing stay valid."""
    if updated is None:
        return 0
    seconds = calendar.timegm(updated.utctimetuple()) + updated.microsecond / 1e6
    return round(seconds * 1e9)


def url(scheme: str, bucket: str, key: str) -> str:
    return f"{scheme}://{bucket}/{key}"


def refused_write(store: Backend, bucket: str, key: str, data: bytes, if_version: object) -> str:
    """A conditional write was refused: the current version if the object holds exactly
    ``data`` (our own write landed, its answer was lost and the client's retry was refused;
    commit documents name their run or token, so equal bytes mean our write), else
    :class:`PreconditionFailed`."""
    try:
        current, info = store.read(bucket, key)
    except StorageError:
        current, info = None, None
    if info is not None and current == data:
        return info.version
    raise precondition_failed(url(store.scheme, bucket, key), if_version)


def precondition_failed(path: str, if_version: object) -> PreconditionFailed:
    if if_version is None:
        return PreconditionFailed(errno.EEXIST, f"{path} already exists (another writer?)")
    return PreconditionFailed(
        errno.EAGAIN, f"{path} changed since it was read (another writer committed first)"
    )


def delete_failed(
    exc: BaseException,
    status: int | None,
    path: str,
    if_version: object,
    missing_ok: bool,
    error: Callable[[BaseException, str, str], StorageError],
) -> None:
    """A failed delete, judged the same on every store (call it in the ``except`` block): a
    missing object is fine when ``missing_ok``, a refused condition is a lost update, anything
    else is ``error``'s one line naming the path."""
    if status == 404 and missing_ok:
        return
    if status == 412:
        raise precondition_failed(path, if_version) from None
    raise error(exc, "cannot delete", path) from None


def replaced_while_reading(path: str) -> PreconditionFailed:
    return PreconditionFailed(errno.EAGAIN, f"{path} was replaced while it was being read")


class RangeReader(io.RawIOBase):
    """A seekable reader of one object version, in ranged requests (wrap it in a
    ``BufferedReader``). A replaced object makes the next read fail naming the path."""

    def __init__(self, store: Backend, bucket: str, key: str, info: FileInfo):
        self._store, self._bucket, self._key, self._info = store, bucket, key, info
        self._pos = 0
        self.name = info.path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._info.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError(f"{self.name}: negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self._info.size - self._pos)
        if want <= 0:
            return 0
        data = self._store.read_range(
            self._bucket, self._key, self._pos, self._pos + want, self._info.version
        )
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def readall(self) -> bytes:
        if self._pos >= self._info.size:
            return b""
        data = self._store.read_range(
            self._bucket, self._key, self._pos, self._info.size, self._info.version
        )
        self._pos += len(data)
        return data

    @property
    def size(self) -> int:
        return self._info.size
