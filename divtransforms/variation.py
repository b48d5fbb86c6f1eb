"""Between-window variation: judge a window against the reference's own window-to-window spread.

Real feeds are not independent samples of one distribution: daily and weekly cycles, day-to-day
wander and rows grouped by place or batch move every window away from the pooled reference by
more than sampling noise. The question a monitor must answer is whether a window differs from the
reference *more than the reference's own windows differ from each other*. This module is the one
place where that is modelled (``docs/policy.md``, "Windowed and seasonal references").

**The windowed summary** (:class:`WindowedSummary`). When the reference is built with an event
time and a window size (or a ``chunk`` of rows for data without time), the build also keeps, per
reference window and feature, the window's histogram counts (with its missing and invalid counts)
and its MLE statistics (for numeric families, the moments of the family's value ``t`` and of
``|t - c|``). It is stored in the profile (schema version 4) and merges exactly (counts add,
moments merge with Pebay's update), like everything else in a profile.

**The variation model** (:func:`estimate`). For one feature, over the ``k`` reference windows
(``n_i`` values each; in groups = seasons when the reference is seasonal):

* *location and scale*: the window means ``y_i`` of ``t`` (and of ``|t - c|``) have sampling
  variances ``v_i = s^2 / n_i`` (``s^2`` pooled within windows); the between-window variance beyond
  them is the DerSimonian-Laird moment estimate
  ``tau^2 = max(0, (Q - df) / (sum w - sum w^2 / sum w))``, ``Q = sum w_i (y_i - ybar_g)^2``,
  ``w_i = 1 / v_i``, ``df = k - groups``. A new window of ``n`` values is then tested with the
  variance ``s^2 (1/n + 1/N) + tau^2 (1 + sum n_i^2 / N^2)`` (the window's own deviation and the
  reference mean's), and its statistic referred to a Student t whose degrees of freedom are at
  most ``df`` (the uncertainty of ``tau^2``);
* *histogram*: the between-window covariance ``B`` of the bin proportions beyond multinomial
  noise, by the same method of moments on the matrix ``S = sum n_i (p_i - pbar_g)(p_i - pbar_g)'``
  (``E S = df (D - p p') + (N - sum n_i^2 / N_g) B``), made positive semi-definite. On the test's
  comparison table (cells merged and pooled as the test does, so for the window's ``n``) the
  chi-square statistic is then a sum ``sum_j lambda_j chi2_1`` with ``lambda_j = 1 + m c_j``
  (``m = n N / (n + N)``, ``c_j`` the eigenvalues of ``D^-1/2 B D^-1/2``). Its first two moments
  give the second-order Rao-Scott (Satterthwaite) reference ``a chi2_nu``: the record's
  ``dispersion`` is the mean inflation ``E X^2 / dof``.

For independent samples, ``tau^2`` and ``B`` are about 0 (the estimate is truncated at 0, so it is
exactly 0 about half the time), and with ``tau = 0`` and ``B = 0`` the tests are today's, bit for
bit. A reference with fewer than :data:`MIN_WINDOWS` windows of at least two values (beyond one
per season) cannot estimate the variation: the record says so and the tests are today's.

**Seasons** (:data:`SEASONS`): ``hour_of_day``, ``day_of_week`` or ``hour_of_week``. A window is
compared with the reference's windows of the same season (their counts and moments merged), and
the variation is estimated within seasons. A season with fewer than :data:`MIN_SEASON_WINDOWS`
reference windows is judged against the whole reference (pooled), and the record says so.

References: R. DerSimonian and N. Laird (1986), "Meta-analysis in clinical trials", Controlled
Clinical Trials 7; J. N. K. Rao and A. J. Scott (1981), "The analysis of categorical data from
complex sample surveys", JASA 76; J. P. T. Higgins, S. G. Thompson and D. J. Spiegelhalter
(2009), "A re-evaluation of random-effects meta-analysis", JRSS A 172.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from divtransforms.bins import NumericBins
from divtransforms.histogram import Histogram
from divtransforms.mle import CategoricalMLE, MLEAccumulator, MomentMLE
from divtransforms.moments import Moments
from divtransforms.significance import comparison_table

if TYPE_CHECKING:
    from divtransforms.features import FeatureProfile
    from divtransforms.features import ProfileView as ReferenceProfile

__all__ = [
    "MIN_SEASON_WINDOWS",
    "MIN_WINDOWS",
    "SEASONS",
    "FeatureVariation",
    "WindowJudge",
    "WindowedSummary",
    "WindowedSummaryBuilder",
    "estimate",
    "histogram_between",
    "season_of",
    "window_judge",
]

_log = logging.getLogger(__name__)

MIN_WINDOWS = 10  # residual degrees of freedom needed to estimate the variation
MIN_SEASON_WINDOWS = 2  # reference windows a season needs to be its own reference
HOUR = 3_600_000_000
DAY = 24 * HOUR
SEASONS = ("hour_of_day", "day_of_week", "hour_of_week")
_EMPTY_MOMENTS = [0.0] * 6


def season_of(season: str, start_micros: Any) -> Any:
    """The season index of window starts (epoch microseconds, UTC): ``hour_of_day`` 0-23,
    ``day_of_week`` 0-6 (Monday = 0), ``hour_of_week`` 0-167 (Monday 00:00 = 0)."""
    s = np.asarray(start_micros, dtype=np.int64)
    hour = np.floor_divide(s, HOUR) % 24
    dow = (np.floor_divide(s, DAY) + 3) % 7  # 1970-01-01 was a Thursday
    if season == "hour_of_day":
        return hour
    if season == "day_of_week":
        return dow
    if season == "hour_of_week":
        return dow * 24 + hour
    raise ValueError(f"unknown season {season!r} (one of {', '.join(SEASONS)})")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def season_label(season: str, index: int) -> str:
    """``hour_of_day=13h``, ``day_of_week=Mon``, ``hour_of_week=Mon 13h``."""
    if season == "day_of_week":
        return f"{season}={_DAYS[index]}"
    if season == "hour_of_week":
        return f"{season}={_DAYS[index // 24]} {index % 24:02d}h"
    return f"{season}={index:02d}h"


# -- the windowed summary ------------------------------------------------------------------------


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
        return _summary_of(
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
        return _summary_of(
            profile,
            size_micros,
            None,
            ((s // size_micros * size_micros, feats) for s, feats in self._windows(profile)),
        )


def _summary_of(
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
        return _summary_of(self._profile, self._size, self._chunk, windows)


# -- the variation model -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureVariation:
    """The between-window variation of one feature (see the module docstring).

    ``windows``: reference windows used; ``dof``: residual degrees of freedom (windows minus
    groups); ``estimated``: False when too few to estimate (everything 0: today's tests).
    ``tau2``/``tau2_dev``: between-window variance of the mean of ``t`` and of ``|t - c|``;
    ``sd``: the reference standard deviation of ``t`` (``tau`` is reported in it);
    ``between``: the histogram's between-window covariance of bin proportions (None: 0).
    ``units``: the windows' effective number of independent deviations (``dof`` over the
    batch-means inflation of consecutive windows' deviations: a day-level wander judged hour by
    hour has about one unit a day); the degrees of freedom of the variation's estimate, and
    ``1 / units`` its share in the reference's own mean.
    """

    windows: int
    dof: int
    estimated: bool
    tau2: float = 0.0
    tau2_dev: float = 0.0
    sd: float = math.nan
    between: np.ndarray | None = None
    units: float = math.inf
    kurtosis: float = 0.0  # excess kurtosis of the standardised deviations of t's window means
    kurtosis_dev: float = 0.0  # the same of |t - c|'s
    skewness: float = 0.0  # skewness of the standardised deviations of t's window means
    skewness_dev: float = 0.0  # the same of |t - c|'s
    skewness_histogram: float = 0.0  # of the reference windows' standardised statistics
    spread: float = 1.0  # the histogram statistic's variance: observed on the reference's own
    # windows over the model's (at least 1; second-order moments of a non-normal wander)

    @property
    def tau(self) -> float:
        """``sqrt(tau^2)`` in reference standard deviations of ``t``."""
        return math.sqrt(self.tau2) / self.sd if self.sd > 0 else 0.0


def _moment_arrays(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return m[:, 0], m[:, 1] + m[:, 2], m[:, 3]


def standardised_shape(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, groups: np.ndarray, tau2: float
) -> tuple[float, float]:
    """Skewness and excess kurtosis (>= 0) of the window means' deviations from their group
    means, each standardised by ``sqrt(s^2 / n_i + tau^2)``: how far from normal the
    between-window deviations are (their tails)."""
    ok = n >= 2
    n, mean, m2, groups = n[ok], mean[ok], m2[ok], groups[ok]
    if n.size < MIN_WINDOWS:
        return 0.0, 0.0
    s2 = float(m2.sum() / (n - 1.0).sum())
    _, g = np.unique(groups, return_inverse=True)
    w = n / s2 if s2 > 0 else np.ones_like(n)
    ybar = np.bincount(g, w * mean) / np.bincount(g, w)
    z = (mean - ybar[g]) / np.sqrt(s2 / n + tau2)
    z2 = float(np.mean(z * z))
    if not z2 > 0:
        return 0.0, 0.0
    skew = float(np.mean(z**3)) / z2**1.5
    return skew, max(0.0, float(np.mean(z**4)) / z2**2 - 3.0)


def dersimonian_laird(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, groups: np.ndarray
) -> tuple[float, int]:
    """``(tau^2, df)`` of window means about their group means (windows with n >= 2)."""
    ok = n >= 2
    n, mean, m2, groups = n[ok], mean[ok], m2[ok], groups[ok]
    k = int(n.size)
    _, g = np.unique(groups, return_inverse=True)
    n_groups = int(g.max()) + 1 if k else 0
    df = k - n_groups
    if df < 1:
        return 0.0, max(df, 0)
    s2 = float(m2.sum() / (n - 1.0).sum())
    if not s2 > 0:
        return 0.0, df
    w = n / s2
    sw = np.bincount(g, w, n_groups)
    ybar = np.bincount(g, w * mean, n_groups) / sw
    q = float(np.sum(w * (mean - ybar[g]) ** 2))
    c = float(np.sum(sw - np.bincount(g, w * w, n_groups) / sw))
    return max(0.0, (q - df) / c) if c > 0 else 0.0, df


def between_covariance(counts: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
    """The between-window covariance of bin proportions beyond multinomial noise (PSD; None
    when it is 0), by the method of moments about each group's pooled proportions."""
    n = counts.sum(axis=1).astype(np.float64)
    keep = n > 0
    counts, n, groups = counts[keep].astype(np.float64), n[keep], groups[keep]
    _, g = np.unique(groups, return_inverse=True)
    n_groups = int(g.max()) + 1 if n.size else 0
    df = n.size - n_groups
    if df < 1:
        return None
    group_counts = np.zeros((n_groups, counts.shape[1]))
    np.add.at(group_counts, g, counts)
    big_n = group_counts.sum(axis=1)
    pbar = group_counts / big_n[:, None]
    dev = counts / n[:, None] - pbar[g]
    s = (dev * n[:, None]).T @ dev
    # E[S] under no between-window variation: sum over groups of (k_g - 1) (D_g - p_g p_g')
    k_g = np.bincount(g, minlength=n_groups).astype(np.float64)
    e0 = np.diag(((k_g - 1.0)[:, None] * pbar).sum(axis=0)) - (
        (k_g - 1.0)[:, None, None] * pbar[:, :, None] * pbar[:, None, :]
    ).sum(axis=0)
    den = float(np.sum(big_n - np.bincount(g, n * n, n_groups) / big_n))
    if den <= 0:
        return None
    b = (s - e0) / den
    p = group_counts.sum(axis=0) / big_n.sum()
    live = p > 0
    if live.sum() < 2:
        return None
    root = np.sqrt(p[live])
    c = b[np.ix_(live, live)] / np.outer(root, root)
    vals, vecs = np.linalg.eigh((c + c.T) / 2.0)
    vals = np.where(vals > 0, vals, 0.0)
    if not np.any(vals > 0):
        return None
    out = np.zeros_like(b)
    out[np.ix_(live, live)] = (vecs * vals) @ vecs.T * np.outer(root, root)
    return out


