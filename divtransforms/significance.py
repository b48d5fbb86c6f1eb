"""Sample size and significance (DESIGN.md section 3).

For two histograms on the same bins, with weights ``pi_a = n_a / N`` and ``pi_b = n_b / N``, the
weighted Jensen-Shannon divergence equals the mutual information between "bin" and "which sample",
and the G-test of homogeneity is ``G = 2 N ln(2) JS_pi`` (JS in bits), asymptotically chi-square
with ``K' - 1`` degrees of freedom where ``K'`` is the number of bins non-empty in either histogram.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["GTest", "g_test", "js_bias"]


class GTest(NamedTuple):
    g_statistic: float
    dof: int
    p_value: float
    js_weighted: float  # the weighted JS (bits) between the two samples: G / (2 N ln 2)


def g_test(counts_a: ArrayLike, counts_b: ArrayLike) -> GTest:
    """Two-sample G-test of homogeneity of two count vectors over the same bins.

    Returns ``G``, degrees of freedom ``K' - 1``, the chi-square p-value, and the weighted JS in
    bits. With an empty sample or fewer than two non-empty bins there is nothing to test: ``G = 0``,
    ``p = 1`` (and ``dof = 0``); ``p`` is NaN when a sample is empty, since nothing was observed.
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
        return GTest(0.0, 0, math.nan, 0.0)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    dof = int(keep.sum()) - 1
    if dof < 1:
        return GTest(0.0, 0, 1.0, 0.0)
    n = n_a + n_b
    col = a + b
    # G = 2 sum O ln(O / E), E = row_total * col_total / N; 0 ln 0 = 0.
    g = 2.0 * (
        special.xlogy(a, a * n / (n_a * col)).sum() + special.xlogy(b, b * n / (n_b * col)).sum()
    )
    g = max(float(g), 0.0)
    p = float(special.chdtrc(dof, g))
    return GTest(g, dof, p, g / (2.0 * n * math.log(2.0)))


def js_bias(n_a: float, n_b: float, k_nonempty: int, base: float = 2.0) -> float:
    """Expected plug-in ``JS(p_hat, q_hat)`` (equal weights) when nothing drifted.

    To second order, ``E[JS] ~ (K' - 1) / 8 * (1 / n_a + 1 / n_b)`` nats, converted to ``base``
    (the weighted JS of the G-test has the bias ``(K' - 1) / (2 N ln 2)`` bits). Subtracting it from
    the observed JS gives an effect size that does not grow as samples shrink. Infinite when a
    sample is empty; 0 with fewer than two non-empty bins.
    """
    if n_a <= 0 or n_b <= 0:
        return math.inf
    if k_nonempty < 2:
        return 0.0
    return (k_nonempty - 1) / 8.0 * (1.0 / n_a + 1.0 / n_b) / math.log(base)
