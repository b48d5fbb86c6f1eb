"""How a numeric feature's family is chosen, and how well it describes the reference.

``choose_family`` reads only a mergeable :class:`~divtransforms.moments.ValueSummary`, so
``ReferenceProfile.build`` and Beam's ``BuildReference`` share one rule:

1. values that are all 0 or 1: ``bernoulli``;
2. non-negative integers: ``poisson`` when the index of dispersion (variance / mean) is close to 1:
   the two-sided dispersion test ``(n - 1) D ~ chi2(n - 1)`` does not reject at 0.1%, or
   ``|D - 1| <= 0.1``. Counts whose variance is far from their mean (ages, over-dispersed or
   zero-inflated counts) go on to step 3;
3. all values positive: the best by AIC of the families with ``aic_candidate``
   (``divtransforms.families``), each one's maximised log-likelihood computed from the summary;
4. anything else: ``normal``.

The choice is descriptive: the drift tests do not assume the family is true
(``divtransforms.significance``). ``family_fit`` measures how far the fitted family is from the
reference histogram (a G statistic on the reference bins and its bias-corrected KL in bits), so a
reader knows how much to trust the family's parameters; records carry it as ``mle_fit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from divtransforms.families import REGISTRY, Estimate, family
from divtransforms.moments import ValueSummary

__all__ = ["FIT_QUALITY", "FamilyChoice", "choose_family", "family_center", "family_fit"]

# Upper bounds (bits) of the bias-corrected KL(reference histogram || fitted family) per label.
FIT_QUALITY = (("good", 0.01), ("fair", 0.05), ("poor", math.inf))
_DISPERSION_P = 1e-3
_DISPERSION_TOLERANCE = 0.1


# -- choosing a family --------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyChoice:
    family: str
    reason: str


def choose_family(summary: ValueSummary) -> FamilyChoice:
    """The family for a numeric feature, with the reason in words (see the module docstring)."""
    n = summary.n
    if n == 0:
        return FamilyChoice("normal", "no finite values: normal by default")
    if summary.all_binary:
        return FamilyChoice("bernoulli", "all values are 0 or 1")
    prefix = ""
    if summary.all_counts:
        mean, var = summary.x.mean, summary.x.m2 / max(n - 1, 1)
        if mean > 0 and n > 1:
            d = var / mean
            stat = (n - 1) * d
            p = 2.0 * min(special.chdtr(n - 1, stat), special.chdtrc(n - 1, stat))
            if p >= _DISPERSION_P or abs(d - 1.0) <= _DISPERSION_TOLERANCE:
                return FamilyChoice(
                    "poisson",
                    f"non-negative integers with variance/mean {d:.3g} "
                    f"(dispersion test p = {p:.2g})",
                )
            kind = "over" if d > 1 else "under"
            prefix = (
                f"non-negative integers, {kind}-dispersed for poisson "
                f"(variance/mean {d:.3g}, p = {p:.2g}); "
            )
        else:
            prefix = "non-negative integers with mean 0; "
    if summary.all_positive and n >= 8:
        ll = {}
        for f in REGISTRY.values():
            if f.aic_candidate:
                value = f.summary_loglik(summary)
                if math.isfinite(value):
                    ll[f.name] = (value, len(f.params))
        if ll:
            aic = {f: -2.0 * n * v + 2.0 * k for f, (v, k) in ll.items()}
            best = min(aic, key=lambda f: (aic[f], f))
            others = ", ".join(
                f"{f} {ll[f][0]:.4g}" for f in sorted(aic, key=aic.__getitem__) if f != best
            )
            rivals = f"; {others}" if others else "; no other candidate fits these values"
            return FamilyChoice(
                best,
                f"{prefix}positive values, best AIC: {best} (mean log-likelihood "
                f"{ll[best][0]:.4g}{rivals})",
            )
    return FamilyChoice("normal", f"{prefix}real values: normal (mean and standard deviation)")


def family_center(name: str, summary: ValueSummary) -> float:
    """The reference centre of the family's value ``t`` for the dispersion test: the mean of
    ``x``, or of ``log x`` for the lognormal (NaN when some value is not positive)."""
    if name == "lognormal":
        return summary.logx.mean if summary.all_positive and summary.logx.n else math.nan
    return summary.x.mean


# -- how well the family describes the reference ------------------------------------------------


def family_fit(edges: Any, counts: Any, estimate: Estimate) -> dict[str, Any]:
    """How well the fitted family describes the reference histogram.

    ``edges``/``counts`` are the reference's numeric bins and counts (``[under, b_0 .. b_K-1,
    over]``). Returns ``{"g_statistic", "dof", "kl_bits", "quality"}``: the G statistic between
    the counts and the family's bin probabilities, ``dof = K' - 1 - parameters``, and
    ``kl_bits = max(G - dof, 0) / (2 n ln 2)``, the KL divergence of the histogram from the model
    minus its expectation under a correct model; ``quality`` labels it by ``FIT_QUALITY``.
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    n = float(c.sum())
    nan = {"g_statistic": None, "dof": 0, "kl_bits": None, "quality": "unknown"}
    params = estimate.params
    if e.size < 2 or n == 0 or not all(math.isfinite(v) for v in params.values()):
        return nan
    fam = family(estimate.family)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        below = np.asarray(fam.cdf(params, e, left=True), dtype=np.float64)  # P(X < e_i)
        upto_last = float(np.asarray(fam.cdf(params, e[-1:], left=False))[0])  # P(X <= e_K)
    probs = np.empty(e.size + 1)
    probs[0] = below[0]
    probs[1:-2] = below[1:-1] - below[:-2]
    probs[-2] = upto_last - below[-2]
    probs[-1] = 1.0 - upto_last
    probs = np.clip(probs, 0.0, 1.0)
    expected = n * probs
    keep = (c > 0) | (expected > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = special.xlogy(c, c / expected)
    g = 2.0 * float(np.sum(terms[keep]))
    if not math.isfinite(g):
        g = math.inf
    dof = max(int(keep.sum()) - 1 - len(params), 1)
    kl = max(g - dof, 0.0) / (2.0 * n * math.log(2.0)) if math.isfinite(g) else math.inf
    quality = next(label for label, bound in FIT_QUALITY if kl <= bound)
    # JSON (the profile) has no infinities: an impossible bin under the model is "no fit".
    return {
        "g_statistic": g if math.isfinite(g) else None,
        "dof": dof,
        "kl_bits": kl if math.isfinite(kl) else None,
        "quality": quality,
    }