def estimate(
    fp: FeatureProfile, fw: FeatureWindows, groups: np.ndarray | None = None
) -> FeatureVariation:
    """The between-window variation of a feature from its reference windows (``groups``: the
    season of each window, or None)."""
    k = fw.k
    groups = np.zeros(k, dtype=np.int64) if groups is None else np.asarray(groups)
    n_hist = fw.counts.sum(axis=1)
    usable = n_hist >= 2
    n_groups = len(np.unique(groups[usable])) if usable.any() else 0
    dof = int(usable.sum()) - n_groups
    if dof < MIN_WINDOWS:
        return FeatureVariation(int(usable.sum()), max(dof, 0), False)
    tau2 = tau2_dev = kurt = kurt_dev = skew = skew_dev = 0.0
    sd = math.nan
    if fw.t.shape[1]:
        n, mean, m2 = _moment_arrays(fw.t)
        tau2, _ = dersimonian_laird(n, mean, m2, groups)
        if tau2 > 0:
            skew, kurt = standardised_shape(n, mean, m2, groups, tau2)
        mle = fp.mle
        if isinstance(mle, MomentMLE) and mle.n:
            sd = math.sqrt(mle.t.variance)
        n, mean, m2 = _moment_arrays(fw.dev)
        if n.sum() > 0:
            tau2_dev, _ = dersimonian_laird(n, mean, m2, groups)
            if tau2_dev > 0:
                skew_dev, kurt_dev = standardised_shape(n, mean, m2, groups, tau2_dev)
    between = between_covariance(fw.counts, groups)
    units = _effective_units(fw, groups, usable, between, tau2, dof)
    if units < dof:
        # windows that move together: the deviations from the mean hold (1 - 1/units) of the
        # between-window variance, not the (1 - 1/k) the moment estimate assumed
        k_used = float(usable.sum())
        scale = (1.0 - 1.0 / k_used) / max(1.0 - 1.0 / units, 0.5)
        tau2, tau2_dev = tau2 * scale, tau2_dev * scale
    out = FeatureVariation(
        int(usable.sum()), dof, True, tau2, tau2_dev, sd, between, units, kurt, kurt_dev,
        skew, skew_dev,
    )  # fmt: skip
    if between is not None:
        spread, hist_skew = _histogram_spread(fp, fw, groups, out)
        out = replace(out, spread=spread, skewness_histogram=hist_skew)
    return out


