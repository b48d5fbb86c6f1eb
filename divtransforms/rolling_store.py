"""Where a rolling reference lives (``divtransforms.rolling``): its state file and rolled
profiles (:class:`RollingStore`: load, save, roll when due, prune old versions, carry the
sequential detectors over) and the spans a monitor or ``divmon check --rolling`` configures
(:func:`rolling_spans`). The rules of a roll are ``divtransforms.rolling``'s; this module is
their files (``docs/policy.md``, "Rolling references")."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from divtransforms import storage
from divtransforms.columns import duration_micros
from divtransforms.profile import ProfileError, ReferenceProfile
from divtransforms.records import json_bytes
from divtransforms.rolling import (
    MAX_LOG,
    Roll,
    RollingError,
    RollingState,
    carry_detectors,
    default_min_windows,
    roll,
)
from divtransforms.running import CUSUM_KEY
from divtransforms.sequential import reference_key

__all__ = ["RollingStore", "rolling_spans"]


def rolling_spans(
    window: Any, rolling: Any, every: Any = "1d", absorb: Any = None, prefix: str = ""
) -> tuple[int, int, int | None]:
    """``(rolling, roll_every, absorb_after)`` in microseconds, checked: both spans multiples
    of the window, the period at least 4 rolls, ``absorb`` (default a quarter of the period;
    ``"off"``: None, never) at least one window and shorter than the period. ``prefix`` names
    the options in the error (``"reference."``, ``"--"``)."""
    size = duration_micros(window)
    spans = {"rolling": duration_micros(rolling), "roll_every": duration_micros(every)}
    for key, value in spans.items():
        if value < size or value % size:
            raise ValueError(f"{prefix}{key} must be a multiple of the window size ({window})")
    if spans["rolling"] < 4 * spans["roll_every"]:
        raise ValueError(f"{prefix}rolling must be at least 4 times {prefix}roll_every")
    if absorb == "off":
        absorb_us = None
    elif absorb is None:
        absorb_us = spans["rolling"] // 4
    else:
        absorb_us = duration_micros(absorb)
        if not size <= absorb_us < spans["rolling"]:
            raise ValueError(
                f"{prefix}absorb_after must be at least one window and shorter than {prefix}rolling"
            )
    return spans["rolling"], spans["roll_every"], absorb_us


@dataclass
class RollingStore:
    """Where a rolling reference lives: its state file (``state_path``) and the folder its
    rolled profiles are written to (``versions``: ``<anchor>-<reference_id>.json``), with its
    spans in microseconds (``absorb_micros`` None: never absorb). A local path or a bucket URL
    (``divtransforms.storage``); writes are atomic. The caller serialises runs (the monitor's
    run lock)."""

    state_path: Any
    versions: Any
    window_micros: int
    rolling_micros: int
    every_micros: int
    absorb_micros: int | None
    keep_versions: int | None = None

    def kept_versions(self) -> int:
        """How many rolled profiles to keep (``keep_versions``; default: the rolls of two
        trailing periods, at least 2)."""
        if self.keep_versions is not None:
            return max(int(self.keep_versions), 2)
        return max(2, 2 * math.ceil(self.rolling_micros / self.every_micros))

    def prune_versions(self, state: RollingState) -> list[str]:
        """Delete the rolled profiles beyond the last :meth:`kept_versions` ones, never the
        current reference's or its parent's (the detectors are carried from it); only files
        this state wrote (``state.versions``), never a built seed version. Each file is removed
        whole (a missing one is fine); the caller saves the state. Returns the names removed."""
        keep = set(state.versions[-self.kept_versions() :])
        current = state.current or {}
        keep.add(str(current.get("version")))
        for entry in state.rolls:
            if entry.get("reference_id") == current.get("parent") and entry.get("version"):
                keep.add(str(entry["version"]))
        gone = [v for v in state.versions if v not in keep]
        for name in gone:
            storage.remove(storage.join(self.versions, name))
        state.versions = [v for v in state.versions if v in keep]
        return gone

    def _written(self, state: RollingState, profile: ReferenceProfile) -> str:
        name = self.write_version(profile)
        if name not in state.versions:
            state.versions = [*state.versions, name]
        return name

    def load(self, seed: ReferenceProfile) -> tuple[RollingState, str | None]:
        """The state of ``seed`` and why it is new (None: loaded): none saved, or saved for
        another seed (rebuilt) or another window size."""
        fresh = RollingState(seed.reference_id, self.window_micros)
        if not storage.exists(self.state_path):
            return fresh, "no rolling state yet"
        try:
            raw = json.loads(storage.read_bytes(self.state_path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RollingError(f"rolling state {self.state_path}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise RollingError(
                f"rolling state {self.state_path}: not a divtransforms rolling state"
            )
        if (
            raw.get("seed_id") != seed.reference_id
            or raw.get("window_micros") != self.window_micros
        ):
            return fresh, (
                f"the seed is now {seed.reference_id} (was {raw.get('seed_id')}), windows of "
                f"{self.window_micros} us (were {raw.get('window_micros')}): the rolling state "
                "starts afresh from it"
            )
        return RollingState.from_dict(raw, seed, str(self.state_path)), None

    def save(self, state: RollingState) -> None:

        storage.write_atomic(self.state_path, json_bytes(state.to_dict()))

    def min_windows(self) -> int:
        return default_min_windows(self.rolling_micros, self.window_micros, self.absorb_micros)

    def roll_at(
        self, seed: ReferenceProfile, state: RollingState, anchor: int, parent: str | None
    ) -> Roll:
        return roll(
            seed,
            state,
            anchor,
            self.rolling_micros,
            absorb_micros=self.absorb_micros,
            min_windows=self.min_windows(),
            parent_id=parent,
        )

    def write_version(self, profile: ReferenceProfile) -> str:
        """Save a rolled profile (once: the same windows make the same file); its file name."""
        stamp = profile.created_at.replace("-", "").replace(":", "").replace("+0000", "Z")
        name = f"{stamp}-{profile.reference_id}.json"
        path = storage.join(self.versions, name)
        if not storage.exists(path):
            storage.makedirs(self.versions)
            profile.save(path)
        return name

    def current(
        self, seed: ReferenceProfile, state: RollingState
    ) -> tuple[ReferenceProfile, str | None]:
        """The reference that judges the next windows: the last roll's, or the seed before the
        first; and a note when its version file was missing or changed (rolled again: the
        same profile unless windows were held out since, and then the state names the new one
        and is saved)."""
        current = state.current
        if not current or current.get("reference_id") == seed.reference_id:
            return seed, None
        try:
            profile = ReferenceProfile.load(storage.join(self.versions, str(current["version"])))
            if profile.reference_id == current.get("reference_id"):
                return profile, None
            problem = f"{current['version']} holds {profile.reference_id}"
        except (KeyError, ProfileError) as exc:
            problem = str(exc)
        made = self.roll_at(seed, state, int(current["anchor_micros"]), current.get("parent"))
        again = made.profile.reference_id
        if again != seed.reference_id:
            state.current = {
                **current,
                "reference_id": again,
                "version": self._written(state, made.profile),
            }
        else:
            state.current = {**current, "reference_id": again}
            state.current.pop("version", None)
        if again == current.get("reference_id"):
            return made.profile, f"rolling reference {again}: {problem}; rolled again"
        # windows held since the roll (a CUSUM alarm's excursion reaching back) change it
        self.save(state)
        return made.profile, (
            f"rolling reference {current.get('reference_id')}: {problem}; rolled again as {again} "
            "(windows held out since that roll)"
        )

    def carried(
        self,
        seed: ReferenceProfile,
        state: RollingState,
        profile: ReferenceProfile,
        mle_state: Mapping[str, Mapping[str, Any]] | None,
    ) -> dict[str, dict[str, Any]]:
        """``mle_state`` ready for ``profile`` (the reference :meth:`current` returned): the
        detectors made on the last roll's parent re-keyed to it (:func:`carry_detectors`; those
        of features it restarted start afresh). Idempotent, and done before each check rather
        than at the roll, so a crash between a roll and the next check loses nothing; a
        parent whose version file is gone leaves the detectors to start afresh."""
        current = state.current or {}
        out = {n: dict(v) for n, v in (mle_state or {}).items()}
        keys = {n: reference_key(fp) for n, fp in profile.features.items()}
        made_on = {n: v.get(CUSUM_KEY) for n, v in out.items()}
        stale = [
            n
            for n, d in made_on.items()
            if isinstance(d, Mapping) and d.get("reference") != keys.get(n)
        ]
        parent_id = current.get("parent")
        if not stale or not parent_id or current.get("reference_id") != profile.reference_id:
            return out
        before: ReferenceProfile | None = seed if parent_id == seed.reference_id else None
        for entry in reversed(state.rolls):
            if before is None and entry.get("reference_id") == parent_id and entry.get("version"):
                try:
                    before = ReferenceProfile.load(storage.join(self.versions, entry["version"]))
                except ProfileError:
                    return out
                break
        if before is None:
            return out
        return carry_detectors(out, before, profile, current.get("absorbed") or ())

    def roll_if_due(self, seed: ReferenceProfile, state: RollingState) -> dict[str, Any] | None:
        """Roll when the checked windows' event time crossed a multiple of ``every_micros``
        since the last roll: write the rolled profile, prune windows out of every future period,
        log the roll in the state and save it. Returns the roll's log entry (None: not due)."""
        s = state.summary
        if s is None or not s.k:
            return None
        latest_end = int(s.starts.max()) + state.window_micros
        anchor = latest_end // self.every_micros * self.every_micros
        last = (state.current or {}).get("anchor_micros")
        if last is not None and anchor <= int(last):
            return None
        parent = (state.current or {}).get("reference_id") or seed.reference_id
        made = self.roll_at(seed, state, anchor, parent)
        info = dict(made.info)
        info["anchor_micros"] = anchor
        if made.profile is not seed:
            info["version"] = self._written(state, made.profile)
        state.prune(anchor - self.rolling_micros, seed)
        state.current = info
        state.rolls = [*state.rolls, info][-MAX_LOG:]
        pruned = self.prune_versions(state)
        if pruned:
            info["pruned"] = len(pruned)
        self.save(state)
        return info
