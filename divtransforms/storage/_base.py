"""The storage layer's vocabulary: locations, errors, the ``ANY`` sentinel, :class:`FileInfo`,
and the :class:`Backend` interface an object store implements (``_gcs``, ``_s3``). It imports
no other module of the package, so every one of them can import it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

Location = Path | str
SCHEMES = ("gs", "s3")

#: What :func:`~divtransforms.storage.write_atomic` takes besides bytes: a function writing the
#: content to a binary file.
Writer = Callable[[IO[bytes]], Any]


#: The public classes below are shown (tracebacks, reprs, pickles) as the package's, which
#: exports them: ``divtransforms.storage.PreconditionFailed``.
_PACKAGE = "divtransforms.storage"


class StorageError(OSError):
    """A read or write failed (missing bucket, permission denied, full disk...): names the path."""

    __module__ = _PACKAGE

    def __str__(self) -> str:  # one line, without OSError's "[Errno n]" prefix
        return str(self.strerror if self.strerror is not None else super().__str__())


class StorageNotFound(StorageError, FileNotFoundError):
    """The file or object does not exist."""

    __module__ = _PACKAGE


class PreconditionFailed(StorageError):
    """A conditional write lost: the target changed (or appeared) since it was read."""

    __module__ = _PACKAGE


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: ``if_version`` of an unconditional write.
ANY: Any = _Any()


@dataclass(frozen=True)
class FileInfo:
    """A file or object: its location, size, modification time and version token (the GCS
    generation, the S3 ETag, locally ``mtime_ns:size:inode``; pass it as ``if_version``)."""

    __module__ = _PACKAGE

    path: str
    size: int
    mtime_ns: int
    version: str


class Backend(Protocol):
    """An object store. ``if_version`` None: the object must not exist; a token: it must be
    that version; the ``ANY`` sentinel is mapped to "no condition" by the caller of
    :meth:`delete`, and passed on to :meth:`write`."""

    scheme: str

    def stat(self, bucket: str, key: str) -> FileInfo: ...

    def list(self, bucket: str, prefix: str, limit: int | None = None) -> Iterator[FileInfo]: ...

    def read(self, bucket: str, key: str) -> tuple[bytes, FileInfo]: ...

    def read_range(self, bucket: str, key: str, start: int, end: int, version: str) -> bytes: ...

    def write(
        self, bucket: str, key: str, data: bytes, if_version: object, content_type: str
    ) -> str: ...

    def delete(self, bucket: str, key: str, if_version: str | None, missing_ok: bool) -> None: ...