def _histogram_spread(
    fp: FeatureProfile, fw: FeatureWindows, groups: np.ndarray, v: FeatureVariation
) -> tuple[float, float]:
    """Observed over modelled variance of the histogram statistic of the reference's own
    windows, each against its group's other windows (at least 1), and the skewness of their
    standardised statistics."""
    from divtransforms.significance import power_divergence

    cells = fp.bins.test_cells(fp.histogram.counts)
    ordered = isinstance(fp.bins, NumericBins)
    _, g = np.unique(groups, return_inverse=True)
    totals = np.zeros((int(g.max()) + 1, fw.counts.shape[1]), np.int64)
    np.add.at(totals, g, fw.counts)
    sizes = fw.counts.sum(axis=1)
    dev = var = 0.0
    resid: list[float] = []
    scale: list[float] = []
    for i in np.flatnonzero(sizes >= 2).tolist():
        rest = (totals[g[i]] - fw.counts[i]).astype(np.float64)
        if rest.sum() <= 0:
            continue
        a, b = comparison_table(fw.counts[i], rest, float(sizes[i]), cells, ordered)
        stat, dof = power_divergence(a, b)
        moments = _rao_scott_moments(int(dof), float(sizes[i]), rest, cells, v, 0.0, ordered)
        if moments is None:
            continue
        dev += (float(stat) - moments[0]) ** 2
        var += moments[1]
        resid.append(float(stat) - moments[0])
        scale.append(moments[1])
    if not var > 0:
        return 1.0, 0.0
    spread = max(1.0, dev / var)
    z = np.asarray(resid) / np.sqrt(np.asarray(scale) * spread)
    return spread, float(np.mean(z**3)) if z.size >= MIN_WINDOWS else 0.0


