"""The reference's own windows: per reference window and feature, the statistics of the window.

When the reference is built with an event time and a window size (or a ``chunk`` of rows for data
without time), the build also keeps, per reference window and feature, the window's histogram
counts (with its missing and invalid counts) and its MLE statistics (for numeric families, the
moments of the family's value ``t`` and of ``|t - c|``): :class:`WindowedSummary`, one
:class:`FeatureWindows` per feature. It is stored in the profile (schema version 4) and merges
exactly (counts add, moments merge with Pebay's update), like everything else in a profile.
:class:`WindowedSummaryBuilder` makes it from batches (``docs/policy.md``, "Feeds that vary from
window to window").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from divtransforms.histogram import Histogram
from divtransforms.mle import CategoricalMLE, MLEAccumulator, MomentMLE
from divtransforms.moments import Moments

if TYPE_CHECKING:
    from divtransforms.features import FeatureProfile
    from divtransforms.features import ProfileView as ReferenceProfile

__all__ = ["FeatureWindows", "WindowedSummary", "WindowedSummaryBuilder", "summary_of"]


@dataclass(frozen=True, eq=False)
class FeatureWindows:
    """One feature over the reference's windows (row ``i`` = window ``i``).

    ``counts`` ``(k, bins)``, ``missing`` and ``invalid`` ``(k,)``; for a numeric family ``t`` and
    ``dev`` ``(k, 6)`` moment lists (``Moments.to_list``) and ``extra`` ``(k, 3)``: ``s``,
    ``mean_lfact`` and ``n_invalid`` of the MLE accumulator; for the categorical family ``extra``
    ``(k, 1)``: its ``n_invalid``; no family: all empty.
    """

    counts: np.ndarray
    missing: np.ndarray
    invalid: np.ndarray
    t: np.ndarray
    dev: np.ndarray
    extra: np.ndarray

    @property
    def k(self) -> int:
        return int(self.counts.shape[0])

    def take(self, idx: np.ndarray) -> FeatureWindows:
        return FeatureWindows(*(a[idx] for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.counts, self.missing, self.invalid, self.t, self.dev, self.extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "counts": self.counts.tolist(),
            "missing": self.missing.tolist(),
            "invalid": self.invalid.tolist(),
        }
        if self.extra.shape[1]:
            out["extra"] = self.extra.tolist()
        if self.t.shape[1]:
            out["t"], out["dev"] = self.t.tolist(), self.dev.tolist()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], k: int, n_bins: int) -> FeatureWindows:
        counts = np.asarray(d["counts"], dtype=np.int64).reshape(k, n_bins)
        missing = np.asarray(d["missing"], dtype=np.int64).reshape(k)
        invalid = np.asarray(d["invalid"], dtype=np.int64).reshape(k)
        t = np.asarray(d.get("t", []), dtype=np.float64).reshape(k, -1 if d.get("t") else 0)
        dev = np.asarray(d.get("dev", []), dtype=np.float64).reshape(k, t.shape[1])
        extra = np.asarray(d.get("extra", []), dtype=np.float64)
        extra = extra.reshape(k, -1 if extra.size else 0)
        return cls(counts, missing, invalid, t, dev, extra)

    @classmethod
    def of(cls, hists: list[Histogram], mles: list[MLEAccumulator | None]) -> FeatureWindows:
        k = len(hists)
        counts = np.stack([h.counts for h in hists]) if k else np.zeros((0, 0), np.int64)
        missing = np.asarray([h.n_missing for h in hists], dtype=np.int64)
        invalid = np.asarray([h.n_invalid for h in hists], dtype=np.int64)
        t = dev = np.zeros((k, 0))
        extra = np.zeros((k, 0))
        if mles and isinstance(mles[0], MomentMLE):
            t = np.asarray([m.t.to_list() for m in mles], dtype=np.float64)  # type: ignore[union-attr]
            dev = np.asarray([m.dev.to_list() for m in mles], dtype=np.float64)  # type: ignore[union-attr]
            extra = np.asarray(
                [[m.s, m.mean_lfact, m.n_invalid] for m in mles],  # type: ignore[union-attr]
                dtype=np.float64,
            )
        elif mles and isinstance(mles[0], CategoricalMLE):
            extra = np.asarray([[m.n_invalid] for m in mles], dtype=np.float64)  # type: ignore[union-attr]
        return cls(counts, missing, invalid, t, dev, extra)

    def accumulator(self, fp: FeatureProfile, i: int) -> MLEAccumulator | None:
        """Window ``i``'s MLE accumulator (None when the feature has no family)."""
        empty = fp.empty_mle()
        if isinstance(empty, MomentMLE):
            s, lfact, inv = self.extra[i].tolist()
            return MomentMLE(
                empty.family,
                Moments.from_list(self.t[i].tolist()),
                empty.center,
                Moments.from_list(self.dev[i].tolist()),
                float(s),
                float(lfact),
                int(inv),
            )
        if isinstance(empty, CategoricalMLE):
            return empty.add_counts(self.counts[i], int(self.extra[i, 0]))
        return None


