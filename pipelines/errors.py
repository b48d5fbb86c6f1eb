"""Errors as one line: what a user sees when input or the disk is bad, without Beam's traceback.

A failure inside a Beam job reaches the caller wrapped (Beam re-raises the worker's exception
with `` [while running 'Read/Read']`` appended, after logging the traceback at ERROR). This
module finds the meaningful exception in the chain (:func:`root_error`), turns it into one line
(:func:`one_line`), tells input problems from environment problems (:func:`environment_error`:
full or read-only disk, out of memory), and captures Beam's ERROR logging while a job runs
(:class:`BeamErrorLog`) so that the command line prints a one-line summary instead of the
traceback (``-v`` still shows everything).
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BeamErrorLog", "environment_error", "one_line", "root_error"]

_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOMEM, errno.EMFILE}
_BEAM_SUFFIX = re.compile(r"\s*\[while running '[^']*'\]")
MAX_LINE = 500


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def root_error(exc: BaseException) -> BaseException:
    """The most specific exception in ``exc``'s chain: an ``InputError`` (ours, names the file)
    if there is one, else the outermost exception."""
    from pipelines.io import InputError

    for e in _chain(exc):
        if isinstance(e, InputError):
            return e
    return exc


def one_line(exc: BaseException) -> str:
    """One line describing ``exc`` (no traceback, no Beam step suffixes), at most 500 chars."""
    err = root_error(exc)
    text = _BEAM_SUFFIX.sub("", str(err)).strip()
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    first = " ".join(text.split())  # one line: Arrow's messages span several
    from pipelines.io import InputError

    if not isinstance(err, InputError | ValueError) or not first:
        first = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return first if len(first) <= MAX_LINE else first[: MAX_LINE - 3] + "..."


def environment_error(exc: BaseException) -> bool:
    """True when ``exc`` comes from the machine (full/read-only disk, no memory), not the data."""
    for e in _chain(exc):
        if isinstance(e, MemoryError):
            return True
        if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS:
            return True
    return False


class BeamErrorLog(logging.Handler):
    """Captures the ERROR records Beam (and Prefect's engine) log while a job runs: tracebacks of
    failed bundles and flow runs, which the command line replaces by one line.

    ``with BeamErrorLog.capture(verbose) as captured:`` keeps them off the console unless
    ``verbose``; ``captured.summary()`` is one line (count and the first message's first line).
    """

    LOGGERS = ("apache_beam", "prefect")

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.first: logging.LogRecord | None = None  # only the first is kept (serve runs long)

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = record

    def summary(self, already_said: str = "") -> str:
        """One line: how many errors were logged, and the first one unless ``already_said``
        contains it."""
        if self.first is None:
            return ""
        text = " ".join(_BEAM_SUFFIX.sub("", self.first.getMessage()).split())
        first = text.split(" Traceback ", 1)[0][:200]
        said = " ".join(already_said.split())
        head = "" if not first or first in said else f" (first: {first})"
        return f"{self.count} error(s) logged while running{head}; -v shows them"

    @classmethod
    @contextmanager
    def capture(cls, verbose: bool = False) -> Iterator[BeamErrorLog]:
        handler = cls()
        quiet = _DropErrors(cls.LOGGERS)
        loggers = [logging.getLogger(name) for name in cls.LOGGERS]
        for lg in loggers:
            lg.addHandler(handler)
        filtered = [] if verbose else _handlers(loggers)
        for h in filtered:
            h.addFilter(quiet)
        try:
            yield handler
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
            for h in filtered:
                h.removeFilter(quiet)


def _handlers(loggers: list[logging.Logger]) -> list[logging.Handler]:
    out: list[logging.Handler] = list(logging.getLogger().handlers)
    for lg in loggers:
        out += [h for h in lg.handlers if not isinstance(h, BeamErrorLog)]
    return list(dict.fromkeys(out))


class _DropErrors(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith(self.prefixes) and record.levelno >= logging.ERROR)
