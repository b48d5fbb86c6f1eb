"""``s3://`` through ``boto3`` (the ``aws`` extra). Credentials, region and endpoint come from
boto3's usual chain (environment, profile, instance role; ``AWS_ENDPOINT_URL_S3`` for an
S3-compatible store or the tests' moto server). Preconditions are conditional writes:
``If-None-Match: *`` (create only) and ``If-Match: <ETag>``. ETags are content hashes, so a
rewrite with identical bytes keeps the version: harmless for commits (same document)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

from divtransforms.storage._base import ANY, FileInfo, StorageError, StorageNotFound
from divtransforms.storage._remote import (
    delete_failed,
    mtime_ns,
    refused_write,
    replaced_while_reading,
    url,
)


class S3Backend:
    scheme = "s3"

    def __init__(self) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageError(
                errno.ENOSYS, "s3:// paths need boto3: pip install 'divtransforms[aws]'"
            ) from None
        self._make = lambda: boto3.session.Session().client(
            "s3",
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=20,
                read_timeout=120,
            ),
        )
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = self._make()
            except Exception as exc:
                raise _error(exc, "cannot connect to S3 for", "s3://") from None
        return self._client

    def stat(self, bucket: str, key: str) -> FileInfo:
        path = url("s3", bucket, key)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise _error(exc, "cannot stat", path) from None
        return FileInfo(
            path, int(head["ContentLength"]), mtime_ns(head.get("LastModified")), head["ETag"]
        )

    def list(self, bucket: str, prefix: str, limit: int | None = None) -> Iterator[FileInfo]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if limit is not None:
            kwargs["PaginationConfig"] = {"MaxItems": limit}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        yield FileInfo(
                            url("s3", bucket, obj["Key"]),
                            int(obj["Size"]),
                            mtime_ns(obj.get("LastModified")),
                            obj["ETag"],
                        )
        except Exception as exc:
            raise _error(exc, "cannot list", url("s3", bucket, prefix), listing=True) from None

    def read(self, bucket: str, key: str) -> tuple[bytes, FileInfo]:
        path = url("s3", bucket, key)
        try:
            got = self.client.get_object(Bucket=bucket, Key=key)
            data = got["Body"].read()
        except Exception as exc:
            raise _error(exc, "cannot read", path) from None
        return data, FileInfo(path, len(data), mtime_ns(got.get("LastModified")), got["ETag"])

    def read_range(self, bucket: str, key: str, start: int, end: int, version: str) -> bytes:
        path = url("s3", bucket, key)
        try:
            got = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=version
            )
            return got["Body"].read()
        except Exception as exc:
            if _status(exc) == 412:
                raise replaced_while_reading(path) from None
            raise _error(exc, "cannot read", path) from None

    def write(
        self, bucket: str, key: str, data: bytes, if_version: object, content_type: str
    ) -> str:
        path = url("s3", bucket, key)
        kwargs = {}
        if if_version is None:
            kwargs["IfNoneMatch"] = "*"
        elif if_version is not ANY:
            kwargs["IfMatch"] = str(if_version)
        try:
            put = self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, **kwargs
            )
        except Exception as exc:
            if _status(exc) in (409, 412):  # 409: a concurrent conditional write; retry-able
                return refused_write(self, bucket, key, data, if_version)
            raise _error(exc, "cannot write", path, listing=True) from None
        return put["ETag"]

    def delete(self, bucket: str, key: str, if_version: str | None, missing_ok: bool) -> None:
        path = url("s3", bucket, key)
        kwargs = {} if if_version is None else {"IfMatch": if_version}
        try:
            if not missing_ok:  # S3 answers a delete of a missing key with success
                self.client.head_object(Bucket=bucket, Key=key)
            self.client.delete_object(Bucket=bucket, Key=key, **kwargs)
        except Exception as exc:
            delete_failed(exc, _status(exc), path, if_version, missing_ok, _error)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def _error(exc: BaseException, what: str, path: str, listing: bool = False) -> StorageError:
    """One line naming ``path``; never the request's signature or keys."""
    if isinstance(exc, StorageError):  # already ours (e.g. from connecting)
        return exc
    status, code, name = _status(exc), _code(exc), type(exc).__name__
    bucket = path.split("/", 3)[2] if path.count("/") >= 2 else ""
    if code == "NoSuchBucket" or (status == 404 and listing):
        return StorageNotFound(errno.ENOENT, f"{what} {path}: bucket {bucket} does not exist")
    if status == 404 or code in ("NoSuchKey", "NotFound"):
        return StorageNotFound(errno.ENOENT, f"{what} {path}: no such object")
    if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId"):
        return StorageError(
            errno.EACCES,
            f"{what} {path}: permission denied ({code or status}; check the credentials' "
            "policy on the bucket)",
        )
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return StorageError(
            errno.EACCES,
            f"{what} {path}: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, or use an instance role)",
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return StorageError(errno.EIO, f"{what} {path}: cannot reach the S3 endpoint ({name})")
    if status is not None:
        return StorageError(errno.EIO, f"{what} {path}: HTTP {status} ({code or name})")
    return StorageError(errno.EIO, f"{what} {path}: {name}")
