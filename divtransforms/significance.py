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
    ``__unseen__``) merge into neighbouring cells (the bin spec's ``test_cells``). Then numeric
    bins merge in runs of adjacent bins until each cell expects ``POOL_EXPECTED`` values
    (``ordered_cells``: never two distant bins in one cell), and a categorical feature's cells the
    window is expected to fill with fewer than ``POOL_EXPECTED`` values are pooled into one. So
    the test holds its level on quantile bins, rare categories and sparse tails, and has cells to
    compare from n = 10 on; below that, an exact binomial test on two halves
    (``histogram_p_values``). With nothing to test the p-value is NaN, never 1.

``range``: values beyond the reference's observed minimum or maximum (``range_test``)
    Exact at every n by exchangeability: ``k`` of ``n`` window values above all ``n_ref``
    reference values has probability ``C(n, k) / C(N, k)``, whatever the shape. The test that
    sees a window far away, a unit change or a constant that changes from its first few values.

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
    of freedom scaled to unit variance. Where ``|delta| > MAX_SKEW``, with ``delta`` computed
    from the reference's skewness (never the pooled sample's: a window far away makes the pooled
    sample skewed, and must not switch the test off), the window is too small for a mean of
    such skewed values to be near normal, and the test is not applied (NaN).
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
    "histogram_p_values",
    "homogeneity_test",
    "js_bias",
    "mean_test",
    "merge_cells",
    "ordered_cells",
    "pool_cells",
    "power_divergence",
    "range_test",
    "sparse_cells",
]

MAX_SKEW = 0.6
POOL_EXPECTED = 5.0
CRESSIE_READ_LAMBDA = 2.0 / 3.0


