"""The running estimates over windows, without Beam (``divtransforms.window`` makes each
window's statistics).

* :class:`RunningEstimates` is the per-feature cumulative MLE accumulators and sequential
  detectors (``divtransforms.sequential``), seeded from a state;
  :class:`WindowCumulation` keeps them over windows that may still change (panes, late data) and
  folds the closed ones.
* :func:`mle_state_bytes` / :func:`parse_mle_state` are the one writer and reader of the MLE-state
  file (``divtransforms.mle_state``, schema version 2: with the detectors); the I/O itself
  belongs to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from divtransforms.mle import MLEAccumulator, accumulator_from_dict
from divtransforms.sequential import (
    RECORD_KEYS,
    CusumState,
    Scorer,
    WindowScore,
    reference_key,
    window_key,
)
from divtransforms.window import FeatureStats

if TYPE_CHECKING:  # annotations only
    from divtransforms.features import FeatureProfile

__all__ = [
    "CUSUM_KEY",
    "MLE_STATE_KIND",
    "RunningEstimates",
    "WindowCumulation",
    "mle_state_bytes",
    "parse_mle_state",
]

MLE_STATE_KIND = "divtransforms.mle_state"
MLE_STATE_VERSION = 2
# Version 2: a feature's entry may hold its sequential detector under "cusum" (and a feature
# without a family an entry with only that); version 1 files read as before, detectors fresh.
MLE_STATE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class RunningEstimates:
    """Cumulative MLE accumulators per feature (None for a feature without a family), and each
    feature's sequential detector over the windows seen (``divtransforms.sequential``), with the
    ``scorer`` that turns a window's statistics into the detectors' inputs (None: no detector)."""

    accumulators: Mapping[str, MLEAccumulator | None]
    detectors: Mapping[str, CusumState] = field(default_factory=dict)
    scorer: Scorer | None = None

    @classmethod
    def seed(
        cls,
        features: Mapping[str, FeatureProfile],
        state: Mapping[str, Mapping[str, Any]] | None = None,
        policy: Any = None,
        judge: Any = None,
    ) -> RunningEstimates:
        """Empty accumulators of the features' families, or those of ``state`` (checked); the
        detectors of ``state`` made on the same reference (a new reference starts them afresh),
        set by ``policy`` (``FeaturePolicy.persistent_shift`` / ``persistent_arl``; None: the
        defaults). ``judge``: a windowed reference's ``variation.cusum.JudgedScores``, whose
        null the detectors' scores take."""
        out: dict[str, MLEAccumulator | None] = {}
        detectors: dict[str, CusumState] = {}
        for name, fp in features.items():
            saved = dict((state or {}).get(name) or {})
            detectors[name] = _detector(name, fp, saved.pop(CUSUM_KEY, None))
            if fp.family is None:
                out[name] = None
            elif saved:
                acc = accumulator_from_dict(saved)
                if acc.family != fp.family:
                    raise ValueError(
                        f"feature {name!r}: MLE state is for family {acc.family!r}, "
                        f"the reference uses {fp.family!r}"
                    )
                out[name] = acc
            else:
                out[name] = fp.empty_mle()
        return cls(out, detectors, Scorer.of(features, policy, judge))

    def merge(self, stats: FeatureStats) -> RunningEstimates:
        """These estimates with one more window's statistics (the detectors as they are:
        :meth:`advance` steps them)."""
        return RunningEstimates(
            {
                n: (
                    acc.merge(stats.mle[n])  # type: ignore[arg-type]
                    if acc is not None and stats.mle.get(n) is not None
                    else acc
                )
                for n, acc in self.accumulators.items()
            },
            self.detectors,
            self.scorer,
        )

    def advance(self, start: Any, scores: Mapping[str, WindowScore] | None) -> RunningEstimates:
        """These estimates with the detectors stepped through the window starting at ``start``
        (its ``Scorer.scores``); a window at or before the last one counted changes nothing."""
        # (one constructor call: Beam infers the streaming DoFn's output type from it)
        return RunningEstimates(
            self.accumulators, _advanced(self.detectors, self.scorer, start, scores), self.scorer
        )

    def get(self, name: str) -> MLEAccumulator | None:
        return self.accumulators.get(name)

    def sequential_fields(self, name: str, start: Any) -> dict[str, Any]:
        """The record fields of the feature's detector at the window starting at ``start``
        (``records.DRIFT_RECORD_SCHEMA``'s ``cusum*``; nulls without one)."""
        det = self.detectors.get(name)
        if det is None:
            return dict.fromkeys(RECORD_KEYS)
        return det.record_fields(window_key(start))

    def to_state(self) -> dict[str, dict[str, Any]]:
        """``{feature: accumulator dict}`` (JSON-able) of the features that have a family, with
        the feature's detector under ``"cusum"`` once it has counted a window (features without
        a family then get an entry holding only that)."""
        out: dict[str, dict[str, Any]] = {
            n: acc.to_dict() for n, acc in self.accumulators.items() if acc is not None
        }
        for n, det in self.detectors.items():
            if det.last is not None:
                out.setdefault(n, {})[CUSUM_KEY] = det.to_dict()
        return out


