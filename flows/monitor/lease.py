"""The run lock on a bucket: a lease object that works across hosts and containers.

``<state>/run.lock`` holds ``{owner, token, host, pid, acquired_at, renewed_at, ttl_seconds,
released}``. Every change of it is a conditional write (``divtransforms.storage.write_atomic``
with ``if_version``), so of two processes racing for it exactly one wins:

- **take**: create it only if absent (GCS ``ifGenerationMatch=0``, S3 ``If-None-Match: *``), or
  replace a released or expired lease only if it is still the version read (its generation /
  ETag): two takers of the same expired lease cannot both win;
- **renew**: a thread rewrites it every ``ttl / 3`` seconds, conditional on the version it wrote
  last; a lost condition means another run took the lease over, and :meth:`check` then fails;
- **release**: the owner marks it released, conditional on its own version (never someone
  else's lease); the object stays, as the local lock file does.

Expiry is judged from the store's own update time of the object (not the holder's clock):
expired when ``updated + ttl`` has passed. The holder counts its lease valid only until
``ttl * 3/4`` after the start of its last successful renewal, so a holder stalled past its lease
stops (:class:`LeaseLost` from :meth:`check`, called before every state commit) before another
host can take over, as long as clocks agree within ``ttl / 4``. State commits are also
conditional on the state's version, so even a holder that was frozen through all of this
cannot overwrite a newer state.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from divtransforms import storage
from divtransforms.storage import FileInfo, PreconditionFailed, StorageError, StorageNotFound
from flows.monitor.locks import LockHeld, StateError

log = logging.getLogger(__name__)

LEASE_SCHEMA_VERSION = 1
DEFAULT_TTL_SECONDS = 60.0


class LeaseLost(StateError):
    """This run's lease was taken over or ran out: it must not commit anything more."""


class LeaseRunLock:
    """A :class:`flows.monitor.state.RunLock` held as a lease object at ``path`` (any location;
    meant for buckets, where no host-local lock can exclude another host)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        renew_every: float | None = None,
    ):
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.path = storage.location(path)
        self.ttl = float(ttl)
        self.renew_every = float(renew_every) if renew_every else self.ttl / 3
        self.token: str | None = None
        self._doc: dict[str, Any] = {}
        self._version: str | None = None
        self._valid_until = 0.0
        self._lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- RunLock protocol

    def acquire(self, owner: str) -> None:
        if self.token is not None:
            raise StateError(f"{self.path}: this lock object already holds the lease")
        token = uuid.uuid4().hex
        for _ in range(8):
            try:
                raw, info = storage.read_versioned(self.path)
                current: dict[str, Any] | None = _parse(raw)
                version: str | None = info.version
            except StorageNotFound:
                current, info, version = None, None, None
            if current is not None and info is not None and self._live(current, info):
                raise LockHeld(_held_message(self.path, current, info, self.ttl))
            now = _now()
            doc = {
                "schema_version": LEASE_SCHEMA_VERSION,
                "owner": owner,
                "token": token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now,
                "renewed_at": now,
                "ttl_seconds": self.ttl,
                "released": False,
            }
            started = time.monotonic()
            try:
                new = storage.write_atomic(self.path, _dump(doc), if_version=version)
            except PreconditionFailed:
                continue  # another run wrote it first: read again (it now holds it)
            if current is not None and not current.get("released"):
                log.warning(
                    "took over the expired run lease %s of %s (host %s, last renewed %s)",
                    self.path,
                    current.get("owner"),
                    current.get("host"),
                    current.get("renewed_at"),
                )
            with self._mutex:
                self.token, self._doc, self._version = token, doc, new
                self._valid_until = started + self.ttl * 0.75
                self._lost = None
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._renew_loop, name=f"lease-renew {self.path}", daemon=True
            )
            self._thread.start()
            return
        raise LockHeld(f"another run holds the run lock {self.path} (it keeps changing hands)")

    def release(self) -> None:
        if self.token is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            doc, version, lost = dict(self._doc), self._version, self._lost
            self.token, self._doc, self._version = None, {}, None
        if lost:
            return
        doc.update(released=True, released_at=_now())
        try:
            storage.write_atomic(self.path, _dump(doc), if_version=version)
        except PreconditionFailed:
            log.warning("run lease %s was taken over before it was released", self.path)
        except StorageError as exc:  # it expires by itself
            log.warning("cannot release the run lease (%s); it expires in %.0f s", exc, self.ttl)

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this object holds a lease that is still valid."""
        with self._mutex:
            lost, valid_until, held = self._lost, self._valid_until, self.token is not None
        if lost:
            raise LeaseLost(f"run lease {self.path} lost: {lost}; nothing more is committed")
        if held and time.monotonic() > valid_until:
            raise LeaseLost(
                f"run lease {self.path} not renewed for {self.ttl * 0.75:.0f} s (storage "
                "unreachable or the process stalled); nothing more is committed"
            )

    @property
    def held(self) -> bool:
        return self.token is not None

    # ---------------------------------------------------------------- internals

    def _live(self, doc: dict[str, Any], info: FileInfo) -> bool:
        if doc.get("released"):
            return False
        ttl = float(doc.get("ttl_seconds") or self.ttl)
        return time.time() < info.mtime_ns / 1e9 + ttl

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            with self._mutex:
                doc, version = dict(self._doc), self._version
            doc["renewed_at"] = _now()
            started = time.monotonic()
            try:
                new = storage.write_atomic(self.path, _dump(doc), if_version=version)
            except PreconditionFailed:
                with self._mutex:
                    self._lost = "another run took it over (this run did not renew it in time)"
                log.error("run lease %s was taken over by another run", self.path)
                return
            except StorageError as exc:
                log.warning("cannot renew the run lease (%s); retrying", exc)
                continue
            with self._mutex:  # (a release waits for this write, then writes after it)
                self._doc, self._version = doc, new
                self._valid_until = started + self.ttl * 0.75


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def _parse(raw: bytes) -> dict[str, Any]:
    """A lease document; an unreadable one counts as expired garbage (taken over)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"released": True}
    return doc if isinstance(doc, dict) else {"released": True}


def _held_message(path: Any, doc: dict[str, Any], info: FileInfo, ttl: float) -> str:
    left = info.mtime_ns / 1e9 + float(doc.get("ttl_seconds") or ttl) - time.time()
    return (
        f"another run holds the run lock {path} ({doc.get('owner')}, pid {doc.get('pid')} on "
        f"{doc.get('host')}, since {doc.get('acquired_at')}); its lease ends in {left:.0f} s "
        "unless renewed"
    )