class DriftTest(NamedTuple):
    """One test over a batch of windows: signed statistic, p-value and effect (NaN = not applied).

    ``kind`` is ``histogram``, ``location`` (the mean), ``dispersion`` or ``range`` (values beyond
    the reference's observed range: :func:`range_test`).
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


def ordered_cells(
    reference: ArrayLike, n: float, min_expected: float = POOL_EXPECTED
) -> np.ndarray:
    """The cell of each (ordered) bin when runs of ADJACENT bins merge until a window of ``n``
    values is expected to fill each cell with at least ``min_expected`` values.

    A left-to-right sweep closes a run as soon as it expects ``min_expected`` values; a last run
    that expects fewer joins the run before it. So a window large enough for every bin compares
    the bins themselves, a sparse bin joins its neighbours (a sparse tail stays a tail), and bins
    that each expect little (quantile bins in a small window) form cells of about equal
    reference probability. Depends on the reference and ``n`` alone. With fewer than
    ``2 * min_expected`` values expected in all, every bin is in cell 0.
    """
    ref = np.asarray(reference, dtype=np.float64)
    total = ref.sum()
    out = np.zeros(ref.shape[-1], dtype=np.int64)
    if total <= 0 or n <= 0:
        return out
    expected = n * ref / total
    cell, run = 0, 0.0
    for i, e in enumerate(expected.tolist()):
        out[i] = cell
        run += e
        if run >= min_expected:
            cell, run = cell + 1, 0.0
    if run < min_expected and cell > 0:  # the last run expects too little: join the one before
        out[out == cell] = cell - 1
    return out


def comparison_table(
    counts: ArrayLike,
    reference: ArrayLike,
    n: float,
    cells: ArrayLike | None = None,
    ordered: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The window and reference counts the homogeneity test compares: bins merged by ``cells``
    (a bin spec's ``test_cells``), then, for ``ordered`` bins (numeric), runs of adjacent cells
    merged until each expects at least ``POOL_EXPECTED`` values (:func:`ordered_cells`); for
    unordered ones (categories), the cells a window of ``n`` values is expected to fill with
    fewer than ``POOL_EXPECTED`` values pooled into one. Both depend on the reference and ``n``
    alone, never on the window's data."""
    a = np.asarray(counts, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if cells is not None:
        a, b = merge_cells(a, cells), merge_cells(b, cells)
    if ordered:
        idx = ordered_cells(b, n)
        if idx.max(initial=0) < idx.size - 1:
            a, b = merge_cells(a, idx), merge_cells(b, idx)
        return a, b
    sparse = sparse_cells(b, n)
    return pool_cells(a, sparse), pool_cells(b, sparse)


def _two_cells(reference: np.ndarray, ordered: bool) -> np.ndarray:
    """The split of too small a window's cells into two for the exact binomial test: at the
    reference median (ordered cells), or the most frequent cell against the rest."""
    ref = np.asarray(reference, dtype=np.float64)
    share = ref / ref.sum()
    if ordered:
        k = int(np.argmin(np.abs(np.cumsum(share)[:-1] - 0.5))) + 1
        return (np.arange(ref.size) >= k).astype(np.int64)
    out = np.ones(ref.size, dtype=np.int64)
    out[int(np.argmax(ref))] = 0
    return out


def histogram_p_values(
    counts: ArrayLike,
    reference: ArrayLike,
    n: float,
    cells: ArrayLike | None = None,
    ordered: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(statistic, p_value, dof)`` of the homogeneity test of each row of ``counts`` (windows
    of ``n`` values) against ``reference``: the Cressie-Read statistic of
    :func:`comparison_table` and its chi-square p-value. Where even two cells would expect fewer
    than ``POOL_EXPECTED`` values (about ``n < 10``), the cells are split in two (at the reference
    median for ordered cells) and the p-value is the exact two-sided binomial test of the
    window's count in the first half against the reference's share (``dof`` 1). NaN where there
    is nothing to test (fewer than two cells with reference mass, or an empty window)."""
    a = np.asarray(counts, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    table, table_ref = comparison_table(a, b, n, cells, ordered)
    stat, dof = power_divergence(table, table_ref)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(dof >= 1, special.chdtrc(np.maximum(dof, 1), stat), np.nan)
    merged_ref = b
    if table_ref.shape[-1] < 2 and cells is not None:
        merged_ref = merge_cells(b, cells)
    if table_ref.shape[-1] < 2 and np.count_nonzero(merged_ref) >= 2 and n >= 1:
        merged = merge_cells(a, cells) if cells is not None else a
        two = _two_cells(merged_ref, ordered)
        t_a, t_b = merge_cells(merged, two), merge_cells(merged_ref, two)
        stat, dof = power_divergence(t_a, t_b)
        x, size = t_a[..., 0], t_a.sum(axis=-1)
        p0 = t_b[0] / t_b.sum()
        x, size = x.astype(np.int64), size.astype(np.int64)
        low = special.bdtr(x, size, p0)
        high = np.where(x >= 1, special.bdtrc(x - 1, size, p0), 1.0)
        p = np.minimum(1.0, 2.0 * np.minimum(low, high))
        dof = np.ones_like(dof)
    n_rows = a.sum(axis=-1)
    return stat, np.where(n_rows > 0, p, np.nan), dof


def range_test(counts: ArrayLike, reference: ArrayLike) -> tuple[Any, Any, Any]:
    """``(k, p_value, effect)``: values beyond the reference's observed range (numeric bins in
    the layout ``[underflow, bins, overflow]``, whose edges end at the reference's minimum and
    maximum).

    Under "no drift" the window's and the reference's values are exchangeable, so the chance
    that ``k`` or more of a window's ``n`` values lie above the largest of the ``n_ref``
    reference values (the ``k`` largest of all ``N = n + n_ref`` values are window values) is
    exactly ``C(n, k) / C(N, k)`` for any continuous distribution, and at most that with ties:
    about ``(n / N)^k``, whatever the feature's shape. The same holds below the minimum. The
    p-value is twice the smaller of the two tails' (Bonferroni), exact at every n: even one
    window of 10 values all beyond a reference of 10,000 has ``p ~ 1e-34``. ``k`` is the
    number of values beyond either end, ``effect`` their share of the window. A tail whose
    reference count is not 0 (explicit edges inside the data) is not tested; NaN when neither
    is, or the window is empty. Rows of ``counts`` are windows (vectorised).
    """
    a = np.asarray(counts, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.ndim == 1:
        return _range_test_one(a, b)
    n_ref = b.sum()
    n = a.sum(axis=-1)
    big_n = n + n_ref
    tails = [(a[..., 0], b[0] == 0), (a[..., -1], b[-1] == 0)]
    p = np.full(np.shape(n), np.inf)
    k = np.zeros(np.shape(n))
    tested = 0
    for x, ok in tails:
        if not ok or n_ref <= 0:
            continue
        tested += 1
        k = k + x
        with np.errstate(invalid="ignore", divide="ignore"):
            log_p = (
                special.gammaln(n + 1.0)
                - special.gammaln(n - x + 1.0)
                - special.gammaln(big_n + 1.0)
                + special.gammaln(big_n - x + 1.0)
            )
        p = np.minimum(p, np.where(x > 0, np.exp(log_p), 1.0))
    if tested == 0:
        nan = np.full(np.shape(n), np.nan)
        return (nan, nan, nan) if np.ndim(n) else (math.nan, math.nan, math.nan)
    p = np.minimum(1.0, tested * p)
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = k / n
    empty = n <= 0
    p, effect = np.where(empty, np.nan, p), np.where(empty, np.nan, effect)
    if np.ndim(n) == 0:
        return float(k), float(p), float(effect)
    return k, p, effect


def _range_test_one(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """:func:`range_test` of one window (a record), in plain floats: the same values."""
    n_ref, n = float(b.sum()), float(a.sum())
    tails = [float(a[0])] if b[0] == 0 else []
    if b[-1] == 0:
        tails.append(float(a[-1]))
    if not tails or n_ref <= 0:
        return math.nan, math.nan, math.nan
    if n <= 0:
        return sum(tails), math.nan, math.nan
    big_n = n + n_ref
    p = math.inf
    for x in tails:
        if x > 0:
            log_p = (
                math.lgamma(n + 1.0)
                - math.lgamma(n - x + 1.0)
                - math.lgamma(big_n + 1.0)
                + math.lgamma(big_n - x + 1.0)
            )
            p = min(p, math.exp(log_p))
        else:
            p = min(p, 1.0)
    k = sum(tails)
    return k, min(1.0, len(tails) * p), k / n


def homogeneity_test(
    counts_window: ArrayLike,
    counts_reference: ArrayLike,
    pool: bool = True,
    cells: ArrayLike | None = None,
    ordered: bool = False,
) -> HomogeneityTest:
    """Two-sample test of homogeneity of a window's histogram against the reference's.

    With ``pool`` (the default) the test compares :func:`comparison_table`: bins merged by ``cells``
    (``spec.test_cells(reference_counts)``), then adjacent cells merged (``ordered``: numeric
    bins) or sparse cells pooled (categories); see :func:`histogram_p_values`. The p-value is
    the chi-square survival of the Cressie-Read statistic (lambda = 2/3) of that table, with
    ``dof = K' - 1`` (``K'`` its non-empty cells), or an exact binomial test on two cells when the
    window is too small for two cells of ``POOL_EXPECTED``. ``g_statistic`` and ``js_weighted``
    describe the histograms themselves. With fewer than two cells there is nothing to test:
    ``p`` is NaN (untested, not "no evidence"), ``dof = 0``; so is it when a sample is empty.
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
        stats, ps, dofs = histogram_p_values(a, b, n_a, cells, ordered)
        p = float(ps)
    else:
        stats, dofs = power_divergence(a, b)
        p = float(special.chdtrc(max(int(dofs), 1), stats)) if dofs >= 1 else math.nan
    stat, dof = float(stats), int(dofs)
    if dof < 1 or not math.isfinite(p):
        return HomogeneityTest(g, 0, 0.0, math.nan, js)
    return HomogeneityTest(g, dof, stat, p, js)


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