def _effective_units(
    fw: FeatureWindows,
    groups: np.ndarray,
    usable: np.ndarray,
    between: np.ndarray | None,
    tau2: float,
    dof: int,
) -> float:
    """The effective number of independent between-window deviations among ``dof``: the
    batch-means estimate of how much consecutive windows' deviations from their group move
    together (overlapping batches of ``2 sqrt(k)`` and ``4 sqrt(k)`` windows, the larger), for
    the between-window part (the sampling noise is independent from window to window). A
    day-level wander judged hour by hour has about one unit a day. Deviations are those of the
    mean of ``t`` when the feature has one, else of the bin proportions along the histogram's
    main between-window direction."""
    idx = np.flatnonzero(usable)
    if idx.size < 4:
        return float(max(dof, 1))
    g = groups[idx]
    n = fw.counts[idx].sum(axis=1).astype(np.float64)
    if fw.t.shape[1] and tau2 > 0:
        nt, mean, m2 = _moment_arrays(fw.t[idx])
        y = mean
        ok = nt >= 2
        s2 = float(m2[ok].sum() / (nt[ok] - 1.0).sum())
        noise = s2 / np.maximum(nt, 1.0)
    elif between is not None:
        counts = fw.counts[idx].astype(np.float64)
        props = counts / n[:, None]
        _, vecs = np.linalg.eigh((between + between.T) / 2.0)
        v = vecs[:, -1]
        y = props @ v
        p = counts.sum(axis=0) / n.sum()
        noise = (float(v * v @ p) - float(v @ p) ** 2) / n
    else:
        return float(max(dof, 1))
    _, gi = np.unique(g, return_inverse=True)
    r = y - (np.bincount(gi, y) / np.bincount(gi))[gi]
    var_r = float(np.mean(r * r))
    if not var_r > 0:
        return float(max(dof, 1))
    share = max(0.0, 1.0 - float(np.mean(noise)) / var_r)  # the between part of var(r)
    # overlapping batch means (Meketon and Schmeiser 1984) of 2 sqrt(k) and 4 sqrt(k) windows
    # (long enough to hold a day of hourly windows of 4 weeks, with many batches); the larger
    # inflation of the two (fewer units: heavier tails, the safe side of a noisy estimate)
    if share <= 0:
        return float(max(dof, 1))
    c = np.concatenate([[0.0], np.cumsum(r)])
    inflation = 1.0
    for factor in (2.0, 4.0):
        b = max(2, round(factor * math.sqrt(r.size)))
        if r.size < 2 * b:
            continue
        batch = (c[b:] - c[:-b]) / b
        raw = b * float(np.mean(batch * batch)) / var_r
        inflation = max(inflation, (raw - (1.0 - share)) / share)
    return float(min(max(dof / max(inflation, 1.0), 1.0), max(dof, 1)))


