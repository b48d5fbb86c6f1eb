"""Monitor state between runs: the ledger of processed files, the running MLE state, the alert
tracker, and the journal of the run in progress. One JSON document, written atomically.

A run goes through two journaled stages so that a crash at any point resumes without duplicates
or gaps:

``planned``   the run id and the files it checks are recorded before Beam runs. A crash before
              the records are committed re-runs the same files under the same run id (its history
              files are overwritten, not duplicated).
``recorded``  records are in the history and the ledger and running MLE state include the files.
              A crash before the alerts are committed re-evaluates the same records with the same
              tracker state; the alert log's dedup keys drop what was already logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtransforms.records import atomic_write_json

STATE_SCHEMA_VERSION = 1


class StateError(ValueError):
    """The state file is unreadable or from an incompatible version."""


@dataclass
class FileEntry:
    size: int
    mtime_ns: int
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "run_id": self.run_id}


@dataclass
class MonitorState:
    ledger: dict[str, FileEntry] = field(default_factory=dict)
    mle_state: dict[str, Any] = field(default_factory=dict)
    tracker: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None  # {"run_id", "files", "stage"}
    runs: list[dict[str, Any]] = field(default_factory=list)  # completed runs, newest last
    freshness: dict[str, Any] | None = None  # flows.freshness: last data, idle runs, stale since

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
    def from_dict(cls, doc: dict[str, Any], origin: str) -> MonitorState:
        version = doc.get("schema_version")
        if version != STATE_SCHEMA_VERSION:
            raise StateError(
                f"{origin}: state schema_version {version!r}, expected {STATE_SCHEMA_VERSION}"
            )
        ledger = {
            k: FileEntry(int(v["size"]), int(v["mtime_ns"]), str(v["run_id"]))
            for k, v in (doc.get("ledger") or {}).items()
        }
        return cls(
            ledger=ledger,
            mle_state=doc.get("mle_state") or {},
            tracker=doc.get("tracker"),
            pending=doc.get("pending"),
            runs=list(doc.get("runs") or []),
            freshness=doc.get("freshness"),
        )


class StateStore:
    """``<state_dir>/state.json`` plus a lock file that keeps two runs from interleaving."""

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "run.lock"

    def load(self) -> MonitorState:
        if not self.path.exists():
            return MonitorState()
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StateError(f"cannot read monitor state {self.path}: {exc}") from exc
        return MonitorState.from_dict(doc, str(self.path))

    def save(self, state: MonitorState) -> None:
        atomic_write_json(self.path, state.to_dict())

    def acquire(self, owner: str) -> None:
        """Take the run lock; a lock left by a dead process on this host is taken over."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    info = json.loads(self.lock_path.read_text(encoding="utf-8"))
                    pid = int(info.get("pid", -1))
                except (OSError, ValueError):
                    pid = -1
                if pid > 0 and _alive(pid) and pid != os.getpid():
                    raise StateError(
                        f"another run (pid {pid}, {info.get('owner')}) holds "
                        f"{self.lock_path}; remove it if that process is gone"
                    ) from None
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "owner": owner}, fh)
            return
        raise StateError(f"cannot take the run lock {self.lock_path}")

    def release(self) -> None:
        self.lock_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fingerprint(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