CUSUM_KEY = "cusum"  # a feature's detector in an MLE-state entry (schema version 2)


def _advanced(
    detectors: Mapping[str, CusumState],
    scorer: Scorer | None,
    start: Any,
    scores: Mapping[str, WindowScore] | None,
) -> Mapping[str, CusumState]:
    if not scores or scorer is None:
        return detectors
    key = window_key(start)
    out = dict(detectors)
    for name, score in scores.items():
        det = out.get(name)
        if det is not None:
            out[name] = det.advance(key, score, scorer.settings[name])
    return out


def _detector(name: str, fp: FeatureProfile, saved: Mapping[str, Any] | None) -> CusumState:
    ref = reference_key(fp)
    if saved and saved.get("reference") == ref:
        try:
            return CusumState.from_dict(saved)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"feature {name!r}: bad CUSUM state ({exc})") from None
    return CusumState(reference=ref)


@dataclass
class WindowCumulation:
    """Running estimates over event-time windows that may still change.

    ``observe`` takes the latest statistics (pane) of a window and returns the running estimate
    of that window: the folded windows, then every known window starting at or before it, in
    event-time order (the global window, ``start = None``, comes first). ``fold`` merges windows
    that can no longer change into one accumulator, which keeps the state small. The detectors
    step through the same windows in the same order, each with the scores of its latest pane
    (``scores``, kept beside ``known``).
    """

    folded: RunningEstimates
    known: dict[Any, tuple[Any, int, FeatureStats]] = field(default_factory=dict)
    scores: dict[Any, Mapping[str, WindowScore]] = field(default_factory=dict)
    # window -> (detectors before, scores, detectors after): a window observed and then folded
    # from the same detectors is stepped once
    _stepped: dict[Any, tuple[Any, Any, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _through(self, running: RunningEstimates, start: Any) -> RunningEstimates:
        merged = running.merge(self.known[start][2])
        scores = self.scores.get(start)
        memo = self._stepped.get(start)
        if memo is not None and memo[0] is running.detectors and memo[1] is scores:
            return RunningEstimates(merged.accumulators, memo[2], merged.scorer)
        out = merged.advance(start, scores)
        self._stepped[start] = (running.detectors, scores, out.detectors)
        return out

    def observe(self, start: Any, end: Any, pane: int, stats: FeatureStats) -> RunningEstimates:
        previous = self.known.get(start)
        if previous is None or previous[1] <= pane:
            self.known[start] = (end, pane, stats)
            if start is not None and self.folded.scorer is not None:
                self.scores[start] = self.folded.scorer.scores(stats, start=start)
        running = self.folded
        if None in self.known:
            running = running.merge(self.known[None][2])
        if start is None:
            return running
        for s in sorted(k for k in self.known if k is not None and k <= start):
            running = self._through(running, s)
        return running

    def complete(self, start: Any, end: Any, pane: int, stats: FeatureStats) -> RunningEstimates:
        """:meth:`observe` in a batch run, which gives every window complete and in event-time
        order (the global window first): the windows before ``start`` have all their data, so
        they are folded first. ``compare.WindowDriver`` and Beam's batch cumulation both run
        this."""
        if start is not None:
            self.fold(before=start)
        return self.observe(start, end, pane, stats)

    def fold(self, before: Any, ended_before: Any = None) -> None:
        """Fold the windows starting before ``before`` (and ending before ``ended_before``)."""
        for s in sorted(k for k in self.known if k is not None):
            end = self.known[s][0]
            if s < before and (ended_before is None or end < ended_before):
                self.folded = self._through(self.folded, s)
                del self.known[s]
                self.scores.pop(s, None)
                self._stepped.pop(s, None)

    def latest(self) -> RunningEstimates:
        """The running estimate over everything seen (the state for the next run)."""
        running = self.folded
        if None in self.known:
            running = running.merge(self.known[None][2])
        for s in sorted(k for k in self.known if k is not None):
            running = self._through(running, s)
        return running


# -- the MLE-state file -------------------------------------------------------------------------


def mle_state_bytes(state: Mapping[str, Any], **extra: Any) -> bytes:
    """The MLE-state file: ``{"schema_version", "kind", "features": {feature: accumulator dict},
    **extra}`` as JSON (``extra``: the watcher's files seen, watermark, ...)."""
    doc = {
        "schema_version": MLE_STATE_VERSION,
        "kind": MLE_STATE_KIND,
        "features": dict(state),
        **extra,
    }
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def parse_mle_state(raw: bytes, origin: str) -> dict[str, dict[str, Any]]:
    """``{feature: accumulator dict}`` from an MLE-state file (or a bare ``{feature: ...}``
    object); errors name ``origin``."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"MLE state {origin}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and doc.get("kind") == MLE_STATE_KIND:
        if doc.get("schema_version") not in MLE_STATE_VERSIONS:
            raise ValueError(
                f"MLE state {origin}: schema version {doc.get('schema_version')!r} "
                f"is not supported (expected {MLE_STATE_VERSION})"
            )
        return dict(doc["features"])
    if isinstance(doc, dict):
        return doc
    raise ValueError(f"MLE state {origin}: expected a JSON object")