# -- the hooks of the tests ----------------------------------------------------------------------


def location_between(
    variation: FeatureVariation | None, share: float, dispersion: bool = False
) -> tuple[float, int, float, float] | None:
    """``(extra variance, dof, kurtosis, skewness)`` a location (``dispersion``: scale) test
    adds to its sampling variance: ``tau^2 (1 + share)``, ``share`` the larger of
    ``sum n_i^2 / N^2`` of the reference's windows and ``1 / units``; the degrees of freedom of
    that estimate (``units``) and the excess kurtosis and skewness of the between-window
    deviations. None when there is none (the test is today's)."""
    if variation is None or not variation.estimated:
        return None
    tau2 = variation.tau2_dev if dispersion else variation.tau2
    if not tau2 > 0:
        return None
    share = max(share, 1.0 / variation.units)
    kurtosis = variation.kurtosis_dev if dispersion else variation.kurtosis
    skewness = variation.skewness_dev if dispersion else variation.skewness
    return tau2 * (1.0 + share), max(1, math.floor(variation.units)), kurtosis, skewness


def histogram_between(
    statistic: float,
    dof: int,
    n: float,
    reference_counts: np.ndarray,
    cells: Any,
    variation: FeatureVariation | None,
    share: float,
    ordered: bool = False,
) -> tuple[float, float] | None:
    """``(p_value, dispersion)`` of a window's histogram statistic against a reference whose
    windows vary (second-order Rao-Scott, see the module docstring); None when the variation
    is 0 or not estimated (the test is today's). ``dispersion`` is ``E X^2 / dof``."""
    if variation is None or variation.between is None or dof < 1:
        return None
    moments = _rao_scott_moments(dof, n, reference_counts, cells, variation, share, ordered)
    if moments is None:
        return None
    mean, var, between_share = moments
    var *= variation.spread
    # a chi-square law matching the mean, the variance and the skewness (the model's, or the
    # reference windows' when theirs is larger): a * chi2_nu + c
    nu = 2.0 * mean * mean / var
    skew = max(math.sqrt(8.0 / nu), variation.skewness_histogram)
    nu = 8.0 / (skew * skew)
    a = math.sqrt(var / (2.0 * nu))
    statistic = max(statistic - (mean - a * nu), 0.0)
    # the between part of the mean is estimated on ``units`` degrees of freedom: an F law
    # whose denominator has the Satterthwaite degrees of freedom of the whole mean
    if between_share <= 0:
        return float(special.chdtrc(nu, statistic / a)), mean / dof
    d = variation.units / between_share**2
    return float(special.fdtrc(nu, d, statistic / (a * nu))), mean / dof


