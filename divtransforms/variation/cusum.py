"""The sequential detector's scores of a window judged by a windowed reference.

``divtransforms.sequential`` scores each window as an independent draw around the reference. A
windowed reference (``divtransforms.variation``) judges a window against its season's part of the
reference and the reference's own between-window variation; :func:`judged_score` gives the
detector the same null, and :class:`JudgedScores` is what the drivers hand the detector
(``running.RunningEstimates.seed``'s ``judge``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from divtransforms.bins import NumericBins
from divtransforms.mle import MomentMLE
from divtransforms.sequential import MAX_SCORE, WindowScore, histogram_score, window_score
from divtransforms.significance import comparison_table, mean_test, moment_columns, power_divergence
from divtransforms.variation.judge import Judged, WindowJudge
from divtransforms.variation.model import (
    _moment_arrays,
    _rao_scott_moments,
    histogram_between,
    location_between,
)

__all__ = ["JudgedScores", "judged_score"]


@dataclass(frozen=True)
class JudgedScores:
    """A windowed reference's judge as the detector's scorer sees it: what judges a window
    (``judged``) and its score (``score``, :func:`judged_score`)."""

    judge: WindowJudge
    _horizons: dict[tuple[str, bool], float] = field(default_factory=dict, compare=False)

    def judged(self, start_micros: int | None) -> dict[str, Judged]:
        return self.judge.judged(start_micros)

    def score(self, judged: Judged, hist: Any, mle_window: Any, shift: float) -> WindowScore:
        seasonal = judged.season is not None and not judged.season.endswith("pooled")
        key = (judged.fp.name, seasonal)
        if key not in self._horizons:
            fw = self.judge._summary.features.get(judged.fp.name)
            groups = self.judge._seasons if seasonal else None
            self._horizons[key] = 1.0 if fw is None else horizon_inflation(fw, groups)
        return judged_score(judged, hist, mle_window, shift, self._horizons[key])


HORIZON_BATCHES = (3, 6, 12, 24)  # windows: the detector's own horizon (h / k is tens of windows)


def horizon_inflation(fw: Any, groups: Any = None) -> float:
    """How much consecutive reference windows' between-window deviations move together over a
    detector's horizon: the largest batch-means inflation over batches of
    :data:`HORIZON_BATCHES` windows (as ``variation.model``'s ``units``, whose batches of
    ``2 sqrt(k)`` windows and more measure the long run: a daily cycle judged without its season
    averages out over them, yet moves a CUSUM's dozens of windows together). 1 without a
    location (categorical) or between-window deviations."""
    if not fw.t.shape[1]:
        return 1.0
    n, mean, m2 = _moment_arrays(fw.t)
    ok = n >= 2
    if ok.sum() < 4 * HORIZON_BATCHES[0]:
        return 1.0
    g = np.zeros(int(ok.sum()), dtype=np.int64) if groups is None else np.asarray(groups)[ok]
    n, mean, m2 = n[ok], mean[ok], m2[ok]
    s2 = float(m2.sum() / (n - 1.0).sum())
    _, gi = np.unique(g, return_inverse=True)
    r = mean - (np.bincount(gi, mean) / np.bincount(gi))[gi]
    free = r.size - (int(gi.max()) + 1)
    var_r = float(np.sum(r * r)) / max(free, 1)
    if free < 2 or not var_r > 0:
        return 1.0
    share = 1.0 - float(np.mean(s2 / n)) / var_r  # the between part of var(r)
    if not share > 0:
        return 1.0
    c = np.concatenate([[0.0], np.cumsum(r)])
    best = 1.0
    for b in HORIZON_BATCHES:
        if r.size < 4 * b:
            continue
        batch = (c[b:] - c[:-b]) / b
        raw = b * float(np.mean(batch * batch)) / (1.0 - b / r.size) / var_r
        best = max(best, (raw - (1.0 - share)) / share)
    return best


def judged_scores(judge: WindowJudge | None) -> JudgedScores | None:
    """The detector's scorer of ``judge`` (None: a plain reference, today's scores)."""
    return None if judge is None else JudgedScores(judge)


def judged_score(
    judged: Judged, hist: Any, mle_window: Any, shift: float, horizon: float = 1.0
) -> WindowScore:
    """The detector inputs of one feature's window judged by a windowed reference
    (``divtransforms.variation.Judged``): the same null as the per-window tests.

    The window is scored against ``judged.fp`` (its season's part of the reference when a season
    judges it), its location score is the between-window mean test's (``tau^2`` of the season or
    the pooled one, the t of its uncertainty: ``variation.location_between``) and its histogram
    score the Rao-Scott test's (``variation.histogram_between``). Windows that wander together
    (a day-level wander judged hour by hour) are not independent draws: a CUSUM sums their
    deviations, so each score is divided by ``g``, the square root of its long-run variance per
    window, ``g^2 = a + w L + c`` (``a``: the window's own sampling share of the score's variance,
    ``w``: the between-window share, ``c``: the reference's, shared by every window and carried
    as the offset of :func:`alarm_rate`; ``L = dof / units``, the batch-means inflation of
    consecutive windows' deviations, ``FeatureVariation.units``, or ``horizon``, the inflation
    over the detector's horizon, :func:`horizon_inflation`, when larger). The histogram score's
    between-window share is that of the Rao-Scott variance. With no variation estimated the
    scores are :func:`window_score`'s against ``judged.fp``."""
    fp, v = judged.fp, judged.variation
    base = window_score(fp, hist, mle_window)
    if v is None or not v.estimated:
        return base
    wander = max(1.0, v.dof / v.units) if math.isfinite(v.units) and v.units > 0 else 1.0
    wander = max(wander, horizon)
    loc, scale, shared, g_loc, g_hist = base.location, base.scale, base.shared, 1.0, 1.0
    ref = fp.mle if isinstance(fp.mle, MomentMLE) else None
    win = mle_window if isinstance(mle_window, MomentMLE) else None
    between = location_between(v, judged.share)
    if between is not None and ref is not None and win is not None and math.isfinite(loc):
        var_r = ref.t.m2 / max(ref.t.n - 1.0, 1.0)
        u, p, _ = mean_test(moment_columns(win.t), moment_columns(ref.t), between)
        if math.isfinite(float(p)) and var_r > 0:
            z = float(np.sign(u) * min(-float(special.ndtri(float(p) / 2.0)), MAX_SCORE))
            own, tau2 = 1.0 / win.t.n, v.tau2 / var_r
            common = 1.0 / ref.t.n + between[0] / var_r - tau2
            total = own + tau2 + common
            g2 = (own + tau2 * wander + common) / total
            g = math.sqrt(g2)
            loc, scale, shared = z / g, 1.0 / (math.sqrt(total) * g), common / total / g2
            g_loc = g
    hs, hist_mu = base.histogram, math.nan
    if math.isfinite(hs) and v.between is not None:
        ref_counts = fp.histogram.counts
        cells = fp.bins.test_cells(ref_counts)
        ordered = isinstance(fp.bins, NumericBins)
        a, b = comparison_table(hist.counts, ref_counts, hist.n, cells)
        stat, dof = power_divergence(a, b)
        k = int(dof)
        adjusted = histogram_between(float(stat), k, hist.n, ref_counts, cells, v, judged.share,
                                     ordered)  # fmt: skip
        moments = _rao_scott_moments(k, hist.n, ref_counts, cells, v, judged.share, ordered)
        if adjusted is not None and moments is not None:
            mean, var, _, between_share = moments
            var *= v.spread
            within = 2.0 * (k + 2.0 * between_share * mean)  # the window's own part
            rho = min(max(1.0 - within / var, 0.0), 1.0) if var > 0 else 0.0
            g = math.sqrt(1.0 + (wander - 1.0) * rho)
            big_n = float(fp.histogram.n)
            m = hist.n * big_n / (hist.n + big_n)
            alt = histogram_between(mean + shift * shift * m, k, hist.n, ref_counts, cells, v,
                                    judged.share, ordered)  # fmt: skip
            hs, g_hist = float(histogram_score(adjusted[0])) / g, g
            if alt is not None:
                hist_mu = float(histogram_score(alt[0])) / g
    return base._replace(location=loc, scale=scale, shared=shared, histogram=hs, hist_mu=hist_mu,
                         g=g_loc, hist_g=g_hist)  # fmt: skip
