"""Locations: a local path (:class:`~pathlib.Path`) or an object-store URL (``str``), their
parts, and the glob of object keys."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from divtransforms.storage._base import SCHEMES, Location, StorageError


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
    scheme, bucket, key = split_url(loc)
    head = key.rstrip("/").rsplit("/", 1)[0] if "/" in key.rstrip("/") else ""
    return f"{scheme}://{bucket}/{head}".rstrip("/") if head else f"{scheme}://{bucket}"


def name(path: str | os.PathLike[str]) -> str:
    """The last path segment."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of an object-store URL."""
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
    scheme, bucket, key = split_url(loc)
    if scheme == "gs":
        return f"https://storage.cloud.google.com/{bucket}/{key}"
    return f"https://{bucket}.s3.amazonaws.com/{key}"


def key_pattern(pattern: str) -> re.Pattern[str]:
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
