"""Which files a monitor run checks: the data files matching ``source.paths``, classified
against the ledger (new, due for another try, changed after being checked, quarantined)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from divtransforms import storage
from flows.config import MonitorConfig
from flows.monitor.state import FileEntry, MonitorState, StateStore


def list_files(patterns: list[str]) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of the data files matching local globs (absolute paths) or
    bucket patterns (URLs), through ``divtransforms.storage``. File names follow the readers'
    rule (:func:`pipelines.io.is_data_file`): names starting with ``_`` or ``.`` are not data."""
    from pipelines.io import is_data_file

    found: dict[str, tuple[int, int]] = {}
    for pattern in patterns:
        for info in storage.glob(pattern):
            if is_data_file(info.path):
                path = info.path if storage.is_remote(info.path) else os.path.abspath(info.path)
                found[path] = (info.size, info.mtime_ns)
    return found


@dataclass
class Discovery:
    """What :func:`discover` found, as ledger keys, sorted."""

    new: list[str] = field(default_factory=list)  # never seen
    retry: list[str] = field(default_factory=list)  # failed before; tried again
    changed: list[str] = field(default_factory=list)  # checked, then modified (not re-checked)
    quarantined: list[str] = field(default_factory=list)  # failed too often; left alone

    @property
    def plan(self) -> list[str]:
        return sorted(self.new + self.retry)


def discover(config: MonitorConfig, state: MonitorState, store: StateStore) -> Discovery:
    """Classify the files matching ``source.paths`` against the ledger."""
    out = Discovery()
    for path, fp in sorted(list_files(config.source_patterns()).items()):
        key = store.key(path)
        entry = state.ledger.get(key)
        if entry is None:
            out.new.append(key)
        elif entry.status == "failed" or (entry.status == "quarantined" and _fp(entry) != fp):
            out.retry.append(key)  # a quarantined file that changed gets a fresh start
        elif entry.status == "quarantined":
            out.quarantined.append(key)
        elif _fp(entry) != fp:
            out.changed.append(key)
    return out


def _fp(entry: FileEntry) -> tuple[int, int]:
    return entry.size, entry.mtime_ns


def exists(path: str) -> bool:
    return storage.exists(path)