def mean_test(
    window: Any, reference: Any, between: tuple[float, int, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sample test of equal means from moments (see the module docstring).

    ``window`` and ``reference`` are ``(n, mean, M2, M3, M4)`` tuples of floats or arrays
    (``Moments``: ``n``, ``mean``, ``m2``, ``m3``, ``m4``). Returns ``(u, p_value, effect)``: the
    skewness-corrected signed statistic, its two-sided p-value (NaN where not applicable: fewer
    than 2 values on a side, or ``|delta| > MAX_SKEW`` with ``delta`` from the REFERENCE's
    skewness, so that a window cannot switch the test off by moving away) and
    ``|mean_w - mean_r| / sd_r``.

    ``between``: ``(variance, dof, kurtosis, skewness)`` of the between-window variation the
    difference of means has beyond sampling noise (``divtransforms.variation.location_between``):
    it is added to the sampling variance; skewness and kurtosis are the variance-weighted sums of
    the two parts' (the skewness clipped to ``MAX_SKEW``), and the t's degrees of freedom are at
    most those of the variance's estimate (``dof``, Satterthwaite). None: today's test, bit for
    bit.
    """
    if between is not None:
        return _mean_test_between(window, reference, *between)
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
    with np.errstate(divide="ignore", invalid="ignore"):
        # Whether the test applies is judged from the reference's skewness and n alone: a window
        # far away makes the pooled sample skewed, and must not switch the test off.
        g1_ref = (m3r / nr) / (m2r / nr) ** 1.5
        delta_ref = nan_to(g1_ref, 0.0) * (a - b) / np.sqrt(a + b)
    usable = (nw >= 2) & (nr >= 2) & (np.abs(delta_ref) <= MAX_SKEW) & np.isfinite(p)
    return u, np.where(usable, np.minimum(p, 1.0), np.nan), effect


def _mean_test_between(
    window: Any, reference: Any, extra: float, dof: int, kurtosis: float, skewness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mean_test` with ``extra`` variance between windows (t with at most ``dof``)."""
    nw, mw, m2w, m3w, m4w = (np.asarray(v, dtype=np.float64) for v in window)
    nr, mr, m2r, m3r, m4r = (np.asarray(v, dtype=np.float64) for v in reference)
    big_n, _, m2, m3, m4 = merge_moments(nw, mw, m2w, m3w, m4w, nr, mr, m2r, m3r, m4r)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a, b = 1.0 / nw, 1.0 / nr
        sampling = m2 / (big_n - 1.0) * (a + b)
        share = sampling / (sampling + extra)  # the sampling part of the variance
        diff = mw - mr
        z = diff / np.sqrt(sampling + extra)
        g1 = (m3 / big_n) / (m2 / big_n) ** 1.5
        g2 = (m4 / big_n) / (m2 / big_n) ** 2 - 3.0
        sampling_delta = nan_to(g1, 0.0) * (a - b) / np.sqrt(a + b) * share**1.5
        delta = np.clip(sampling_delta + skewness * (1.0 - share) ** 1.5, -MAX_SKEW, MAX_SKEW)
        k = nan_to(g2, 0.0) * (a**3 + b**3) / (a + b) ** 2 * share**2
        k = k + kurtosis * (1.0 - share) ** 2
        u = z - delta * (z * z - 1.0) / 6.0 + delta * delta * z**3 / 27.0
        # the heavier tail of the two: the sampling kurtosis (a t scaled to unit variance) or
        # the uncertainty of tau^2 on ``dof`` degrees of freedom (Satterthwaite: a t with
        # ``dof / f^2``, ``f`` the between-window share of the variance)
        nu_k = 4.0 + 6.0 / np.where(k > 0, k, 0.0)
        nu_tau = max(dof, 1) / (1.0 - share) ** 2
        by_kurtosis = nu_k < nu_tau
        nu = np.where(by_kurtosis, nu_k, nu_tau)
        scale = np.where(by_kurtosis, np.sqrt(nu_k / (nu_k - 2.0)), 1.0)
        p = 2.0 * special.stdtr(nu, -np.abs(u) * scale)
        sd_r = np.sqrt(m2r / nr)
        effect = np.abs(diff) / sd_r
    constant = m2 == 0
    u = np.where(constant, 0.0, u)
    p = np.where(constant, 1.0, p)
    effect = np.where(constant | (diff == 0), 0.0, effect)
    with np.errstate(divide="ignore", invalid="ignore"):
        # applicability from the reference alone (as :func:`mean_test`): its skewness, and the
        # sampling share of the variance with the reference's own variance
        g1_ref = (m3r / nr) / (m2r / nr) ** 1.5
        sampling_ref = m2r / np.maximum(nr - 1.0, 1.0) * (a + b)
        share_ref = sampling_ref / (sampling_ref + extra)
        delta_ref = nan_to(g1_ref, 0.0) * (a - b) / np.sqrt(a + b) * share_ref**1.5
    usable = (nw >= 2) & (nr >= 2) & (np.abs(delta_ref) <= MAX_SKEW) & np.isfinite(p)
    return u, np.where(usable, np.minimum(p, 1.0), np.nan), effect


def moment_columns(m: Any) -> tuple[Any, Any, Any, Any, Any]:
    """``(n, mean, M2, M3, M4)`` of a :class:`~divtransforms.moments.Moments`."""
    return m.n, m.mean, m.m2, m.m3, m.m4


def window_tests(
    family: str | None,
    histogram: tuple[Any, Any, Any] | None,
    t: tuple[Any, Any] | None = None,
    dev: tuple[Any, Any] | None = None,
    beyond: tuple[Any, Any, Any] | None = None,
    between: tuple[Any, Any] = (None, None),
) -> list[DriftTest]:
    """The drift tests of windows of one feature, in the order records and the policy use.

    ``histogram``: ``(statistic, p_value, effect)`` of the homogeneity test (``None``: no
    histogram test). ``t`` and ``dev``: ``(window, reference)`` moment tuples of the family's
    value and of its absolute deviations from the reference centre (``None``: not available).
    A family without ``dispersion`` (bernoulli: for 0/1 values it is a function of the mean)
    gets no dispersion test;
    ``categorical`` and features without a family get only the histogram test.
    ``beyond``: :func:`range_test` of numeric bins (kind ``range``), last.
    ``between``: the between-window variation of the location and dispersion tests
    (``divtransforms.variation.location_between``; ``(None, None)``: today's tests).
    """
    tests: list[DriftTest] = []
    if histogram is not None:
        stat, p, effect = (np.asarray(v, dtype=np.float64) for v in histogram)
        tests.append(DriftTest("histogram", "histogram", stat, p, effect))
    if family is not None and family != "categorical":
        if t is not None:
            tests.append(DriftTest("mean", "location", *mean_test(*t, between=between[0])))
        if dev is not None and REGISTRY[family].dispersion:
            tests.append(
                DriftTest("dispersion", "dispersion", *mean_test(*dev, between=between[1]))
            )
    if beyond is not None:
        k, p, effect = (np.asarray(v, dtype=np.float64) for v in beyond)
        tests.append(DriftTest("out_of_range", "range", k, p, effect))
    return tests
