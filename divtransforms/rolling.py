"""Rolling references: the reference follows the feed's trailing period, without its breaches.

A monitor with ``[reference] rolling = "28d"`` keeps, for every window it checked, the window's
statistics on the seed reference's bins (the same histogram counts and MLE moments a windowed
reference keeps of its own windows, ``divtransforms.variation.WindowedSummary``), and which
features breached in it. At each roll (``roll_every``, aligned to the epoch in event time) the
rolled reference is the exact merge of the trailing period's admitted windows, per feature, with
the between-window variation re-estimated from them (``docs/policy.md``, "Rolling references").

The rules (:func:`roll`):

* **trailing period**: windows that end in ``(anchor - rolling, anchor]``, ``anchor`` the roll
  boundary; the seed's own windows in that period count too (a young monitor rolls from the
  seed's last weeks plus what it checked), a checked window replacing a seed window of the same
  start;
* **held out**: a window whose record for a feature breached (severity ``warning`` or
  ``critical``, whether or not the alert tracker notified), or in which the feature's sequential
  detector was in alarm (``cusum_alarm``, ``divtransforms.sequential``: a small persistent drift
  that no single window breaches; on a windowed reference it is calibrated on the reference's
  own between-window variation and season, ``variation.cusum.judged_score``), is
  left out of that feature's reference, not of the other features'; an alarm holds out its
  whole excursion, from ``cusum_change_point`` on;
* **a persistent change is absorbed once alerted**: when a feature's breaches since some window
  ``c`` make at least half of its checked windows since ``c`` (``c`` the CUSUM estimate of
  where the breaches began), and ``c`` is at least ``absorb_after`` before the anchor, the
  change is taken as the new normal: that feature's
  reference restarts at ``c`` (its windows since ``c`` admitted, breaches included, and every
  earlier window dropped for good). ``absorb_after = None`` never absorbs (a persistent change
  alerts until the seed is rebuilt);
* **too little data**: a feature with fewer than ``min_windows`` admitted windows in the
  trailing period keeps the seed's profile and windows, and the roll says so (``fallback``);
  when every feature falls back the rolled reference is the seed itself (same ``reference_id``).

The sequential detectors carry across rolls (:func:`carry_detectors`): a feature's CUSUM keeps
its statistic when its reference rolls, since the rolled reference is the previous one's period
moved on by ``roll_every`` (most of its windows are the same) and holds out the windows the
detector alarmed on; it starts afresh only when the feature's reference restarts after an
absorbed change (or the seed is rebuilt).

The result is deterministic: the same folded windows give the same profile (its ``created_at``
is the anchor), so a restart or another engine that checked the same data makes the same
``reference_id``. The state (:class:`RollingState`) is JSON with a schema version; its files are
``divtransforms.rolling_store``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from divtransforms.histogram import Histogram
from divtransforms.mle import MLEAccumulator
from divtransforms.profile import FeatureProfile, ReferenceProfile, finish_feature
from divtransforms.variation import MIN_WINDOWS, FeatureWindows, WindowedSummary, _summary_of

__all__ = [
    "BREACHES",
    "ROLLING_SCHEMA_VERSION",
    "Roll",
    "RollingError",
    "RollingState",
    "carry_detectors",
    "default_min_windows",
    "roll",
    "window_summary",
]

ROLLING_SCHEMA_VERSION = 1
BREACHES = ("warning", "critical")  # the severities that hold a window out of the reference
MAX_LOG = 200  # rolls and folded runs the state remembers
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RollingError(ValueError):
    """A rolling state cannot be used (version, seed, window size, contents)."""


def _as_micros(t: Any) -> int:
    return _micros(t) if isinstance(t, datetime) else int(t)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _iso(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=int(micros))).isoformat()


def window_summary(
    profile: ReferenceProfile, windows: Iterable[tuple[int | None, Any]], size_micros: int
) -> WindowedSummary:
    """The :class:`WindowedSummary` of checked windows (``(start, FeatureStats)``, the global
    window ``None`` left out) on ``profile``'s bins: what the check jobs of every engine return
    for a rolling reference (the statistics their records were computed from)."""
    feats = profile.features
    return _summary_of(
        profile,
        size_micros,
        None,
        (
            (int(s), {n: (st.histograms[n], st.mle.get(n)) for n in feats})
            for s, st in windows
            if s is not None
        ),
    )


def default_min_windows(rolling_micros: int, window_micros: int, absorb_micros: int | None) -> int:
    """Admitted windows a feature needs to roll: a quarter of the trailing period (or
    ``absorb_after`` when shorter: a reference restarted after a change can roll), and at least
    enough to estimate the between-window variation."""
    span = rolling_micros / 4 if absorb_micros is None else min(absorb_micros, rolling_micros / 4)
    return max(MIN_WINDOWS + 2, math.ceil(span / window_micros))


@dataclass
class RollingState:
    """What a rolling monitor keeps between runs.

    ``seed_id``: the seed reference these windows are on the bins of; ``window_micros``: the
    monitor's window; ``summary``: the checked windows (merged when a window was checked in more
    than one run); ``held``: per feature, the starts of windows it breached in; ``restarted``:
    per feature, the window its reference restarted at after a persistent change; ``folded``:
    run ids already folded (a resumed run is not counted twice); ``rolls``: the log of rolled
    references; ``current``: the last roll (``reference_id``, ``version``, ``anchor``, ...);
    ``versions``: the rolled profiles' files written and not yet pruned, oldest first.
    """

    seed_id: str
    window_micros: int
    summary: WindowedSummary | None = None
    held: dict[str, set[int]] = field(default_factory=dict)
    restarted: dict[str, int] = field(default_factory=dict)
    folded: list[str] = field(default_factory=list)
    rolls: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ROLLING_SCHEMA_VERSION,
            "kind": "divtransforms.rolling_state",
            "seed_id": self.seed_id,
            "window_micros": self.window_micros,
            "summary": self.summary.to_dict() if self.summary is not None else None,
            "held": {f: sorted(s) for f, s in sorted(self.held.items()) if s},
            "restarted": dict(sorted(self.restarted.items())),
            "folded": list(self.folded),
            "rolls": list(self.rolls),
            "current": self.current,
            "versions": list(self.versions),
        }

    @classmethod
    def from_dict(cls, doc: Any, seed: ReferenceProfile, origin: str = "<dict>") -> RollingState:
        if not isinstance(doc, dict) or doc.get("kind") != "divtransforms.rolling_state":
            raise RollingError(f"rolling state {origin}: not a divtransforms rolling state")
        if doc.get("schema_version") != ROLLING_SCHEMA_VERSION:
            raise RollingError(
                f"rolling state {origin}: schema version {doc.get('schema_version')!r} is not "
                f"supported (this divtransforms reads version {ROLLING_SCHEMA_VERSION})"
            )
        try:
            summary = None
            if doc.get("summary") is not None:
                summary = WindowedSummary.from_dict(
                    doc["summary"], {n: fp.bins.n_bins for n, fp in seed.features.items()}
                )
            return cls(
                str(doc["seed_id"]),
                int(doc["window_micros"]),
                summary,
                {f: {int(s) for s in v} for f, v in doc.get("held", {}).items()},
                {f: int(s) for f, s in doc.get("restarted", {}).items()},
                [str(r) for r in doc.get("folded", [])],
                list(doc.get("rolls", [])),
                doc.get("current"),
                # (a state saved before the list was kept: the versions its log names)
                [str(v) for v in doc["versions"]]
                if "versions" in doc
                else list(dict.fromkeys(str(r["version"]) for r in doc.get("rolls", [])
                                        if r.get("version"))),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise RollingError(f"rolling state {origin}: malformed contents: {exc}") from None

    def fold(
        self,
        seed: ReferenceProfile,
        run_id: str,
        summary: WindowedSummary | None,
        records: Iterable[Mapping[str, Any]],
    ) -> bool:
        """Add one run's checked windows and its records' breaches; False (nothing done) when
        the run was folded before."""
        if run_id in self.folded:
            return False
        if summary is not None and summary.k:
            if summary.size_micros != self.window_micros:
                raise RollingError(
                    f"run {run_id}: windows of {summary.size_micros} us, the rolling state's are "
                    f"{self.window_micros} us"
                )
            self.summary = _added(self.summary, summary, seed)
        starts = self.summary.starts if self.summary is not None else np.zeros(0, np.int64)
        for r in records:
            start = r.get("window_start")
            if start is None or r["feature"] not in seed.features:
                continue
            alarm = r.get("cusum_alarm") is not None
            if r.get("severity") not in BREACHES and not alarm:
                continue
            s = _as_micros(start)
            held = self.held.setdefault(str(r["feature"]), set())
            held.add(s)
            cp = r.get("cusum_change_point")
            if alarm and cp is not None:  # the alarm's excursion, from its change point on
                since = starts[(starts >= _as_micros(cp)) & (starts <= s)]
                held.update(int(x) for x in since.tolist())
        self.folded = [*self.folded, run_id][-MAX_LOG:]
        return True

    def prune(self, before_micros: int, seed: ReferenceProfile) -> None:
        """Forget windows that start before ``before_micros`` (out of every future trailing
        period)."""
        s = self.summary
        if s is not None and s.k and int(s.starts.min()) < before_micros:
            keep = np.flatnonzero(s.starts >= before_micros)
            self.summary = WindowedSummary(
                s.starts[keep],
                {n: fw.take(keep) for n, fw in s.features.items()},
                size_micros=s.size_micros,
            )
        self.held = {f: {x for x in v if x >= before_micros} for f, v in self.held.items()}
        self.held = {f: v for f, v in self.held.items() if v}
        # a restart before the period: every window it dropped is out of the period anyway
        self.restarted = {f: c for f, c in self.restarted.items() if c >= before_micros}


def _added(
    kept: WindowedSummary | None, new: WindowedSummary, seed: ReferenceProfile
) -> WindowedSummary:
    """``kept`` with ``new``'s windows: rows appended when no window is in both (the usual run:
    new windows), else merged window by window (late data of a window already kept; exact)."""
    if kept is None or not kept.k:
        return new
    if np.intersect1d(kept.starts, new.starts).size:
        return kept.merge(new, seed)
    starts = np.concatenate([kept.starts, new.starts])
    order = np.argsort(starts, kind="stable")
    feats = {}
    for name, fw in kept.features.items():
        other = new.features[name]
        feats[name] = FeatureWindows(
            *(
                np.concatenate([a, b])[order]
                for a, b in zip(fw._arrays(), other._arrays(), strict=True)
            )
        )
    return WindowedSummary(starts[order], feats, size_micros=kept.size_micros)


@dataclass
class Roll:
    """One roll: the reference (the seed itself when every feature fell back) and its log
    entry (``reference_id``, ``parent``, ``seed``, ``anchor``, ``from``, per-feature windows
    admitted / held / restarted / fallback, ``note``)."""

    profile: ReferenceProfile
    info: dict[str, Any]


def _change_point(checked: np.ndarray, held: np.ndarray) -> int | None:
    """Where a run of breaches that is still going on began (None: none): the held window
    ``c`` that maximises ``sum over windows since c of (held - 1/2)``, when that is positive
    (held windows at least half of those since ``c``); the CUSUM estimate of a change point in
    the breach rate. ``checked`` sorted starts, ``held`` a boolean mask on them."""
    if not held.any():
        return None
    score = np.cumsum((held - 0.5)[::-1])[::-1]
    score = np.where(held, score, -np.inf)
    best = int(np.argmax(score))
    return int(checked[best]) if score[best] > 0 else None


def roll(
    seed: ReferenceProfile,
    state: RollingState,
    anchor_micros: int,
    rolling_micros: int,
    *,
    absorb_micros: int | None,
    min_windows: int,
    parent_id: str | None = None,
) -> Roll:
    """The rolled reference at ``anchor_micros`` (see the module docstring). Updates
    ``state.restarted`` and ``state.held`` when a persistent change is absorbed."""
    size = state.window_micros
    lo = anchor_micros - rolling_micros
    checked = state.summary
    seed_w = seed.windows
    if seed_w is not None and seed_w.size_micros != size:
        regroup = bool(seed_w.size_micros) and size % (seed_w.size_micros or 1) == 0
        seed_w = seed_w.regrouped(size, seed) if regroup else None
    info: dict[str, Any] = {
        "parent": parent_id or seed.reference_id,
        "seed": seed.reference_id,
        "anchor": _iso(anchor_micros),
        "from": _iso(lo),
        "features": {},
    }
    windows: dict[int, dict[str, tuple[Histogram, MLEAccumulator | None]]] = {}
    features: dict[str, FeatureProfile] = {}
    fallback: list[str] = []
    absorbed: list[str] = []  # features whose reference restarts at this roll
    for name, fp in seed.features.items():
        chosen: dict[int, tuple[Histogram, MLEAccumulator | None]] = {}
        if seed_w is not None and name in seed_w.features:
            fw = seed_w.features[name]
            for i, s in enumerate(seed_w.starts.tolist()):
                if lo <= s and s + size <= anchor_micros:
                    chosen[s] = (seed_w.window_histogram(fp, name, i), fw.accumulator(fp, i))
        held = set(state.held.get(name, ()))
        n_checked = 0
        if checked is not None and name in checked.features:
            fw = checked.features[name]
            starts = checked.starts
            inside = np.flatnonzero((starts >= lo) & (starts + size <= anchor_micros))
            n_checked = int(inside.size)
            order = inside[np.argsort(starts[inside])]
            s_sorted = starts[order]
            cp = None
            if absorb_micros is not None and s_sorted.size:
                mask = np.isin(s_sorted, np.fromiter(held, np.int64, len(held)))
                cp = _change_point(s_sorted, mask)
                if cp is not None and anchor_micros - cp >= absorb_micros:
                    prev = state.restarted.get(name)
                    state.restarted[name] = cp if prev is None else max(prev, cp)
                    if state.restarted[name] != prev:
                        absorbed.append(name)
                    held = {x for x in held if x < cp}
                    state.held[name] = held
            for i in order.tolist():
                s = int(starts[i])
                chosen[s] = (checked.window_histogram(fp, name, i), fw.accumulator(fp, i))
        restart = state.restarted.get(name)
        if restart is not None and restart < lo:
            restart = None
        admitted = {
            s: v
            for s, v in chosen.items()
            if s not in held and (restart is None or s >= restart) and v[0].n_total > 0
        }
        entry: dict[str, Any] = {
            "windows": len(admitted),
            "checked": n_checked,
            "held": sum(
                1
                for s in held
                if lo <= s and s + size <= anchor_micros and (restart is None or s >= restart)
            ),
        }
        if restart is not None:
            entry["restarted"] = _iso(restart)
        if len(admitted) < min_windows:
            entry["fallback"] = f"{len(admitted)} admitted windows < {min_windows}: the seed's"
            fallback.append(name)
            features[name] = fp
            if seed_w is not None and name in seed_w.features:
                fw = seed_w.features[name]
                for i, s in enumerate(seed_w.starts.tolist()):
                    windows.setdefault(s, {})[name] = (
                        seed_w.window_histogram(fp, name, i),
                        fw.accumulator(fp, i),
                    )
        else:
            hist = Histogram.empty(fp.bins)
            mle = fp.empty_mle()
            for s in sorted(admitted):
                h, m = admitted[s]
                hist = hist.merge(h)
                mle = m if mle is None else mle if m is None else mle.merge(m)  # type: ignore[arg-type]
                windows.setdefault(s, {})[name] = (h, m)
            features[name] = finish_feature(
                name, fp.kind, hist, fp.family, mle, fp.reason,
                column_type=fp.column_type, n_singletons=fp.n_singletons,
            )  # fmt: skip
        info["features"][name] = entry
    info["fallback"] = fallback
    info["absorbed"] = absorbed
    if len(fallback) == len(seed.features):
        info["reference_id"] = seed.reference_id
        info["note"] = "too little trailing data: judged by the seed reference"
        return Roll(seed, info)
    empty = {n: (Histogram.empty(fp.bins), fp.empty_mle()) for n, fp in seed.features.items()}
    summary = _summary_of(
        seed,
        size,
        None,
        ((s, {n: feats.get(n) or empty[n] for n in seed.features}) for s, feats in windows.items()),
    )
    note = (
        f"rolling: seed {seed.reference_id}, parent {info['parent']}, windows ending in "
        f"({info['from']}, {info['anchor']}]"
    )
    if fallback:
        note += f"; seed's profile for {', '.join(fallback)} (too little trailing data)"
    profile = ReferenceProfile(
        features,
        source=note,
        created_at=_iso(anchor_micros),
        ignored_columns=seed.ignored_columns,
        windows=summary,
    )
    info["reference_id"] = profile.reference_id
    info["note"] = note
    return Roll(profile, info)


def carry_detectors(
    mle_state: Mapping[str, Mapping[str, Any]] | None,
    before: ReferenceProfile,
    after: ReferenceProfile,
    restart: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """``mle_state`` (``{feature: accumulator dict}``, ``RunningEstimates.to_state``) with each
    feature's sequential detector made on ``before`` carried to ``after``, the reference that
    judges the next windows: a detector is kept only with the reference it was made on
    (``sequential.reference_key``), so it is re-keyed here, except for the features in
    ``restart`` (a reference restarted after an absorbed change), whose detector starts afresh.
    The MLE accumulators are left as they are."""
    from divtransforms.running import CUSUM_KEY
    from divtransforms.sequential import reference_key

    out = {n: dict(v) for n, v in (mle_state or {}).items()}
    drop = set(restart)
    for name, entry in out.items():
        det = entry.get(CUSUM_KEY)
        if not isinstance(det, Mapping) or name not in before.features:
            continue
        if name in drop or name not in after.features:
            del entry[CUSUM_KEY]
        elif det.get("reference") == reference_key(before.features[name]):
            entry[CUSUM_KEY] = {**det, "reference": reference_key(after.features[name])}
    return {n: v for n, v in out.items() if v}