def _rao_scott_moments(
    dof: int,
    n: float,
    reference_counts: Any,
    cells: Any,
    variation: FeatureVariation,
    share: float,
    ordered: bool = False,
) -> tuple[float, float, float] | None:
    """Mean and variance of the histogram statistic of a window of ``n`` values under the
    between-window model, and the between part's share of the mean."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    big_n = float(ref.sum())
    if big_n <= 0 or n <= 0 or dof < 1 or variation.between is None:
        return None
    # the bins -> cells map of the test's comparison table for a window of n values
    onehot, ref_cells = comparison_table(np.eye(ref.size), ref, n, cells, ordered)
    if onehot.shape[-1] < 2:  # the window is judged by the exact two-cell test: left as it is
        return None
    p = ref_cells / big_n
    share = max(share, 1.0 / variation.units)
    b = onehot.T @ (variation.between * (1.0 + share)) @ onehot
    live = p > 0
    p, b = p[live], b[np.ix_(live, live)]
    m = n * big_n / (n + big_n)
    tr_c = float(np.sum(np.diag(b) / p))
    tr_c2 = float(np.sum(b * b / np.outer(p, p)))
    mean = dof + m * tr_c
    var = 2.0 * (dof + 2.0 * m * tr_c + m * m * tr_c2)
    return mean, var, m * tr_c / mean


# -- judging windows -----------------------------------------------------------------------------


@dataclass
class Judged:
    """What judges one feature's window: the reference (seasonal or whole), its variation, the
    share ``sum n_i^2 / N^2`` of its windows, and the record's ``season`` and ``variation``."""

    fp: FeatureProfile
    variation: FeatureVariation | None
    share: float
    season: str | None
    note: str


