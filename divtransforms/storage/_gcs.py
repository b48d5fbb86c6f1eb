"""``gs://`` through ``google-cloud-storage`` (installed with ``apache-beam[gcp]``, the ``gcp``
extra, and in Dataflow's SDK image). Credentials are Application Default Credentials; the
``STORAGE_EMULATOR_HOST`` variable points the client at an emulator (anonymous, as the tests
run it). Preconditions are ``ifGenerationMatch`` (0: the object must not exist)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

from divtransforms.storage._base import ANY, FileInfo, StorageError, StorageNotFound
from divtransforms.storage._remote import (
    delete_failed,
    mtime_ns,
    refused_write,
    replaced_while_reading,
    url,
)

#: Seconds one request may take (connect, read); the client retries transient errors.
TIMEOUT = (20, 120)


class GcsBackend:
    scheme = "gs"

    def __init__(self) -> None:
        try:
            from google.cloud import storage
        except ImportError:
            raise StorageError(
                errno.ENOSYS,
                "gs:// paths need google-cloud-storage: pip install 'divtransforms[gcp]'",
            ) from None
        self._storage = storage
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = self._storage.Client()
            except Exception as exc:  # no credentials / project: say so in one line
                raise _error(exc, "cannot connect to Google Cloud Storage for", "gs://") from None
        return self._client

    def _blob(self, bucket: str, key: str):
        return self.client.bucket(bucket).blob(key)

    def _info(self, bucket: str, blob) -> FileInfo:
        return FileInfo(
            url("gs", bucket, blob.name),
            int(blob.size or 0),
            mtime_ns(blob.updated),
            str(blob.generation),
        )

    def stat(self, bucket: str, key: str) -> FileInfo:
        path = url("gs", bucket, key)
        try:
            blob = self.client.bucket(bucket).get_blob(key, timeout=TIMEOUT)
        except Exception as exc:
            raise _error(exc, "cannot stat", path) from None
        if blob is None:
            raise StorageNotFound(errno.ENOENT, f"{path}: no such object")
        return self._info(bucket, blob)

    def list(self, bucket: str, prefix: str, limit: int | None = None) -> Iterator[FileInfo]:
        try:
            blobs = self.client.list_blobs(
                bucket, prefix=prefix or None, max_results=limit, timeout=TIMEOUT
            )
            for blob in blobs:
                if not blob.name.endswith("/"):  # "folder" placeholders of the console
                    yield self._info(bucket, blob)
        except Exception as exc:
            raise _error(exc, "cannot list", url("gs", bucket, prefix), listing=True) from None

    def read(self, bucket: str, key: str) -> tuple[bytes, FileInfo]:
        path = url("gs", bucket, key)
        for _ in range(5):  # replaced between the metadata and the media request: read again
            info = self.stat(bucket, key)
            try:
                data = self._blob(bucket, key).download_as_bytes(
                    if_generation_match=int(info.version), timeout=TIMEOUT
                )
            except Exception as exc:
                if _status(exc) == 412:
                    continue
                raise _error(exc, "cannot read", path) from None
            return data, info
        raise StorageError(errno.EAGAIN, f"cannot read {path}: it keeps changing")

    def read_range(self, bucket: str, key: str, start: int, end: int, version: str) -> bytes:
        path = url("gs", bucket, key)
        try:
            return self._blob(bucket, key).download_as_bytes(
                start=start,
                end=end - 1,
                if_generation_match=int(version),
                checksum=None,
                timeout=TIMEOUT,
            )
        except Exception as exc:
            if _status(exc) == 412:
                raise replaced_while_reading(path) from None
            raise _error(exc, "cannot read", path) from None

    def write(
        self, bucket: str, key: str, data: bytes, if_version: object, content_type: str
    ) -> str:
        path = url("gs", bucket, key)
        blob = self._blob(bucket, key)
        kwargs = {}
        if if_version is not ANY:
            kwargs["if_generation_match"] = 0 if if_version is None else int(str(if_version))
        try:
            blob.upload_from_string(data, content_type=content_type, timeout=TIMEOUT, **kwargs)
        except Exception as exc:
            if _status(exc) == 412:
                return refused_write(self, bucket, key, data, if_version)
            raise _error(exc, "cannot write", path, listing=True) from None
        return str(blob.generation)

    def delete(self, bucket: str, key: str, if_version: str | None, missing_ok: bool) -> None:
        path = url("gs", bucket, key)
        kwargs = {} if if_version is None else {"if_generation_match": int(if_version)}
        try:
            self._blob(bucket, key).delete(timeout=TIMEOUT, **kwargs)
        except Exception as exc:
            delete_failed(exc, _status(exc), path, if_version, missing_ok, _error)


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _error(exc: BaseException, what: str, path: str, listing: bool = False) -> StorageError:
    """One line naming ``path``; never the request's headers or tokens."""
    if isinstance(exc, StorageError):  # already ours (e.g. from connecting)
        return exc
    status = _status(exc)
    name = type(exc).__name__
    if status == 404:
        if listing:  # a write or a listing does not need the object: the bucket is missing
            bucket = path.split("/", 3)[2]
            return StorageNotFound(errno.ENOENT, f"{what} {path}: bucket {bucket} does not exist")
        return StorageNotFound(errno.ENOENT, f"{what} {path}: no such object")
    if status in (401, 403):
        return StorageError(
            errno.EACCES,
            f"{what} {path}: permission denied (HTTP {status}; check the credentials' "
            "roles on the bucket)",
        )
    if name in ("DefaultCredentialsError", "RefreshError", "TransportError"):
        return StorageError(
            errno.EACCES,
            f"{what} {path}: no usable Google Cloud credentials ({name}; run `gcloud auth "
            "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS)",
        )
    if status is not None:
        return StorageError(errno.EIO, f"{what} {path}: HTTP {status} ({name})")
    return StorageError(errno.EIO, f"{what} {path}: {name}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    # never echo a URL's query (signed URLs carry credentials there)
    return line.split("?", 1)[0][:200]
