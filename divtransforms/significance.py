"""The tests that decide drift, valid whatever the feature's true shape (docs/policy.md, "The
tests").

Every function here is vectorised (one row per window), so drift records, the policy and the
calibration benchmark run the very same code.

``histogram``: a two-sample test of homogeneity of the window's histogram and the reference's
    For two histograms on the same bins, with weights ``pi_a = n_a / N`` and ``pi_b = n_b / N``,
    the weighted Jensen-Shannon divergence equals the mutual information between "bin" and "which
    sample", and ``G = 2 N ln(2) JS_pi`` (JS in bits) is asymptotically chi-square with ``K' - 1``
    degrees of freedom (``K'`` bins non-empty in either histogram); records report G. The
    decisive p-value comes from the same family of statistics at lambda = 2/3 (Cressie and Read
    1984): its chi-square approximation holds on small expected counts, and it has more power
    than G (lambda = 0) against a rare category or tail that grows. The table it compares is
    fixed by the reference and n alone (``comparison_table``). Bins whose reference count is 0
    or biased by construction (numeric tail bins, the edge of a truncated vocabulary,
    ``__unseen__``) merge into neighbouring cells (the bin spec's ``test_cells``), and cells the
    window is expected to fill with fewer than ``POOL_EXPECTED`` values are pooled into one. So
    the test holds its level on quantile bins, rare categories and sparse tails.

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

References: P. Hall (1992), "On the removal of skewness by transformation", JRSS B 54; N. Cressie
and T. R. C. Read (1984), "Multinomial goodness-of-fit tests", JRSS B 46; T. R. C. Read and N.
Cressie (1988), "Goodness-of-Fit Statistics for Discrete Multivariate Data", Springer.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from divtransforms.families import REGISTRY
from divtransforms.moments import merge_moments

__all__ = [
    "CRESSIE_READ_LAMBDA",
    "MAX_SKEW",
    "POOL_EXPECTED",
    "DriftTest",
    "HomogeneityTest",
    "comparison_table",
    "g_statistics",
    "homogeneity_test",
    "js_bias",
    "mean_test",
    "merge_cells",
    "pool_cells",
    "power_divergence",
    "sparse_cells",
]

MAX_SKEW = 0.6
POOL_EXPECTED = 5.0
CRESSIE_READ_LAMBDA = 2.0 / 3.0


class DriftTest(NamedTuple):
    """One test over a batch of windows: signed statistic, p-value and effect (NaN = not applied).

    ``kind`` is ``histogram``, ``location`` (the mean) or ``dispersion``.
    """

    name: str
    kind: str
    statistic: np.ndarray
    p_value: np.ndarray
    effect: np.ndarray


class HomogeneityTest(NamedTuple):
    """The histogram test of one window: G (``2 N ln 2 JS_pi``, descriptive), the Cressie-Read
    statistic and its chi-square p-value on the pooled table (decisive), ``dof = K' - 1``."""

    g_statistic: float
    dof: int
    statistic: float
    p_value: float
    js_weighted: float  # the weighted JS (bits) between the two samples: G / (2 N ln 2)


_FLOAT_MAX = float(np.finfo(np.float64).max)


def nan_to(x: Any, nan: float) -> Any:
    """``numpy.nan_to_num(x, nan=nan)`` of float64 values (infinities become the largest finite
    floats), without its per-call overhead (records call it for every test of every feature)."""
    a = np.asarray(x, dtype=np.float64)
    out = np.where(a != a, nan, np.minimum(np.maximum(a, -_FLOAT_MAX), _FLOAT_MAX))
    return out[()] if out.ndim == 0 else out


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
    g = np.maximum(2.0 * nan_to(ga + gb, 0.0), 0.0)
    dof = (col > 0).sum(axis=-1) - 1
    return g, dof


def power_divergence(
    counts_a: ArrayLike, counts_b: ArrayLike, lam: float = CRESSIE_READ_LAMBDA
) -> tuple[np.ndarray, np.ndarray]:
    """Cressie-Read power-divergence statistic of the 2 x K table of each row of ``counts_a``
    against ``counts_b`` (broadcast), and ``dof = K' - 1``.

    ``2 / (lam (lam + 1)) sum O ((O / E)^lam - 1)`` over both rows, ``E = row total * column total
    / N``; ``lam = 1`` is Pearson's X^2, ``lam -> 0`` is G. Equals
    ``scipy.stats.chi2_contingency(table, lambda_=lam)`` without Yates' correction.
    """
    if lam == 0:
        return g_statistics(counts_a, counts_b)
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(counts_b, dtype=np.float64), a.shape)
    n_a = a.sum(axis=-1, keepdims=True)
    n_b = b.sum(axis=-1, keepdims=True)
    col = a + b
    keep = col > 0
    safe = np.where(keep, col, 1.0)
    total = n_a + n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ea, eb = n_a * safe / total, n_b * safe / total
        terms = a * ((a / ea) ** lam - 1.0) + b * ((b / eb) ** lam - 1.0)
    stat = 2.0 / (lam * (lam + 1.0)) * np.where(keep, terms, 0.0).sum(axis=-1)
    return np.maximum(nan_to(stat, 0.0), 0.0), keep.sum(axis=-1) - 1


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