@dataclass(frozen=True, eq=False)
class WindowedSummary:
    """The reference's own windows: their starts and, per feature, their statistics.

    ``size_micros``: event-time windows of that size, ``starts`` in epoch microseconds; or
    ``chunk``: windows of that many rows in reading order, ``starts`` the chunk numbers.
    """

    starts: np.ndarray
    features: Mapping[str, FeatureWindows]
    size_micros: int | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        if (self.size_micros is None) == (self.chunk is None):
            raise ValueError("a windowed summary has either a window size or a chunk size")

    @property
    def k(self) -> int:
        return int(self.starts.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_micros": self.size_micros,
            "chunk": self.chunk,
            "starts": [int(s) for s in self.starts.tolist()],
            "features": {n: fw.to_dict() for n, fw in sorted(self.features.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], n_bins: Mapping[str, int]) -> WindowedSummary:
        starts = np.asarray(d["starts"], dtype=np.int64)
        k = int(starts.shape[0])
        feats = {n: FeatureWindows.from_dict(fd, k, n_bins[n]) for n, fd in d["features"].items()}
        size = d.get("window_micros")
        chunk = d.get("chunk")
        return cls(
            starts, feats, int(size) if size is not None else None,
            int(chunk) if chunk is not None else None,
        )  # fmt: skip

    def merge(self, other: WindowedSummary, profile: ReferenceProfile) -> WindowedSummary:
        """Both summaries' windows; a window in both has its statistics merged (exact)."""
        if (self.size_micros, self.chunk) != (other.size_micros, other.chunk):
            raise ValueError("cannot merge windowed summaries of different window sizes")
        return summary_of(
            profile,
            self.size_micros,
            self.chunk,
            [*self._windows(profile), *other._windows(profile)],
        )

    def _windows(self, profile: ReferenceProfile) -> list[tuple[int, dict[str, tuple]]]:
        out = []
        for i, start in enumerate(self.starts.tolist()):
            out.append(
                (
                    start,
                    {
                        n: (self.window_histogram(profile.features[n], n, i),
                            fw.accumulator(profile.features[n], i))
                        for n, fw in self.features.items()
                    },
                )
            )  # fmt: skip
        return out

    def window_histogram(self, fp: FeatureProfile, name: str, i: int) -> Histogram:
        fw = self.features[name]
        return Histogram(fp.bins, fw.counts[i], int(fw.missing[i]), int(fw.invalid[i]))

    def regrouped(self, size_micros: int, profile: ReferenceProfile) -> WindowedSummary:
        """The summary on windows ``size_micros`` long (a multiple of this one's size): the
        windows inside each longer one merged (exact, as :meth:`merge`)."""
        if self.size_micros is None or size_micros == self.size_micros:
            return self
        if size_micros % self.size_micros:
            raise ValueError(
                f"windows of {size_micros / 1e6:g} s are not a multiple of the reference's "
                f"{self.size_micros / 1e6:g} s"
            )
        return summary_of(
            profile,
            size_micros,
            None,
            ((s // size_micros * size_micros, feats) for s, feats in self._windows(profile)),
        )


def summary_of(
    profile: ReferenceProfile,
    size_micros: int | None,
    chunk: int | None,
    windows: Iterable[tuple[int, Mapping[str, tuple[Histogram, MLEAccumulator | None]]]],
) -> WindowedSummary:
    merged: dict[int, dict[str, tuple[Histogram, MLEAccumulator | None]]] = {}
    for start, feats in windows:
        cur = merged.get(start)
        if cur is None:
            merged[start] = dict(feats)
            continue
        for name, (h, m) in feats.items():
            ph, pm = cur[name]
            cur[name] = (ph.merge(h), pm if m is None else m if pm is None else pm.merge(m))  # type: ignore[arg-type]
    starts = sorted(merged)
    feats_out = {}
    for name in profile.features:
        feats_out[name] = FeatureWindows.of(
            [merged[s][name][0] for s in starts], [merged[s][name][1] for s in starts]
        )
    return WindowedSummary(
        np.asarray(starts, dtype=np.int64), feats_out, size_micros=size_micros, chunk=chunk
    )


class WindowedSummaryBuilder:
    """The windowed summary of reference batches, on a profile's bins and families.

    ``timestamp_column`` and ``window`` (seconds): event-time windows aligned to the epoch, as the
    monitor's; or ``chunk``: windows of that many rows in reading order. ``add`` every batch
    (any order for event time; in reading order for chunks), then ``summary()``.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        timestamp_column: str | None = None,
        window: float | None = None,
        chunk: int | None = None,
        timestamp_format: str | None = None,
    ) -> None:
        if (window is None) == (chunk is None):
            raise ValueError(
                "a windowed reference needs either a window (with an event time) or a chunk"
            )
        if window is not None and not timestamp_column:
            raise ValueError("a windowed reference needs the timestamp column of its event times")
        if chunk is not None and chunk < 2:
            raise ValueError(f"chunk must be at least 2 rows, got {chunk}")
        self.profile = self._profile = profile
        self._ts = timestamp_column
        self._size = round(window * 1e6) if window is not None else None
        if self._size is not None and self._size <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self._chunk = chunk
        self._fmt = timestamp_format
        self._rows: dict[tuple[str, ...], int] = {}
        self._windows: dict[int, dict[str, tuple[Histogram, MLEAccumulator | None]]] = {}
        self._group0: tuple[str, ...] | None = None
        self.excluded = 0

    def add(self, batch: Any, columns: Iterable[str] | None = None) -> None:
        """One batch; ``columns``: the features it is for (a reader that decodes a few columns
        at a time gives every group the same rows in the same batches); default all."""
        from divtransforms.columns import num_rows
        from divtransforms.window import feature_stats_of_batch, split_by_window, take_rows

        features = self._profile.features
        group = tuple(features) if columns is None else tuple(columns)
        if self._size is not None:
            parts, bad = split_by_window(batch, self._ts or "", self._size, self._fmt)
            if bad is not None and group == self._first_group(group):
                self.excluded += bad.count
        else:
            rows = num_rows(batch)
            first = self._rows.get(group, 0)
            idx = (first + np.arange(rows)) // (self._chunk or 1)
            self._rows[group] = first + rows
            parts = [(int(c), take_rows(batch, np.flatnonzero(idx == c))) for c in np.unique(idx)]
        feats = {n: features[n] for n in group}
        for start, part in parts:
            stats = feature_stats_of_batch(feats, part)
            window = self._windows.setdefault(start, {})
            for name in group:
                h, m = stats.histograms[name], stats.mle.get(name)
                prev = window.get(name)
                if prev is not None:
                    ph, pm = prev
                    h = ph.merge(h)
                    m = pm if m is None else m if pm is None else pm.merge(m)  # type: ignore[arg-type]
                window[name] = (h, m)

    def _first_group(self, group: tuple[str, ...]) -> tuple[str, ...]:
        if self._group0 is None:
            self._group0 = group
        return self._group0

    def summary(self) -> WindowedSummary:
        feats = self._profile.features
        windows = []
        for start, window in self._windows.items():
            windows.append(
                (
                    start,
                    {
                        n: window.get(n) or (Histogram.empty(fp.bins), fp.empty_mle())
                        for n, fp in feats.items()
                    },
                )
            )
        return summary_of(self._profile, self._size, self._chunk, windows)
