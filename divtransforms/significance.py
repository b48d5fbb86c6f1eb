"""The tests that decide drift (DESIGN.md section 3), valid whatever the feature's true shape.

Every function here is vectorised (one row per window), so drift records, the policy and the
calibration benchmark run the very same code.

``histogram``: the two-sample G-test of homogeneity
    For two histograms on the same bins, with weights ``pi_a = n_a / N`` and ``pi_b = n_b / N``,
    the weighted Jensen-Shannon divergence equals the mutual information between "bin" and "which
    sample", and ``G = 2 N ln(2) JS_pi`` (JS in bits) is asymptotically chi-square with ``K' - 1``
    degrees of freedom (``K'`` bins non-empty in either histogram). Cells the window is expected to
    fill with fewer than ``POOL_EXPECTED`` values (judged from the reference's shares) are pooled
    into one first, and the p-value uses Williams' correction ``G / q`` (Williams 1976): with both,
    the test holds its level on tables with many rare categories or sparse tail bins.

``mean`` and ``dispersion``: two-sample tests of a mean, from mergeable moments
    ``mean`` compares the mean of the family's value ``t`` (``x``, or ``log x`` for the
    lognormal) in the window with the reference's; ``dispersion`` does the same for ``|t - c|``,
    the absolute deviation from a centre ``c`` fixed by the reference (a Levene-type scale test:
    unlike a variance ratio it keeps its level on heavy tails, where the kurtosis that a variance
    test needs cannot be estimated). The statistic ``z = (mean_w - mean_r) / (s sqrt(1/n_w +
    1/n_r))`` uses the variance ``s^2`` of the pooled sample, so it is the normal approximation to
    the Fisher-Pitman permutation test, which is exact under "no drift" for any distribution. Its
    skewness and kurtosis under that null follow from the pooled third and fourth moments:
    ``delta = g1 (a - b) / sqrt(a + b)`` and ``k = g2 (a^3 + b^3) / (a + b)^2`` with ``a = 1/n_w``,
    ``b = 1/n_r``. Hall's monotone transformation ``u = z - delta (z^2 - 1) / 6 + delta^2 z^3 / 27``
    removes the skewness; the excess kurtosis is matched by a Student t with ``4 + 6 / k`` degrees
    of freedom scaled to unit variance. Where ``|delta| > MAX_SKEW`` the window is too small for
    a mean of such skewed values to be near normal, and the test is not applied (NaN).
    Effect size: ``|mean_w - mean_r|`` in reference standard deviations of the tested value.

References: P. Hall (1992), "On the removal of skewness by transformation", JRSS B 54; D. A.
Williams (1976), "Improved likelihood ratio tests for complete contingency tables", Biometrika 63.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from divtransforms.moments import merge_moments

__all__ = [
    "MAX_SKEW",
    "POOL_EXPECTED",
    "DriftTest",
    "GTest",
    "g_statistics",
    "g_test",
    "js_bias",
    "mean_test",
    "pool_cells",
    "sparse_cells",
    "williams_q",
]

MAX_SKEW = 0.6
POOL_EXPECTED = 5.0


class DriftTest(NamedTuple):
    """One test over a batch of windows: signed statistic, p-value and effect (NaN = not applied).

    ``kind`` is ``histogram``, ``location`` (the mean) or ``dispersion``.
    """

    name: str
    kind: str
    statistic: np.ndarray
    p_value: np.ndarray
    effect: np.ndarray


class GTest(NamedTuple):
    g_statistic: float
    dof: int
    p_value: float  # Williams-corrected: chi-square survival of G / q
    js_weighted: float  # the weighted JS (bits) between the two samples: G / (2 N ln 2)
    williams_q: float


def g_statistics(counts_a: ArrayLike, counts_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``G`` and ``dof = K' - 1`` of each row of ``counts_a`` against ``counts_b`` (broadcast)."""
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(counts_b, dtype=np.float64), a.shape)
    n_a = a.sum(axis=-1, keepdims=True)
    n_b = b.sum(axis=-1, keepdims=True)
    col = a + b
    total = n_a + n_b
    safe = np.where(col > 0, col, 1.0)  # empty bins contribute 0 ln 0 = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # G = 2 sum O ln(O / E), E = row_total * col_total / N.
        ga = special.xlogy(a, a * total / (n_a * safe)).sum(axis=-1)
        gb = special.xlogy(b, b * total / (n_b * safe)).sum(axis=-1)
    g = np.maximum(2.0 * np.nan_to_num(ga + gb, nan=0.0), 0.0)
    dof = (col > 0).sum(axis=-1) - 1
    return g, dof


