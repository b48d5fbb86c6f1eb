"""Which files made a check fail: the monitor takes them out of the batch instead of stopping.

:func:`find_culprits` narrows a failed check of several files down to the files at fault, with
one line of reason each, in three steps from cheap to thorough:

1. the error names a file of the batch (the readers' ``InputError`` always does);
2. each file is read on its own, in this process, with the job's readers;
3. the Beam check is run on halves of the batch (bisection) until single files are left.

A failure that every file reproduces on its own, or an environment error (full or read-only
disk, no memory), is not blamed on the data: the caller re-raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pipelines.errors import environment_error, one_line

log = logging.getLogger(__name__)


def input_failure(exc: BaseException) -> bool:
    """Could ``exc`` come from the data (rather than the machine or our own state)?"""
    from divtransforms.storage import StorageError
    from flows.monitor.state import StateError

    if isinstance(exc, StateError | StorageError):
        return False
    return not environment_error(exc)


def _named(exc: BaseException, files: Sequence[str]) -> dict[str, str]:
    text = one_line(exc)
    for path in sorted(files, key=len, reverse=True):
        if path in text:
            return {path: text}
    return {}


def _probe_read(path: str) -> str | None:
    """Read ``path`` completely with the job's readers; the reason it fails, or None."""
    from pipelines.io import plan_reads, read_task

    try:
        for task in plan_reads([path]):
            for _ in read_task(task):
                pass
    except Exception as exc:  # any failure of this file's read is its own
        if environment_error(exc):
            raise
        return one_line(exc)
    return None


def _bisect(
    files: list[str], check: Callable[[list[str]], object], first: BaseException
) -> dict[str, str]:
    def fails(subset: list[str]) -> str | None:
        try:
            check(subset)
        except Exception as exc:
            if not input_failure(exc):
                raise
            return one_line(exc)
        return None

    out: dict[str, str] = {}

    def search(subset: list[str], reason: str) -> None:
        if len(subset) == 1:
            out[subset[0]] = reason
            return
        mid = len(subset) // 2
        for half in (subset[:mid], subset[mid:]):
            why = fails(half)
            if why is not None:
                search(half, why)

    search(files, one_line(first))
    return out


def find_culprits(
    exc: BaseException,
    files: Sequence[str],
    check: Callable[[list[str]], object],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> dict[str, str]:
    """``{path: reason}`` of the files of ``files`` that made ``check(files)`` fail with
    ``exc``; empty when the failure cannot be pinned on some of them."""
    logger = logger or log
    files = list(files)
    named = _named(exc, files)
    if named:
        return named
    logger.info("isolating the file(s) behind: %s", one_line(exc))
    probed = {p: why for p in files if (why := _probe_read(p)) is not None}
    if probed:
        return probed
    if len(files) == 1:
        return {files[0]: one_line(exc)}
    found = _bisect(files, check, exc)
    if len(found) == len(files):
        return {}  # every file fails alone: not something one file did
    return found
