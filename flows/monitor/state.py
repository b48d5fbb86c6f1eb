"""Monitor state between runs: the ledger of files, the running MLE state, the alert tracker, and
the journal of the run in progress. One JSON document, written atomically.

A run goes through two journaled stages so that a crash at any point resumes without duplicates
or gaps:

``planned``   the run id and the files it checks are recorded before Beam runs. A crash before
              the records are committed re-runs the same files under the same run id (its history
              files are overwritten, not duplicated). A file that fails to read is taken out of
              the plan (and recorded as failed in the ledger) before the rest is checked.
``recorded``  records are in the history and the ledger and running MLE state include the files.
              A crash before the alerts are committed re-evaluates the same records with the same
              tracker state; the alert log's dedup keys drop what was already logged.

Ledger keys are paths relative to the monitor's root (the config file's folder) for files under
it, so a monitor folder that is moved or copied re-checks nothing; other local files keep their
absolute path, remote files their URL. Each entry has a ``status``: ``checked``, ``failed`` (read
or check failed; retried on the next runs) or ``quarantined`` (failed ``max_attempts`` times; only
``divmon files retry|forget`` or a change of the file releases it).

The state folder may be local or on a bucket (``divtransforms.storage``). The run lock is a
:class:`RunLock`: locally :class:`FileRunLock`, an ``fcntl.flock`` the kernel releases when the
holder dies; on a bucket :class:`flows.monitor.lease.LeaseRunLock`, a lease object with an expiry.
``save`` is a conditional commit: it replaces only the version ``load`` (or the last ``save``)
saw, so a run that lost its lock can never overwrite a newer state.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from divtransforms import storage
from divtransforms.records import json_bytes
from divtransforms.storage import ANY, PreconditionFailed, StorageError, StorageNotFound
from flows.monitor.locks import LockHeld, StateError

STATE_SCHEMA_VERSION = 2
#: A file that fails this many runs in a row is quarantined.
MAX_ATTEMPTS = 3
FILE_STATUSES = ("checked", "failed", "quarantined")
_DEFAULT_LEASE_SECONDS = (
    60.0  # flows.monitor.lease.DEFAULT_TTL_SECONDS (not imported: lease imports us)
)


@dataclass
class FileEntry:
    size: int
    mtime_ns: int
    run_id: str
    status: str = "checked"
    attempts: int = 0  # failed attempts of this version of the file
    reason: str | None = None  # the last failure, one line
    failed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size, "mtime_ns": self.mtime_ns, "run_id": self.run_id}
        if self.status != "checked":
            out.update(
                status=self.status,
                attempts=self.attempts,
                reason=self.reason,
                failed_at=self.failed_at,
            )
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FileEntry:
        status = str(doc.get("status", "checked"))
        if status not in FILE_STATUSES:
            raise ValueError(f"unknown file status {status!r}")
        return cls(
            int(doc["size"]),
            int(doc["mtime_ns"]),
            str(doc["run_id"]),
            status,
            int(doc.get("attempts", 0)),
            doc.get("reason"),
            doc.get("failed_at"),
        )

    @property
    def done(self) -> bool:
        """Checked or quarantined: not planned again unless the file changes or is released."""
        return self.status in ("checked", "quarantined")


def ledger_key(path: str, root: str | os.PathLike[str] | None) -> str:
    """The ledger key of ``path``: relative (POSIX) to ``root`` when under it, else absolute;
    URLs (``scheme://``) unchanged."""
    if "://" in path:
        return path
    absolute = os.path.abspath(path)
    if root is not None:
        rel = os.path.relpath(absolute, os.path.abspath(root))
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return PurePosixPath(*Path(rel).parts).as_posix()
    return absolute


def key_path(key: str, root: str | os.PathLike[str] | None) -> str:
    """The path (or URL) a ledger key names, for ``root``."""
    if "://" in key or os.path.isabs(key) or root is None:
        return key
    return os.path.join(os.path.abspath(root), *PurePosixPath(key).parts)


def _migrate_v1(doc: dict[str, Any], root: str | None) -> dict[str, Any]:
    """Version 1 keyed the ledger (and the journal's files) by absolute path."""
    doc = dict(doc)
    doc["ledger"] = {ledger_key(k, root): v for k, v in (doc.get("ledger") or {}).items()}
    pending = doc.get("pending")
    if pending:
        doc["pending"] = {**pending, "files": [ledger_key(f, root) for f in pending["files"]]}
    doc["schema_version"] = 2
    return doc


_MIGRATIONS = {1: _migrate_v1}


@dataclass
class MonitorState:
    ledger: dict[str, FileEntry] = field(default_factory=dict)
    mle_state: dict[str, Any] = field(default_factory=dict)
    tracker: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None  # {"run_id", "files", "stage", "failed", ...}
    runs: list[dict[str, Any]] = field(default_factory=list)  # completed runs, newest last
    freshness: dict[str, Any] | None = (
        None  # flows.monitor.freshness: last data, idle runs, stale since
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "ledger": {k: v.to_dict() for k, v in sorted(self.ledger.items())},
            "mle_state": self.mle_state,
            "tracker": self.tracker,
            "pending": self.pending,
            "runs": self.runs[-200:],
            "freshness": self.freshness,
        }

    @classmethod
    def from_dict(
        cls, doc: dict[str, Any], origin: str, root: str | os.PathLike[str] | None = None
    ) -> MonitorState:
        version = doc.get("schema_version")
        while version in _MIGRATIONS:
            doc = _MIGRATIONS[version](doc, None if root is None else str(root))
            version = doc.get("schema_version")
        if version != STATE_SCHEMA_VERSION:
            raise StateError(
                f"{origin}: state schema_version {version!r}, expected {STATE_SCHEMA_VERSION}"
            )
        try:
            ledger = {k: FileEntry.from_dict(v) for k, v in (doc.get("ledger") or {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{origin}: bad ledger entry ({exc})") from None
        return cls(
            ledger=ledger,
            mle_state=doc.get("mle_state") or {},
            tracker=doc.get("tracker"),
            pending=doc.get("pending"),
            runs=list(doc.get("runs") or []),
            freshness=doc.get("freshness"),
        )

    def record_failure(
        self, key: str, fp: tuple[int, int], run_id: str, reason: str, max_attempts: int
    ) -> FileEntry:
        """Count a failed attempt of ``key`` (a changed file starts again from 0)."""
        old = self.ledger.get(key)
        attempts = 1
        if old is not None and old.status != "checked" and (old.size, old.mtime_ns) == fp:
            attempts = old.attempts + 1
        entry = FileEntry(
            fp[0],
            fp[1],
            run_id,
            "quarantined" if attempts >= max_attempts else "failed",
            attempts,
            reason,
            datetime.now(UTC).isoformat(),
        )
        self.ledger[key] = entry
        return entry


#: lock path -> the lock this process holds across its runs (:meth:`StateStore.held`)
_HELD: dict[str, RunLock] = {}


class RunLock(Protocol):
    """Mutual exclusion of the runs of one monitor (a local flock, or a lease on a bucket)."""

    def acquire(self, owner: str) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder."""

    def release(self) -> None:
        """Release the lock if this object holds it; otherwise do nothing."""

    def check(self) -> None:
        """Raise :class:`StateError` if this object's hold on the lock was lost (a lease taken
        over or expired); called before each state commit."""


class FileRunLock:
    """``fcntl.flock`` on ``<state>/run.lock``: exclusive among processes on this host (and
    through NFS, where Linux maps flock to POSIX locks). The kernel releases it when the holder
    exits or is killed, so there is no stale lock to break; the file itself is never deleted
    (deleting it would let two processes lock two different files). Its content (pid, host,
    owner, token) only serves the error message."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fd: int | None = None
        self.token: str | None = None

    def acquire(self, owner: str) -> None:
        if self._fd is not None:
            raise StateError(f"{self.path}: this lock object already holds the lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(
                f"another run holds the run lock {self.path}"
                + (f" ({holder})" if holder else "")
                + "; it is released when that process ends"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        token = uuid.uuid4().hex
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "owner": owner,
            "token": token,
            "since": datetime.now(UTC).isoformat(),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # the lock holds without its description (e.g. a full disk)
        self._fd, self.token = fd, token

    def release(self) -> None:
        fd, self._fd, self.token = self._fd, None, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def check(self) -> None:
        """A flock is held until released or the process dies: nothing can be lost."""

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict) or "pid" not in info:
        return ""
    return (
        f"pid {info.get('pid')} on {info.get('host')}, {info.get('owner')}, "
        f"since {info.get('since')}"
    )


class StateStore:
    """``<state_dir>/state.json`` plus the run lock that keeps two runs from interleaving.

    ``state_dir`` is a local folder or a bucket URL (then the lock is a lease of
    ``lease_seconds``). ``root`` is the folder ledger keys are relative to (the config file's
    folder)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None,
        lock: RunLock | None = None,
        *,
        lease_seconds: float | None = None,
    ):
        self.dir = storage.location(state_dir)
        self.root = None if root is None else Path(root)
        self.path = storage.join(self.dir, "state.json")
        self.lock_path = storage.join(self.dir, "run.lock")
        if lock is None:
            if storage.is_remote(self.dir):
                from flows.monitor.lease import DEFAULT_TTL_SECONDS, LeaseRunLock

                lock = LeaseRunLock(self.lock_path, ttl=lease_seconds or DEFAULT_TTL_SECONDS)
            else:
                lock = FileRunLock(self.lock_path)
        self.lock: RunLock = lock
        self._version: str | None = ANY  # of state.json as last loaded or saved
        #: how old a temp file of an unknown or live writer must be to count as abandoned
        self.lease_seconds = float(lease_seconds or _DEFAULT_LEASE_SECONDS)

    @classmethod
    def for_config(cls, config: Any) -> StateStore:
        """The store of a :class:`flows.config.MonitorConfig`."""
        return cls(config.state_dir, root=config.base_dir, lease_seconds=config.state.lease_seconds)

    def load(self) -> MonitorState:
        try:
            raw, info = storage.read_versioned(self.path)
        except StorageNotFound:
            self._version = None
            return MonitorState()
        except StorageError as exc:
            raise StateError(f"cannot read monitor state: {exc}") from exc
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read monitor state {self.path}: {exc}") from exc
        self._version = info.version
        return MonitorState.from_dict(doc, str(self.path), self.root)

    def check_lock(self) -> None:
        """Raise :class:`StateError` if the run lock was lost (a bucket lease taken over or
        expired): called before every commit and before writing a run's history."""
        check = getattr(self.lock, "check", None)
        if check is not None:
            check()

    def save(self, state: MonitorState) -> None:
        """Commit ``state`` atomically, only over the version this store loaded or saved."""
        self.check_lock()
        try:
            self._version = storage.write_atomic(
                self.path, json_bytes(state.to_dict()), if_version=self._version
            )
        except PreconditionFailed as exc:
            raise StateError(
                f"monitor state not committed: {exc}; this run stops (the newer state is kept)"
            ) from None

    def key(self, path: str) -> str:
        return ledger_key(path, self.root)

    def path_of(self, key: str) -> str:
        return key_path(key, self.root)

    def acquire(self, owner: str) -> None:
        self.lock.acquire(owner)

    def release(self) -> None:
        self.lock.release()

    @contextmanager
    def locked(self, owner: str) -> Iterator[StateStore]:
        """Hold the run lock for the block; inside :meth:`held` of this process (``divmon run``
        takes the lock before it starts Prefect), the block runs under that hold instead."""
        held = _HELD.get(str(self.lock_path))
        if held is not None:
            saved, self.lock = self.lock, held
            try:
                yield self
            finally:
                self.lock = saved
            return
        self.acquire(owner)
        try:
            yield self
        finally:
            self.release()

    @contextmanager
    def held(self, owner: str) -> Iterator[StateStore]:
        """Take the run lock now (or raise :class:`LockHeld` at once) and keep it for the block:
        the runs this process starts meanwhile (:meth:`locked`) go on under it, so a second
        ``divmon run`` is refused before either starts the Prefect API."""
        self.acquire(owner)
        key = str(self.lock_path)
        _HELD[key] = self.lock
        try:
            yield self
        finally:
            _HELD.pop(key, None)
            self.release()

    def clean_temp_files(self, older_than: float | None = None) -> int:
        """Temp files of writes killed half-way (call while holding the lock): those whose
        writer is a dead process of this host, and any other not touched for ``older_than``
        seconds (default: the lease, :attr:`lease_seconds`). A write in flight is never removed,
        even one of a run that (wrongly) writes after releasing the lock."""
        age = self.lease_seconds if older_than is None else older_than
        return storage.remove_stale_temp_files(self.dir, recursive=False, older_than=age)
