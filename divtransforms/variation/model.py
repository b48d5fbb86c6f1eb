"""The between-window variation of one feature, and what it adds to the tests.

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

The between-window deviations are windows' deviations from their group (season) means; windows
that move together (a day-level wander judged hour by hour) count as fewer independent units
(``FeatureVariation.units``, from batch means of consecutive windows).

References: R. DerSimonian and N. Laird (1986), "Meta-analysis in clinical trials", Controlled
Clinical Trials 7; J. N. K. Rao and A. J. Scott (1981), "The analysis of categorical data from
complex sample surveys", JASA 76; J. P. T. Higgins, S. G. Thompson and D. J. Spiegelhalter
(2009), "A re-evaluation of random-effects meta-analysis", JRSS A 172.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from divtransforms.bins import NumericBins
from divtransforms.mle import MomentMLE
from divtransforms.significance import comparison_table

if TYPE_CHECKING:
    from divtransforms.features import FeatureProfile
    from divtransforms.variation.summary import FeatureWindows

__all__ = [
    "MIN_WINDOWS",
    "FeatureVariation",
    "ScaleAdjustment",
    "between_basis",
    "between_covariance",
    "dersimonian_laird",
    "estimate",
    "estimate_without",
    "histogram_between",
    "location_between",
    "scale_adjustment",
    "standardised_shape",
]

MIN_WINDOWS = 10  # residual degrees of freedom needed to estimate the variation


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
    units_dof: float = math.inf  # the degrees of freedom the tests give the variation's
    # estimate: ``units`` less the uncertainty of ``units`` itself (see ``_effective_units``)
    kurtosis: float = 0.0  # excess kurtosis of the standardised deviations of t's window means
    kurtosis_dev: float = 0.0  # the same of |t - c|'s
    skewness: float = 0.0  # skewness of the standardised deviations of t's window means
    skewness_dev: float = 0.0  # the same of |t - c|'s
    skewness_histogram: float = 0.0  # of the reference windows' standardised statistics
    scale_slopes: tuple[float, float] | None = None  # of the mean of |t - c| on the window's
    # location (d = mean t - c, q = d^2 - s^2 / n), within groups; None: not adjusted
    center: float = math.nan  # c, the reference centre of |t - c|
    s2: float = math.nan  # the pooled within-window variance of t
    spread: float = 1.0  # the histogram statistic's variance: observed on the reference's own
    # windows over the model's (at least 1; second-order moments of a non-normal wander)

    @property
    def tau(self) -> float:
        """``sqrt(tau^2)`` in reference standard deviations of ``t``."""
        return math.sqrt(self.tau2) / self.sd if self.sd > 0 else 0.0


def _moment_arrays(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return m[:, 0], m[:, 1] + m[:, 2], m[:, 3]


def standardised_shape(
    n: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    groups: np.ndarray,
    tau2: float,
    units: float = math.inf,
) -> tuple[float, float]:
    """Skewness and excess kurtosis (>= 0) of the between-window part of the window means'
    deviations from their group means: how far from normal the between-window deviations are
    (their tails). The deviations, each standardised by ``sqrt(s^2 / n_i + tau^2)``, hold the
    between part (a share ``f`` of their variance) and sampling noise, which dilutes the fourth
    cumulant: the between part's excess kurtosis is theirs over ``f^2`` (the tests weight it by
    the between part's share again; without this, the scale of windows that hold a few clusters
    of rows had tails 7 times too heavy at the dispersion test's level). The skewness is left
    diluted, and shrunk towards 0 by its own sampling noise (positive-part James-Stein:
    ``g (1 - v / g^2)``, ``v = 6 (f^3 / units + (1 - f^3) / k)`` the variance of a normal
    sample's skewness from ``units`` independent between parts and ``k`` windows' sampling
    noise): a noisy skewness in Hall's transformation makes both tails heavier, and with large
    windows the deviations are nearly all between part, from only ``units`` independent draws
    (a day-level wander of 28 days: the skewness' sd is 0.42, and the location test alerted at
    1.2% for a level of 0.86%)."""
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
    kurt = max(0.0, float(np.mean(z**4)) / z2**2 - 3.0)
    f = float(np.mean(tau2 / (s2 / n + tau2))) if tau2 > 0 else 0.0
    skew = _shrunk_skewness(skew, f, n.size, units)
    if not f > 0:
        return skew, kurt
    return skew, kurt / (f * f)


def _shrunk_skewness(skew: float, f: float, k: int, units: float) -> float:
    """``skew`` shrunk by its sampling variance (see :func:`standardised_shape`)."""
    f3 = min(max(f, 0.0), 1.0) ** 3
    m = min(max(units, 1.0), float(k))
    noise = 6.0 * (f3 / m + (1.0 - f3) / k)
    if not skew * skew > noise:
        return 0.0
    return skew * (1.0 - noise / (skew * skew))


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


def between_covariance(
    counts: np.ndarray, groups: np.ndarray, basis: np.ndarray | None = None
) -> np.ndarray | None:
    """The between-window covariance of bin proportions beyond multinomial noise (PSD; None
    when it is 0), by the method of moments about each group's pooled proportions. ``basis``:
    the eigenvectors (of ``D^-1/2 B D^-1/2`` on the live bins) to project on, instead of the
    estimate's own (``between_basis``; one eigendecomposition for many estimates that differ
    by a window)."""
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
    if basis is not None and basis.shape[0] == c.shape[0]:
        vecs = basis
        vals = np.einsum("ij,ik,kj->j", vecs, (c + c.T) / 2.0, vecs)
    else:
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
    sd = center = s2_t = math.nan
    slopes: tuple[float, float] | None = None
    if fw.t.shape[1]:
        n, mean, m2 = _moment_arrays(fw.t)
        tau2, _ = dersimonian_laird(n, mean, m2, groups)
        mle = fp.mle
        if isinstance(mle, MomentMLE) and mle.n:
            sd = math.sqrt(mle.t.variance)
        nd, mean_dev, m2_dev = _moment_arrays(fw.dev)
        center = float(getattr(mle, "center", math.nan))
        if nd.sum() > 0:
            if tau2 > 0 and math.isfinite(center):
                # the windows' own location moves the mean of |t - c|: regress it out
                fit = _scale_slopes(n, mean, m2, nd, mean_dev, groups, center)
                if fit is not None:
                    slopes, s2_t, mean_dev = fit
            tau2_dev, _ = dersimonian_laird(nd, mean_dev, m2_dev, groups)
    between = between_covariance(fw.counts, groups)
    units, units_dof = _effective_units(fw, groups, usable, between, tau2, dof)
    if tau2 > 0:
        skew, kurt = standardised_shape(n, mean, m2, groups, tau2, units)
    if tau2_dev > 0:
        skew_dev, kurt_dev = standardised_shape(nd, mean_dev, m2_dev, groups, tau2_dev, units)
    if units < dof:
        # windows that move together: the deviations from the mean hold (1 - 1/units) of the
        # between-window variance, not the (1 - 1/k) the moment estimate assumed
        k_used = float(usable.sum())
        scale = (1.0 - 1.0 / k_used) / max(1.0 - 1.0 / units, 0.5)
        tau2, tau2_dev = tau2 * scale, tau2_dev * scale
    out = FeatureVariation(
        int(usable.sum()), dof, True, tau2, tau2_dev, sd, between, units, units_dof, kurt,
        kurt_dev, skew, skew_dev, scale_slopes=slopes, center=center, s2=s2_t,
    )  # fmt: skip
    if between is not None:
        spread, hist_skew = _histogram_spread(fp, fw, groups, out)
        out = replace(out, spread=spread, skewness_histogram=hist_skew)
    return out


def between_basis(counts: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
    """The eigenvectors :func:`between_covariance` projects on, for its ``basis``."""
    b = between_covariance(counts, groups)
    if b is None:
        return None
    p = counts.sum(axis=0) / max(float(counts.sum()), 1.0)
    live = p > 0
    root = np.sqrt(p[live])
    c = b[np.ix_(live, live)] / np.outer(root, root)
    return np.asarray(np.linalg.eigh((c + c.T) / 2.0)[1])


def estimate_without(
    fp: FeatureProfile,
    fw: FeatureWindows,
    groups: np.ndarray | None,
    full: FeatureVariation,
    leave: np.ndarray,
    basis: np.ndarray | None = None,
) -> FeatureVariation:
    """``full`` (:func:`estimate` of all the windows) re-estimated without the windows
    ``leave`` (a boolean mask): the variances ``tau^2`` of location and scale and the histogram's
    between-window covariance from the other windows; the calibrations that describe the feed
    rather than one window (effective windows, shapes, the scale's slopes, the histogram's
    spread) are the full estimate's, and the histogram's covariance is made positive
    semi-definite on ``basis`` (:func:`between_basis` of all the windows) when given. Far
    cheaper than :func:`estimate` per window left out, for the leave-one-window-out diagnostic
    (``divtransforms.own_windows``)."""
    if not full.estimated:
        return full
    keep = ~np.asarray(leave, dtype=bool)
    sub = fw.take(keep)
    g = np.zeros(sub.k, dtype=np.int64) if groups is None else np.asarray(groups)[keep]
    usable = sub.counts.sum(axis=1) >= 2
    n_groups = len(np.unique(g[usable])) if usable.any() else 0
    dof = int(usable.sum()) - n_groups
    if dof < MIN_WINDOWS:
        return FeatureVariation(int(usable.sum()), max(dof, 0), False)
    tau2 = tau2_dev = 0.0
    if sub.t.shape[1]:
        n, mean, m2 = _moment_arrays(sub.t)
        tau2, _ = dersimonian_laird(n, mean, m2, g)
        nd, mean_dev, m2_dev = _moment_arrays(sub.dev)
        if nd.sum() > 0:
            if full.scale_slopes is not None:
                d, q = _location_terms(n, mean, full.s2, full.center)
                x = np.stack([d, q], axis=1)
                _, gi = np.unique(g, return_inverse=True)
                ok = (n >= 2) & (nd >= 2)
                w = np.where(ok, nd, 0.0)
                sw = np.maximum(np.bincount(gi, w), 1e-300)
                xbar = np.stack([np.bincount(gi, w * x[:, j]) for j in range(2)], axis=1)
                xc = x - (xbar / sw[:, None])[gi]
                mean_dev = np.where(ok, mean_dev - xc @ np.asarray(full.scale_slopes), mean_dev)
            tau2_dev, _ = dersimonian_laird(nd, mean_dev, m2_dev, g)
    if full.units < dof:
        scale = (1.0 - 1.0 / float(usable.sum())) / max(1.0 - 1.0 / full.units, 0.5)
        tau2, tau2_dev = tau2 * scale, tau2_dev * scale
    between = between_covariance(sub.counts, g, basis)
    return replace(
        full, windows=int(usable.sum()), dof=dof, tau2=tau2, tau2_dev=tau2_dev, between=between
    )


def _location_terms(
    n: np.ndarray, mean: np.ndarray, s2: float, center: float
) -> tuple[np.ndarray, np.ndarray]:
    """``d = mean - c`` and ``q = d^2 - s^2 / n`` (unbiased for the squared shift)."""
    d = mean - center
    return d, d * d - s2 / np.maximum(n, 1.0)


def _scale_slopes(
    n: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    nd: np.ndarray,
    mean_dev: np.ndarray,
    groups: np.ndarray,
    center: float,
) -> tuple[tuple[float, float], float, np.ndarray] | None:
    """How a window's own location moves its mean of ``|t - c|``: a window shifted by ``d``
    has ``E|e + d| ~ E|e| + a d + b d^2`` (``b`` about the density at the centre), which a
    day-level wander or grouped rows turn into between-window variation of the scale that is no
    change of scale. The slopes ``(a, b)`` by least squares (weights ``n_i``) of the windows'
    means of ``|t - c|`` on ``d_i`` and ``q_i`` within groups; returns them, the pooled
    within-window variance ``s^2`` of ``t`` and the means of ``|t - c|`` less the fit (their
    ``n``-weighted group means unchanged, so the reference's own pooled statistics hold)."""
    ok = (n >= 2) & (nd >= 2)
    if ok.sum() < MIN_WINDOWS:
        return None
    s2 = float(m2[ok].sum() / (n[ok] - 1.0).sum())
    if not s2 > 0:
        return None
    d, q = _location_terms(n, mean, s2, center)
    x = np.stack([d, q], axis=1)
    _, g = np.unique(groups, return_inverse=True)
    w = np.where(ok, nd, 0.0)
    sw = np.maximum(np.bincount(g, w), 1e-300)
    xc = x - (np.stack([np.bincount(g, w * x[:, j]) for j in range(2)], axis=1) / sw[:, None])[g]
    y = np.where(ok, mean_dev, 0.0)
    yc = y - (np.bincount(g, w * y) / sw)[g]
    xtx = (xc * w[:, None]).T @ xc
    if not np.linalg.cond(xtx) < 1e12:
        return None
    beta = np.linalg.solve(xtx, (xc * w[:, None]).T @ yc)
    adjusted = np.where(ok, mean_dev - xc @ beta, mean_dev)
    return (float(beta[0]), float(beta[1])), s2, adjusted


@dataclass(frozen=True)
class ScaleAdjustment:
    """The part of a window's mean of ``|t - c|`` its own location explains (see
    ``_scale_slopes``), about the judging reference windows' average ``(d, q)``. Beyond the
    range of the reference windows' ``d`` the quadratic goes on along its tangent (``E|e + d|``
    grows like ``|d|`` far away: a window far away is the location test's, and must not look
    like a change of scale either way). A window of more than twice the largest reference
    window's values (the whole data judged as one window against chunks or hours) holds many
    locations of its own: the fit of windows of the reference's size does not apply to it, and
    it is left as it is."""

    slopes: tuple[float, float]
    center: float
    s2: float
    d_ref: float
    q_ref: float
    d_range: tuple[float, float]
    n_max: float

    def adjust(self, n: Any, mean_t: Any, mean_dev: Any) -> Any:
        """The window's mean of ``|t - c|`` less what its location explains."""
        n = np.asarray(n, np.float64)
        if np.all(n > 2.0 * self.n_max):
            return mean_dev
        d = np.asarray(mean_t, np.float64) - self.center
        edge = np.clip(d, *self.d_range)
        q = edge * (2.0 * d - edge) - self.s2 / np.maximum(n, 1.0)  # d^2 - s^2/n inside
        fit = self.slopes[0] * (d - self.d_ref) + self.slopes[1] * (q - self.q_ref)
        return mean_dev - np.where(n > 2.0 * self.n_max, 0.0, fit)


def scale_adjustment(
    variation: FeatureVariation | None, fw: FeatureWindows, idx: np.ndarray
) -> ScaleAdjustment | None:
    """The :class:`ScaleAdjustment` of windows judged against reference windows ``idx`` (all,
    or a season's); None when the variation has none (the dispersion test is today's)."""
    if variation is None or variation.scale_slopes is None or not fw.t.shape[1]:
        return None
    n, mean, _ = _moment_arrays(fw.t[idx])
    ok = n >= 2
    if not ok.any():
        return None
    d, q = _location_terms(n[ok], mean[ok], variation.s2, variation.center)
    w = n[ok] / n[ok].sum()
    n_all, mean_all, _ = _moment_arrays(fw.t)
    d_all = mean_all[n_all >= 2] - variation.center
    return ScaleAdjustment(
        variation.scale_slopes, variation.center, variation.s2, float(w @ d), float(w @ q),
        (float(d_all.min()), float(d_all.max())), float(n_all.max()),
    )  # fmt: skip


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
) -> tuple[float, float]:
    """``(units, units_dof)``: ``units`` the effective number of independent between-window
    deviations among ``dof``, the batch-means estimate of how much consecutive windows'
    deviations from their group move together (overlapping batches of ``2 sqrt(k)`` and
    ``4 sqrt(k)`` windows, the larger; Meketon and Schmeiser's bias correction), for the
    between-window part (the sampling noise is independent from window to window). A day-level
    wander judged hour by hour has about one unit a day. Deviations are those of the mean of
    ``t`` when the feature has one, else of the bin proportions along the histogram's main
    between-window direction.

    ``units_dof`` carries the uncertainty of that estimate into the tests: the batch-means
    inflation of ``b``-window batches over ``k`` windows is a variance estimate on about
    ``nu = 1.5 k / b`` degrees of freedom (Meketon and Schmeiser), so ``1 / units`` is known up
    to a factor ``nu / chi2_nu``, whose mean is ``nu / (nu - 2)``: the relative variance of the
    variation's estimate is on average ``2 / units_dof`` with
    ``units_dof = units (nu - 2) / nu`` (a Satterthwaite moment match)."""
    idx = np.flatnonzero(usable)
    if idx.size < 4:
        return float(max(dof, 1)), float(max(dof, 1))
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
        return float(max(dof, 1)), float(max(dof, 1))
    _, gi = np.unique(g, return_inverse=True)
    r = y - (np.bincount(gi, y) / np.bincount(gi))[gi]
    free = r.size - (int(gi.max()) + 1)  # deviations from the group means: k - groups free
    if free < 2:
        return float(max(dof, 1)), float(max(dof, 1))
    var_r = float(np.sum(r * r)) / free
    if not var_r > 0:
        return float(max(dof, 1)), float(max(dof, 1))
    share = max(0.0, 1.0 - float(np.mean(noise)) / var_r)  # the between part of var(r)
    # overlapping batch means (Meketon and Schmeiser 1984) of 2 sqrt(k) and 4 sqrt(k) windows
    # (long enough to hold a day of hourly windows of 4 weeks, with many batches); the larger
    # inflation of the two (fewer units: heavier tails, the safe side of a noisy estimate)
    if share <= 0:
        return float(max(dof, 1)), float(max(dof, 1))
    c = np.concatenate([[0.0], np.cumsum(r)])
    inflation, nu = 1.0, math.inf
    for factor in (2.0, 4.0):
        b = max(2, round(factor * math.sqrt(r.size)))
        if r.size < 2 * b:
            continue
        batch = (c[b:] - c[:-b]) / b
        # deviations from their group means sum to 0 within groups: for independent
        # deviations E[b batch^2] = var (1 - b / k), the overlapping batch means' bias
        raw = b * float(np.mean(batch * batch)) / (1.0 - b / r.size) / var_r
        batches = (raw - (1.0 - share)) / share
        if batches > inflation:
            inflation, nu = batches, 1.5 * r.size / b
    units = float(min(max(dof / max(inflation, 1.0), 1.0), max(dof, 1)))
    if units >= dof or not math.isfinite(nu):
        return units, units
    return units, max(1.0, units * max(nu - 2.0, 1.0) / nu)


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
    return tau2 * (1.0 + share), max(1, math.floor(variation.units_dof)), kurtosis, skewness


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
    mean, var, third, between_share = moments
    model_skew = third / var**1.5  # of sum lambda_j chi2_1: one large lambda_j (a wander of the
    # location seen by every bin) makes it far more skewed than a chi-square of the same mean
    var *= variation.spread
    # a chi-square law matching the mean, the variance and the skewness (the model's, or the
    # reference windows' when theirs is larger): a * chi2_nu + c
    skew = max(model_skew, variation.skewness_histogram, 1e-6)
    nu = 8.0 / (skew * skew)
    a = math.sqrt(var / (2.0 * nu))
    statistic = max(statistic - (mean - a * nu), 0.0)
    # the between part of the mean is estimated on ``units`` degrees of freedom: an F law
    # whose denominator has the Satterthwaite degrees of freedom of the whole mean
    if between_share <= 0:
        return float(special.chdtrc(nu, statistic / a)), mean / dof
    d = variation.units_dof / between_share**2
    return float(special.fdtrc(nu, d, statistic / (a * nu))), mean / dof


def _rao_scott_moments(
    dof: int,
    n: float,
    reference_counts: Any,
    cells: Any,
    variation: FeatureVariation,
    share: float,
    ordered: bool = False,
) -> tuple[float, float, float, float] | None:
    """Mean, variance and third cumulant of the histogram statistic of a window of ``n`` values
    under the between-window model (``sum_j lambda_j chi2_1``: ``k_r = 2^(r-1) (r-1)!
    sum lambda_j^r``), and the between part's share of the mean."""
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
    c = b / np.sqrt(np.outer(p, p))
    tr_c = float(np.trace(c))
    c2 = c @ c
    tr_c2 = float(np.trace(c2))
    tr_c3 = float(np.sum(c2 * c.T))
    mean = dof + m * tr_c
    var = 2.0 * (dof + 2.0 * m * tr_c + m * m * tr_c2)
    third = 8.0 * (dof + 3.0 * m * tr_c + 3.0 * m * m * tr_c2 + m**3 * tr_c3)
    return mean, var, third, m * tr_c / mean