def merge_cells(counts: ArrayLike, cells: ArrayLike) -> np.ndarray:
    """``counts`` (1-D or rows) summed by ``cells`` (the cell index of each bin)."""
    c = np.asarray(counts, dtype=np.float64)
    idx = np.asarray(cells, dtype=np.int64)
    onehot = np.zeros((idx.size, int(idx.max()) + 1 if idx.size else 0))
    onehot[np.arange(idx.size), idx] = 1.0
    return c @ onehot


def comparison_table(
    counts: ArrayLike, reference: ArrayLike, n: float, cells: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The window and reference counts the homogeneity test compares: bins merged by ``cells``
    (a bin spec's ``test_cells``), then the cells a window of ``n`` values is expected to fill
    with fewer than ``POOL_EXPECTED`` values pooled into one. Both depend on the reference and
    ``n`` alone, never on the window's data."""
    a = np.asarray(counts, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if cells is not None:
        a, b = merge_cells(a, cells), merge_cells(b, cells)
    sparse = sparse_cells(b, n)
    return pool_cells(a, sparse), pool_cells(b, sparse)


def homogeneity_test(
    counts_window: ArrayLike,
    counts_reference: ArrayLike,
    pool: bool = True,
    cells: ArrayLike | None = None,
) -> HomogeneityTest:
    """Two-sample test of homogeneity of a window's histogram against the reference's.

    With ``pool`` (the default) the test compares :func:`comparison_table`: bins merged by ``cells``
    (``spec.test_cells(reference_counts)``), sparse cells pooled. The p-value is the chi-square
    survival of the Cressie-Read statistic (lambda = 2/3) of that table, with ``dof = K' - 1``
    (``K'`` its non-empty cells). ``g_statistic`` and ``js_weighted`` describe the histograms
    themselves. With fewer than two non-empty cells there is nothing to test: ``p = 1``, ``dof =
    0``; ``p`` is NaN when a sample is empty, since nothing was observed.
    """
    a = np.asarray(counts_window, dtype=np.float64)
    b = np.asarray(counts_reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            "homogeneity_test needs two 1-D count vectors of the same length, "
            f"got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.any(a < 0) or np.any(b < 0):
        raise ValueError("homogeneity_test counts must be finite and non-negative")
    n_a, n_b = a.sum(), b.sum()
    if n_a == 0 or n_b == 0:
        return HomogeneityTest(0.0, 0, 0.0, math.nan, 0.0)
    g = float(g_statistics(a, b)[0])
    js = g / (2.0 * (n_a + n_b) * math.log(2.0))
    if pool:
        a, b = comparison_table(a, b, n_a, cells)
    stats, dofs = power_divergence(a, b)
    stat, dof = float(stats), int(dofs)
    if dof < 1:
        return HomogeneityTest(g, 0, 0.0, 1.0, js)
    return HomogeneityTest(g, dof, stat, float(special.chdtrc(dof, stat)), js)


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
        delta = nan_to(g1, 0.0) * (a - b) / np.sqrt(a + b)
        k = nan_to(g2, 0.0) * (a**3 + b**3) / (a + b) ** 2
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

    ``histogram``: ``(statistic, p_value, effect)`` of the homogeneity test (``None``: no
    histogram test). ``t`` and ``dev``: ``(window, reference)`` moment tuples of the family's
    value and of its absolute deviations from the reference centre (``None``: not available).
    A family without ``dispersion`` (bernoulli: for 0/1 values it is a function of the mean)
    gets no dispersion test;
    ``categorical`` and features without a family get only the histogram test.
    """
    tests: list[DriftTest] = []
    if histogram is not None:
        stat, p, effect = (np.asarray(v, dtype=np.float64) for v in histogram)
        tests.append(DriftTest("histogram", "histogram", stat, p, effect))
    if family is None or family == "categorical":
        return tests
    if t is not None:
        tests.append(DriftTest("mean", "location", *mean_test(*t)))
    if dev is not None and REGISTRY[family].dispersion:
        tests.append(DriftTest("dispersion", "dispersion", *mean_test(*dev)))
    return tests