def williams_q(n_cur: ArrayLike, n_ref: ArrayLike, col_totals: ArrayLike) -> np.ndarray:
    """Williams' correction factor for the 2 x K G-test (Williams 1976; Sokal & Rohlf, Biometry).

    ``q = 1 + (N (1/n_cur + 1/n_ref) - 1) (N sum_j 1/C_j - 1) / (6 N (K' - 1))`` with ``C_j`` the
    non-zero bin totals and ``K'`` their number; ``G / q`` follows chi-square more closely.
    """
    n_cur = np.asarray(n_cur, dtype=np.float64)
    n_ref = np.asarray(n_ref, dtype=np.float64)
    cols = np.asarray(col_totals, dtype=np.float64)
    total = n_cur + n_ref
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(cols > 0, 1.0 / np.where(cols > 0, cols, 1.0), 0.0).sum(axis=-1)
        k = (cols > 0).sum(axis=-1)
        q = 1.0 + (total * (1.0 / n_cur + 1.0 / n_ref) - 1.0) * (total * inv - 1.0) / (
            6.0 * total * np.maximum(k - 1, 1)
        )
    return np.where(np.isfinite(q) & (q > 0), q, 1.0)


def sparse_cells(reference: ArrayLike, n: float, min_expected: float = POOL_EXPECTED) -> np.ndarray:
    """Cells a window of ``n`` values is expected to fill with fewer than ``min_expected`` values,
    from the reference's shares alone (so the partition does not depend on the window's data)."""
    ref = np.asarray(reference, dtype=np.float64)
    total = ref.sum()
    if total <= 0:
        return np.zeros(ref.shape, dtype=bool)
    return n * ref / total < min_expected


def pool_cells(counts: ArrayLike, sparse: np.ndarray) -> np.ndarray:
    """``counts`` (1-D or rows) with the ``sparse`` cells summed into one last cell."""
    c = np.asarray(counts)
    if not sparse.any():
        return c
    return np.concatenate([c[..., ~sparse], c[..., sparse].sum(axis=-1, keepdims=True)], axis=-1)