@dataclass
class WindowJudge:
    """Judges windows of a monitor against a windowed (and maybe seasonal) reference.

    ``window_micros``: the monitor's window (the summary is regrouped to it when it is a multiple
    of the reference's); ``season``: one of :data:`SEASONS` or None.
    """

    profile: ReferenceProfile
    window_micros: int | None = None
    season: str | None = None
    _cache: dict[Any, dict[str, Judged]] = field(default_factory=dict)
    _within_seasons: dict[str, FeatureVariation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        summary = self.profile.windows
        if summary is None:
            raise ValueError(
                f"reference {self.profile.reference_id} has no windowed summary: build it with "
                "a window (event time) or a chunk size"
            )
        if self.season is not None:
            if self.season not in SEASONS:
                raise ValueError(f"unknown season {self.season!r} (one of {', '.join(SEASONS)})")
            if summary.size_micros is None:
                raise ValueError("a seasonal reference needs event-time windows, not chunks")
        if self.window_micros and summary.size_micros and self.window_micros != summary.size_micros:
            if self.window_micros % summary.size_micros == 0:
                summary = summary.regrouped(self.window_micros, self.profile)
            else:
                _log.warning(
                    "reference windows of %g s are not a divisor of the monitor's %g s: the "
                    "between-window variation is that of the reference's windows",
                    summary.size_micros / 1e6,
                    self.window_micros / 1e6,
                )
        if self.window_micros is None and summary.size_micros is not None:
            _log.warning(
                "reference %s: windows of %g s judge a check without windows: the whole data "
                "is one window, and their between-window variation is applied to it as is",
                self.profile.reference_id,
                summary.size_micros / 1e6,
            )
        self._summary = summary
        self._seasons = season_of(self.season, summary.starts) if self.season is not None else None

    def judged(self, start_micros: int | None) -> dict[str, Judged]:
        """Per feature: what judges the window starting at ``start_micros``."""
        if self.season is None or start_micros is None:
            key: Any = None
        else:
            key = int(season_of(self.season, start_micros))
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = self._judged(key)
        return out

    def _judged(self, key: int | None) -> dict[str, Judged]:
        s = self._summary
        out: dict[str, Judged] = {}
        seasons = self._seasons
        for name, fp in self.profile.features.items():
            fw = s.features.get(name)
            if fw is None:
                continue
            if key is None or seasons is None:
                out[name] = self._whole(fp, fw, None)
                continue
            label = season_label(self.season or "", key)
            mine = np.flatnonzero((seasons == key) & (fw.counts.sum(axis=1) > 0))
            if mine.size < MIN_SEASON_WINDOWS:
                whole = self._whole(fp, fw, None)
                whole.season = f"{label} pooled"
                whole.note = (
                    f"{label}: {mine.size} reference window(s) < {MIN_SEASON_WINDOWS}, judged "
                    f"against the whole reference; {whole.note}"
                )
                out[name] = whole
                continue
            variation = self._within_seasons.get(name)
            if variation is None:
                variation = self._within_seasons[name] = estimate(fp, fw, seasons)
            hist = s.window_histogram(fp, name, int(mine[0]))
            mle = fw.accumulator(fp, int(mine[0]))
            for i in mine[1:].tolist():
                hist = hist.merge(s.window_histogram(fp, name, i))
                m = fw.accumulator(fp, i)
                mle = m if mle is None else mle if m is None else mle.merge(m)
            seasonal = replace(fp, histogram=hist, mle=mle)
            n_i = fw.counts[mine].sum(axis=1).astype(np.float64)
            share = float(np.sum(n_i * n_i) / n_i.sum() ** 2)
            out[name] = Judged(seasonal, variation, share, label, _note(variation, s, mine.size))
        return out

    def _whole(self, fp: FeatureProfile, fw: FeatureWindows, groups: Any) -> Judged:
        variation = estimate(fp, fw, groups)
        n_i = fw.counts.sum(axis=1).astype(np.float64)
        share = float(np.sum(n_i * n_i) / n_i.sum() ** 2) if n_i.sum() > 0 else 0.0
        return Judged(fp, variation, share, None, _note(variation, self._summary, fw.k))


def _note(v: FeatureVariation, s: WindowedSummary, k: int) -> str:
    unit = f"{s.size_micros / 1e6:g} s" if s.size_micros is not None else f"{s.chunk} rows"
    if not v.estimated:
        return (
            f"reference too short to estimate the between-window variation ({v.dof} residual "
            f"windows < {MIN_WINDOWS}): tests as for independent samples"
        )
    return f"between-window variation from {v.windows} reference windows of {unit} ({k} judging)"


def window_judge(
    profile: ReferenceProfile, window_micros: int | None = None, season: str | None = None
) -> WindowJudge | None:
    """The judge every driver uses: a windowed reference's :class:`WindowJudge`, None for a
    reference without windows (today's tests); a ``season`` needs a windowed reference."""
    if profile.windows is None:
        if season is not None:
            raise ValueError(
                f"season {season!r} needs a windowed reference: build {profile.reference_id} "
                "with a window (event time)"
            )
        return None
    return WindowJudge(profile, window_micros, season)
