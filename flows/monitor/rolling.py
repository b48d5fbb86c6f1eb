"""A monitor's rolling reference (``[reference] rolling``): its state, the runs folded into it,
and the rolled references (the rules are ``divtransforms.rolling``'s).

Files, all in the state folder and all written under the run lock:

* ``rolling-windows-<run id>.json``: the windows one run checked (``CheckResult.windows``),
  written by the check stage before the run's commit, so a crash after the commit still finds
  them; folded and removed by :func:`fold_pending` (a run folded twice is ignored);
* ``rolling.json``: the :class:`~divtransforms.rolling.RollingState` (schema version), written
  atomically; it names the seed reference (``reference.path``: what ``build_reference`` made) it
  rolls from, and is started afresh when that seed is rebuilt;
* every rolled reference is a version beside the built ones (``<reference dir>/versions/``,
  ``<anchor>-<reference_id>.json``), so any record's ``reference_id`` leads to its profile;
  ``reference.path`` stays the seed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from divtransforms import storage
from divtransforms.profile import ProfileError, ReferenceProfile
from divtransforms.records import json_bytes
from divtransforms.rolling import (
    RollingError,
    RollingState,
    default_min_windows,
    roll,
)
from divtransforms.variation import WindowedSummary
from flows.config import MonitorConfig
from flows.monitor.history import read_history

log = logging.getLogger(__name__)

STATE_FILE = "rolling.json"
WINDOWS_PREFIX = "rolling-windows-"


def _state_path(config: MonitorConfig) -> storage.Location:
    return storage.join(config.state_dir, STATE_FILE)


def _versions_dir(config: MonitorConfig) -> storage.Location:
    return storage.join(storage.parent(config.reference_path), "versions")


def window_size_micros(config: MonitorConfig) -> int:
    from divtransforms.columns import duration_micros

    return duration_micros(config.window.size or "0")


def load_state(
    config: MonitorConfig, seed: ReferenceProfile, logger: logging.Logger | None = None
) -> RollingState:
    """The rolling state of ``seed``: the saved one, or a new one when there is none, or when
    it rolled from another seed (rebuilt) or another window size (both logged)."""
    logger = logger or log
    path = _state_path(config)
    size = window_size_micros(config)
    fresh = RollingState(seed.reference_id, size)
    if not storage.exists(path):
        return fresh
    raw = json.loads(storage.read_bytes(path))
    if raw.get("seed_id") != seed.reference_id or raw.get("window_micros") != size:
        logger.warning(
            "rolling reference: the seed is now %s (was %s), windows of %d us: the rolling state "
            "starts afresh from the new seed",
            seed.reference_id,
            raw.get("seed_id"),
            size,
        )
        return fresh
    return RollingState.from_dict(raw, seed, str(path))


def save_state(config: MonitorConfig, state: RollingState) -> None:
    storage.write_atomic(_state_path(config), json_bytes(state.to_dict()))


def keep_windows(
    config: MonitorConfig, run_id: str, windows: WindowedSummary | None, reference_id: str
) -> None:
    """The check stage's part: a run's checked windows (on the bins of the reference that
    checked them, ``reference_id``), kept until folded."""
    if windows is None:
        return
    path = storage.join(config.state_dir, f"{WINDOWS_PREFIX}{run_id}.json")
    doc = {"reference_id": reference_id, "windows": windows.to_dict()}
    storage.write_atomic(path, json.dumps(doc, sort_keys=True).encode() + b"\n")


def fold_pending(
    config: MonitorConfig,
    seed: ReferenceProfile,
    state: RollingState,
    logger: logging.Logger | None = None,
) -> int:
    """Fold every kept run (its windows and its records' breaches, from the history) into
    ``state``, save it, then remove the folded files; returns how many runs were folded."""
    logger = logger or log
    pattern = storage.join(config.state_dir, f"{WINDOWS_PREFIX}*.json")
    files = sorted(storage.location(i.path) for i in storage.glob(pattern))
    n_bins = {n: fp.bins.n_bins for n, fp in seed.features.items()}
    folded = 0
    for path in files:
        run_id = storage.name(path)[len(WINDOWS_PREFIX) : -len(".json")]
        ours = {state.seed_id, *(r.get("reference_id") for r in state.rolls)}
        try:
            doc = json.loads(storage.read_bytes(path))
            if doc.get("reference_id") not in ours:
                raise ValueError(
                    f"checked by {doc.get('reference_id')}, not by the seed "
                    f"{state.seed_id} or one of its rolls (the seed was rebuilt)"
                )
            summary = WindowedSummary.from_dict(doc["windows"], n_bins)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("rolling reference: %s not folded: %s", path, exc)
            continue
        records = read_history(config.history_dir, run_id).to_pylist()
        if state.fold(seed, run_id, summary, records):
            folded += 1
    if files:
        save_state(config, state)
        for path in files:
            storage.remove(path)
    if folded:
        logger.info("rolling reference: folded the windows of %d run(s)", folded)
    return folded


def _load_version(config: MonitorConfig, current: dict[str, Any]) -> ReferenceProfile | None:
    version = current.get("version")
    if not version:
        return None
    path = storage.join(_versions_dir(config), str(version))
    try:
        profile = ReferenceProfile.load(path)
    except ProfileError as exc:
        log.warning("rolling reference: %s", exc)
        return None
    return profile if profile.reference_id == current.get("reference_id") else None


def current_reference(
    config: MonitorConfig,
    seed: ReferenceProfile,
    state: RollingState,
    logger: logging.Logger | None = None,
) -> ReferenceProfile:
    """The reference that judges the next windows: the last roll's (re-made from the state if
    its version file is gone), or the seed before the first roll."""
    current = state.current
    if not current or current.get("reference_id") == seed.reference_id:
        return seed
    profile = _load_version(config, current)
    if profile is not None:
        return profile
    (logger or log).warning(
        "rolling reference %s: version file missing or changed, rolled again",
        current.get("reference_id"),
    )
    made = _roll(config, seed, state, int(current["anchor_micros"]), current.get("parent"))
    _write_version(config, made.profile)
    return made.profile


def _roll(config: MonitorConfig, seed, state, anchor: int, parent: str | None):
    spans = config.reference.rolling_micros()
    assert spans is not None
    rolling, _, absorb = spans
    return roll(
        seed,
        state,
        anchor,
        rolling,
        absorb_micros=absorb,
        min_windows=default_min_windows(rolling, state.window_micros, absorb),
        parent_id=parent,
    )


def _write_version(config: MonitorConfig, profile: ReferenceProfile) -> str:
    stamp = profile.created_at.replace("-", "").replace(":", "").replace("+0000", "Z")
    name = f"{stamp}-{profile.reference_id}.json"
    path = storage.join(_versions_dir(config), name)
    if not storage.exists(path):
        storage.makedirs(_versions_dir(config))
        profile.save(path)
    return name


def roll_if_due(
    config: MonitorConfig,
    seed: ReferenceProfile,
    state: RollingState,
    logger: logging.Logger | None = None,
) -> dict[str, Any] | None:
    """Roll when the checked windows' event time crossed a multiple of ``roll_every`` since the
    last roll: write the rolled reference as a version, record the roll in the state (saved).
    Returns the roll's log entry (None: not due)."""
    logger = logger or log
    spans = config.reference.rolling_micros()
    assert spans is not None
    _, every, _ = spans
    s = state.summary
    if s is None or not s.k:
        return None
    latest_end = int(s.starts.max()) + state.window_micros
    anchor = latest_end // every * every
    last = (state.current or {}).get("anchor_micros")
    if last is not None and anchor <= int(last):
        return None
    parent = (state.current or {}).get("reference_id") or seed.reference_id
    made = _roll(config, seed, state, anchor, parent)
    info = dict(made.info)
    info["anchor_micros"] = anchor
    if made.profile is not seed:
        info["version"] = _write_version(config, made.profile)
    rolling, _, _ = spans
    state.prune(anchor - rolling, seed)
    state.current = info
    state.rolls = [*state.rolls, info][-200:]
    save_state(config, state)
    fallback = info.get("fallback") or []
    logger.info(
        "rolling reference %s (parent %s, seed %s): windows ending in (%s, %s]%s",
        info["reference_id"],
        info["parent"],
        info["seed"],
        info["from"],
        info["anchor"],
        f"; the seed's profile for {', '.join(fallback)} (too little trailing data)"
        if fallback
        else "",
    )
    for name, entry in info["features"].items():
        if "restarted" in entry:
            logger.warning(
                "rolling reference: %s restarts at %s (a change that breached for %s is the "
                "new normal)",
                name,
                entry["restarted"],
                config.reference.absorb_after or "a quarter of the rolling period",
            )
    return info


def rolling_reference(
    config: MonitorConfig, seed: ReferenceProfile, logger: logging.Logger | None = None
) -> ReferenceProfile:
    """The reference a rolling monitor checks with now (call under the run lock)."""
    try:
        state = load_state(config, seed, logger)
    except RollingError as exc:
        raise RollingError(f"{exc}; remove it to restart the rolling reference") from None
    if state.current is None and storage.exists(_state_path(config)):
        save_state(config, state)  # started afresh from a new seed: said once
    return current_reference(config, seed, state, logger)


def after_run(
    config: MonitorConfig, seed: ReferenceProfile, logger: logging.Logger | None = None
) -> dict[str, Any] | None:
    """A rolling monitor's last step of a run (under the run lock): fold the runs' windows and
    roll when due. Returns the roll's log entry, if any."""
    state = load_state(config, seed, logger)
    fold_pending(config, seed, state, logger)
    return roll_if_due(config, seed, state, logger)