def g_test(
    counts_a: ArrayLike, counts_b: ArrayLike, pool: bool = True, also_pool: Any = None
) -> GTest:
    """Two-sample G-test of homogeneity of a window's counts (``a``) against a reference's (``b``).

    With ``pool`` (the default), the cells the window is expected to fill with fewer than
    ``POOL_EXPECTED`` values (``sparse_cells``) are pooled into one first, with the cells of
    ``also_pool`` (a boolean mask, e.g. ``CategoricalBins.boundary_cells``): many sparse cells
    (rare categories, tail bins) make G liberal even with Williams' correction. Returns ``G``,
    degrees of freedom ``K' - 1`` (``K'`` the non-empty cells), the Williams-corrected chi-square
    p-value, the weighted JS in bits and Williams' ``q``. With fewer than two non-empty cells
    there is nothing to test: ``G = 0``, ``p = 1``, ``dof = 0``; ``p`` is NaN when a sample is
    empty, since nothing was observed.
    """
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.asarray(counts_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"g_test needs two 1-D count vectors of the same length, got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.any(a < 0) or np.any(b < 0):
        raise ValueError("g_test counts must be finite and non-negative")
    n_a, n_b = a.sum(), b.sum()
    if n_a == 0 or n_b == 0:
        return GTest(0.0, 0, math.nan, 0.0, 1.0)
    if pool:
        sparse = sparse_cells(b, n_a)
        if also_pool is not None:
            sparse = sparse | np.asarray(also_pool, dtype=bool)
        a, b = pool_cells(a, sparse), pool_cells(b, sparse)
    g, dof = g_statistics(a, b)
    g, dof = float(g), int(dof)
    if dof < 1:
        return GTest(0.0, 0, 1.0, 0.0, 1.0)
    q = float(williams_q(n_a, n_b, a + b))
    p = float(special.chdtrc(dof, g / q))
    return GTest(g, dof, p, g / (2.0 * (n_a + n_b) * math.log(2.0)), q)


def js_bias(n_a: Any, n_b: Any, k_nonempty: Any, base: float = 2.0) -> Any:
    """Expected plug-in ``JS(p_hat, q_hat)`` (equal weights) when nothing drifted.

    To second order, ``E[JS] ~ (K' - 1) / 8 * (1 / n_a + 1 / n_b)`` nats, converted to ``base``
    (the weighted JS of the G-test has the bias ``(K' - 1) / (2 N ln 2)`` bits). Subtracting it from
    the observed JS gives an effect size that does not grow as samples shrink. Infinite when a
    sample is empty; 0 with fewer than two non-empty bins. Scalars give a float; arrays work
    elementwise.
    """
    na, nb, k = (np.asarray(v, dtype=np.float64) for v in (n_a, n_b, k_nonempty))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = (k - 1.0) / 8.0 * (1.0 / na + 1.0 / nb) / math.log(base)
    out = np.where((na <= 0) | (nb <= 0), np.inf, np.where(k < 2, 0.0, bias))
    return float(out) if out.ndim == 0 else out


def mean_test(window: Any, reference: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sample test of equal means from moments (see the module docstring).

    ``window`` and ``reference`` are ``(n, mean, M2, M3, M4)`` tuples of floats or arrays
    (``Moments``: ``n``, ``mean``, ``m2``, ``m3``, ``m4``). Returns ``(u, p_value, effect)``: the
    skewness-corrected signed statistic, its two-sided p-value (NaN where not applicable: fewer
    than 2 values on a side, or ``|delta| > MAX_SKEW``) and ``|mean_w - mean_r| / sd_r``.
    """
    nw, mw, m2w, m3w, m4w = (np.asarray(v, dtype=np.float64) for v in window)
    nr, mr, m2r, m3r, m4r = (np.asarray(v, dtype=np.float64) for v in reference)
    big_n, _, m2, m3, m4 = merge_moments(nw, mw, m2w, m3w, m4w, nr, mr, m2r, m3r, m4r)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a, b = 1.0 / nw, 1.0 / nr
        var = m2 / (big_n - 1.0)
        diff = mw - mr
        z = diff / np.sqrt(var * (a + b))
        g1 = (m3 / big_n) / (m2 / big_n) ** 1.5
        g2 = (m4 / big_n) / (m2 / big_n) ** 2 - 3.0
        delta = np.nan_to_num(g1, nan=0.0) * (a - b) / np.sqrt(a + b)
        k = np.nan_to_num(g2, nan=0.0) * (a**3 + b**3) / (a + b) ** 2
        u = z - delta * (z * z - 1.0) / 6.0 + delta * delta * z**3 / 27.0
        nu = 4.0 + 6.0 / np.where(k > 0, k, 1.0)
        scale = np.sqrt(nu / (nu - 2.0))
        p_t = 2.0 * special.stdtr(nu, -np.abs(u) * scale)
        p = np.where(k > 0, p_t, 2.0 * special.ndtr(-np.abs(u)))
        sd_r = np.sqrt(m2r / nr)
        effect = np.abs(diff) / sd_r
    constant = m2 == 0  # every value equal on both sides: no evidence of a change
    u = np.where(constant, 0.0, u)
    p = np.where(constant, 1.0, p)
    effect = np.where(constant | (diff == 0), 0.0, effect)
    usable = (nw >= 2) & (nr >= 2) & (np.abs(delta) <= MAX_SKEW) & np.isfinite(p)
    return u, np.where(usable, np.minimum(p, 1.0), np.nan), effect


def moment_columns(m: Any) -> tuple[Any, Any, Any, Any, Any]:
    """``(n, mean, M2, M3, M4)`` of a :class:`~divtransforms.moments.Moments`."""
    return m.n, m.mean, m.m2, m.m3, m.m4


def window_tests(
    family: str | None,
    histogram: tuple[Any, Any, Any] | None,
    t: tuple[Any, Any] | None = None,
    dev: tuple[Any, Any] | None = None,
) -> list[DriftTest]:
    """The drift tests of windows of one feature, in the order records and the policy use.

    ``histogram``: ``(statistic G / q, p_value, effect)`` of the G-test (``None``: no histogram
    test). ``t`` and ``dev``: ``(window, reference)`` moment tuples of the family's value and of
    its absolute deviations from the reference centre (``None``: not available). ``bernoulli``
    gets no dispersion test (for 0/1 values it is a function of the mean); ``categorical`` and
    features without a family get only the histogram test.
    """
    tests: list[DriftTest] = []
    if histogram is not None:
        stat, p, effect = (np.asarray(v, dtype=np.float64) for v in histogram)
        tests.append(DriftTest("histogram", "histogram", stat, p, effect))
    if family is None or family == "categorical":
        return tests
    if t is not None:
        tests.append(DriftTest("mean", "location", *mean_test(*t)))
    if dev is not None and family != "bernoulli":
        tests.append(DriftTest("dispersion", "dispersion", *mean_test(*dev)))
    return tests
