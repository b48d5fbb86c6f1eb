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
from divtransforms.profile import ReferenceProfile
from divtransforms.rolling import RollingError, RollingState
from divtransforms.rolling_store import RollingStore
from divtransforms.variation import WindowedSummary
from flows.config import MonitorConfig
from flows.monitor.history import read_history

log = logging.getLogger(__name__)

STATE_FILE = "rolling.json"
WINDOWS_PREFIX = "rolling-windows-"


def store_of(config: MonitorConfig) -> RollingStore:
    """The monitor's :class:`~divtransforms.rolling_store.RollingStore`:
    ``<state dir>/rolling.json`` and the reference's ``versions/`` folder."""
    from divtransforms.columns import duration_micros

    spans = config.rolling_micros()
    if spans is None:
        raise ValueError(f"monitor {config.name!r} has no rolling reference")
    rolling, every, absorb = spans
    return RollingStore(
        storage.join(config.state_dir, STATE_FILE),
        storage.join(storage.parent(config.reference_path), "versions"),
        duration_micros(config.window.size or "0"),
        rolling,
        every,
        absorb,
        config.reference.keep_versions,
    )


def load_state(
    config: MonitorConfig,
    seed: ReferenceProfile,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> RollingState:
    """The rolling state of ``seed``: the saved one, or a new one (when it rolled from another
    seed or window size, saved at once and said once, as a warning)."""
    store = store_of(config)
    state, why = store.load(seed)
    if why is not None and storage.exists(store.state_path):
        (logger or log).warning("rolling reference: %s", why)
        store.save(state)
    return state


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
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
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
        store_of(config).save(state)
        for path in files:
            storage.remove(path)
    if folded:
        logger.info("rolling reference: folded the windows of %d run(s)", folded)
    return folded


def roll_if_due(
    config: MonitorConfig,
    seed: ReferenceProfile,
    state: RollingState,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> dict[str, Any] | None:
    """Roll when due (``RollingStore.roll_if_due``) and log what the roll did."""
    logger = logger or log
    info = store_of(config).roll_if_due(seed, state)
    if info is None:
        return None
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
    config: MonitorConfig,
    seed: ReferenceProfile,
    mle_state: dict[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> tuple[ReferenceProfile, dict[str, Any]]:
    """The reference a rolling monitor checks with now, and the monitor's MLE state with its
    sequential detectors carried to it (``RollingStore.carried``); call under the run lock."""
    try:
        state = load_state(config, seed, logger)
    except RollingError as exc:
        raise RollingError(f"{exc}; remove it to restart the rolling reference") from None
    store = store_of(config)
    profile, note = store.current(seed, state)
    if note is not None:
        (logger or log).warning("%s", note)
    # the detectors follow the rolled reference (saved with the run's commit)
    carried = store.carried(seed, state, profile, mle_state) if mle_state else mle_state
    return profile, carried


def after_run(
    config: MonitorConfig,
    seed: ReferenceProfile,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> dict[str, Any] | None:
    """A rolling monitor's last step of a run (under the run lock): fold the runs' windows and
    roll when due. Returns the roll's log entry, if any."""
    state = load_state(config, seed, logger)
    fold_pending(config, seed, state, logger)
    return roll_if_due(config, seed, state, logger)
