"""The MLE families: one small class each (``REGISTRY``).

Each numeric family says, in one place, which values it accepts, the value ``t`` its moments are
kept on (``x``, or ``log x`` for the lognormal), its estimates and their standard errors from the
moments, the mean log-likelihood of data under a fit, the closed-form KL between two fits, its CDF
(for the fit indicator) and, for the positive continuous families, its maximised log-likelihood
from a value summary (for inference). ``NUMERIC_FAMILIES``, ``FAMILIES``, the monitor config's
allowed values and inference (``divtransforms.inference``) all derive from ``REGISTRY``: adding a
family is adding a class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import special

from divtransforms.moments import Moments, ValueSummary

__all__ = [
    "FAMILIES",
    "NUMERIC_FAMILIES",
    "REGISTRY",
    "Estimate",
    "Family",
    "family",
    "gamma_shape",
]

_NAN = math.nan


@dataclass(frozen=True)
class Estimate:
    """Fitted parameters of one family with their standard errors, from ``n`` samples."""

    family: str
    n: int
    params: dict[str, float]
    se: dict[str, float]


class MomentStats(Protocol):
    """What a family reads of an accumulator (``mle.MomentMLE``); read-only."""

    @property
    def n(self) -> int: ...

    @property
    def t(self) -> Moments: ...

    @property
    def s(self) -> float: ...

    @property
    def mean_lfact(self) -> float: ...

    @property
    def mean(self) -> float: ...

    @property
    def variance(self) -> float: ...


def gamma_shape(s: float) -> float:
    """Solve ``ln k - digamma(k) = s`` for the gamma shape ``k`` (``s > 0``) by Newton's method.

    Starts from Minka's approximation; for large ``k`` (tiny ``s``) uses the asymptotic series
    ``ln k - digamma(k) = 1/(2k) + 1/(12k^2) - 1/(120k^4) + ...`` to avoid cancellation.
    Returns ``inf`` for ``s == 0`` (all samples equal).
    """
    if not s > 0:
        return math.inf if s == 0 else math.nan
    k = (3.0 - s + math.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(100):
        if k > 1e6:
            f = 1 / (2 * k) + 1 / (12 * k * k) - 1 / (120 * k**4) - s
            fp = -1 / (2 * k * k) - 1 / (6 * k**3) + 1 / (30 * k**5)
        else:
            f = math.log(k) - float(special.digamma(k)) - s
            fp = 1.0 / k - float(special.polygamma(1, k))
        step = f / fp
        k_new = k - step
        if k_new <= 0:
            k_new = k / 2
        if abs(k_new - k) <= 1e-15 * k:
            return k_new
        k = k_new
    return k


# -- the families -------------------------------------------------------------------------------


class Family:
    """One numeric family (see the module docstring). Subclasses set the class attributes and
    override what differs; standard errors are sandwich (robust) where the parameter is a
    function of the mean or variance of ``t``."""

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]]
    aic_candidate: ClassVar[bool] = False  # compared by AIC for positive values
    log_statistic: ClassVar[bool] = False  # keeps S = sum(x/m - 1 - log(x/m)) (gamma)
    log_factorial: ClassVar[bool] = False  # keeps the mean of log(x!) (poisson)
    dispersion: ClassVar[bool] = True  # has a dispersion test (|t - c| moments are kept)

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which values the family accepts (finite ones, in its support)."""
        return np.isfinite(x)

    def transform(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The value ``t`` the moments are kept on."""
        return x

    def estimate(self, acc: MomentStats) -> Estimate:
        raise NotImplementedError

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        """Mean log-likelihood (nats per sample) of the data in ``acc`` under the fit ``ref``."""
        raise NotImplementedError

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        """``KL(current fit || reference fit)`` in nats."""
        raise NotImplementedError

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        """``P(X < x)`` (``left``) or ``P(X <= x)`` under the fit."""
        raise NotImplementedError

    def summary_loglik(self, summary: ValueSummary) -> float:
        """Maximised mean log-likelihood of the summarised values (``aic_candidate`` only)."""
        raise NotImplementedError

    def empty_estimate(self) -> Estimate:
        nan = dict.fromkeys(self.params, _NAN)
        return Estimate(self.name, 0, nan, dict(nan))


_TWO_PI_E = math.log(2 * math.pi) + 1.0


class Normal(Family):
    """``mu``, ``sigma`` of ``t``: ``ln(s_r/s_c) + (s_c^2 + (m_c - m_r)^2) / (2 s_r^2) - 1/2``."""

    name = "normal"
    params = ("mu", "sigma")
    aic_candidate = True

    def estimate(self, acc: MomentStats) -> Estimate:
        n, m, var = acc.n, acc.mean, acc.variance
        sigma = math.sqrt(var)
        se_sigma = sigma * math.sqrt(max(acc.t.kurtosis + 2.0, 0.0) / (4 * n))
        return Estimate(
            self.name,
            n,
            {"mu": m, "sigma": sigma},
            {"mu": math.sqrt(var / n), "sigma": se_sigma},
        )

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        m, var, s0 = acc.mean, acc.variance, ref["sigma"]
        if s0 == 0:
            return math.inf if (var == 0 and m == ref["mu"]) else -math.inf
        mse = var + (m - ref["mu"]) ** 2
        return -0.5 * math.log(2 * math.pi * s0 * s0) - mse / (2 * s0 * s0)

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        sc, sr, mc, mr = cur["sigma"], ref["sigma"], cur["mu"], ref["mu"]
        if sr == 0 or sc == 0:
            return 0.0 if (sc == sr and mc == mr) else math.inf
        return math.log(sr / sc) + (sc * sc + (mc - mr) ** 2) / (2 * sr * sr) - 0.5

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        return special.ndtr((x - params["mu"]) / params["sigma"])

    def summary_loglik(self, summary: ValueSummary) -> float:
        v = summary.x.variance
        return -0.5 * (_TWO_PI_E + math.log(v)) if v > 0 else _NAN


class Lognormal(Normal):
    """The normal family on ``t = log x`` (``x > 0``)."""

    name = "lognormal"

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.isfinite(x) & (x > 0)

    def transform(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.log(x)

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        return super().mean_loglik(acc, ref) - acc.mean  # the Jacobian: -mean(log x)

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        pos = np.where(x > 0, x, 1.0)
        return np.where(x > 0, special.ndtr((np.log(pos) - params["mu"]) / params["sigma"]), 0.0)

    def summary_loglik(self, summary: ValueSummary) -> float:
        lx = summary.logx
        if not lx.n or lx.variance <= 0:
            return _NAN
        return -0.5 * (_TWO_PI_E + math.log(lx.variance)) - lx.mean


class Exponential(Family):
    """``rate = 1 / mean``: ``ln(l_c/l_r) + l_r/l_c - 1``."""

    name = "exponential"
    params = ("rate",)
    aic_candidate = True

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.isfinite(x) & (x >= 0)

    def estimate(self, acc: MomentStats) -> Estimate:
        m = acc.mean
        rate = 1.0 / m if m > 0 else math.inf
        se = rate * rate * math.sqrt(acc.variance / acc.n)  # delta method on 1/mean
        return Estimate(self.name, acc.n, {"rate": rate}, {"rate": se})

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        lam = ref["rate"]
        return math.log(lam) - lam * acc.mean

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        lc, lr = cur["rate"], ref["rate"]
        return math.log(lc / lr) + lr / lc - 1

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        return np.where(x > 0, -np.expm1(-params["rate"] * np.maximum(x, 0)), 0.0)

    def summary_loglik(self, summary: ValueSummary) -> float:
        m = summary.x.mean
        return -math.log(m) - 1.0 if m > 0 else _NAN


class Poisson(Family):
    """``rate = mean`` of non-negative integers: ``l_c ln(l_c/l_r) + l_r - l_c``."""

    name = "poisson"
    params = ("rate",)
    log_factorial = True

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.isfinite(x) & (x >= 0) & (np.floor(x) == x)

    def estimate(self, acc: MomentStats) -> Estimate:
        return Estimate(
            self.name, acc.n, {"rate": acc.mean}, {"rate": math.sqrt(acc.variance / acc.n)}
        )

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        lam = ref["rate"]
        return float(special.xlogy(acc.mean, lam)) - lam - acc.mean_lfact

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        lc, lr = cur["rate"], ref["rate"]
        if lr == 0 and lc > 0:
            return math.inf
        return float(special.xlogy(lc, lc) - special.xlogy(lc, lr)) + lr - lc

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        k = np.ceil(x) - 1 if left else np.floor(x)
        return np.where(k >= 0, special.pdtr(np.maximum(k, 0), params["rate"]), 0.0)


class Bernoulli(Family):
    """``p = mean`` of 0/1 values: the discrete KL of ``[p, 1 - p]``."""

    name = "bernoulli"
    params = ("p",)
    dispersion = False  # for 0/1 values |x - c| is a function of the mean

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return (x == 0) | (x == 1)

    def estimate(self, acc: MomentStats) -> Estimate:
        m = acc.mean
        return Estimate(self.name, acc.n, {"p": m}, {"p": math.sqrt(acc.variance / acc.n)})

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        m, p = acc.mean, ref["p"]
        return float(special.xlogy(m, p) + special.xlog1py(1 - m, -p))

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        pc, pr = cur["p"], ref["p"]
        return float(
            special.xlogy(pc, pc)
            - special.xlogy(pc, pr)
            + special.xlogy(1 - pc, 1 - pc)
            - special.xlogy(1 - pc, 1 - pr)
        )

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        p = params["p"]
        below = (x > 0) if left else (x >= 0)
        at_one = (x > 1) if left else (x >= 1)
        return np.where(at_one, 1.0, np.where(below, 1.0 - p, 0.0))


class Gamma(Family):
    """Shape ``k`` from ``ln k - digamma(k) = S / n`` (Newton), scale ``mean / k``; KL
    ``(k_c - k_r) digamma(k_c) - lnG(k_c) + lnG(k_r) + k_r ln(t_r/t_c) + k_c (t_c - t_r)/t_r``."""

    name = "gamma"
    params = ("shape", "scale")
    aic_candidate = True
    log_statistic = True

    def valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.isfinite(x) & (x > 0)

    def estimate(self, acc: MomentStats) -> Estimate:
        n, m = acc.n, acc.mean
        k = gamma_shape(acc.s / n)
        theta = m / k
        tg = float(special.polygamma(1, k)) if k < 1e8 else 1.0 / k + 1.0 / (2 * k * k)
        denom = k * tg - 1.0
        if k >= 1e8 or denom <= 0:
            denom = 1.0 / (2 * k)  # k*trigamma(k) - 1 ~ 1/(2k) for large k
        var_k = k / (n * denom)
        var_theta = tg * theta * theta / (n * denom)
        return Estimate(
            self.name,
            n,
            {"shape": k, "scale": theta},
            {"shape": math.sqrt(var_k), "scale": math.sqrt(var_theta)},
        )

    def mean_loglik(self, acc: MomentStats, ref: Mapping[str, float]) -> float:
        k, theta, m = ref["shape"], ref["scale"], acc.mean
        mean_log = math.log(m) - acc.s / acc.n
        return (k - 1) * mean_log - m / theta - k * math.log(theta) - float(special.gammaln(k))

    def kl(self, cur: Mapping[str, float], ref: Mapping[str, float]) -> float:
        kc, tc, kr, tr = cur["shape"], cur["scale"], ref["shape"], ref["scale"]
        return float(
            (kc - kr) * special.digamma(kc)
            - special.gammaln(kc)
            + special.gammaln(kr)
            + kr * math.log(tr / tc)
            + kc * (tc - tr) / tr
        )

    def cdf(self, params: Mapping[str, float], x: NDArray[np.float64], left: bool) -> Any:
        return special.gammainc(params["shape"], np.maximum(x, 0) / params["scale"])

    def summary_loglik(self, summary: ValueSummary) -> float:
        m, lx = summary.x.mean, summary.logx
        s = math.log(m) - lx.mean if (m > 0 and lx.n) else _NAN
        if not (s > 0 and math.isfinite(s)):
            return _NAN
        k = gamma_shape(s)
        if not math.isfinite(k):
            return _NAN
        theta = m / k
        return (k - 1.0) * lx.mean - k - k * math.log(theta) - float(special.gammaln(k))


REGISTRY: dict[str, Family] = {
    f.name: f for f in (Normal(), Lognormal(), Exponential(), Poisson(), Bernoulli(), Gamma())
}
NUMERIC_FAMILIES = tuple(REGISTRY)
FAMILIES = (*NUMERIC_FAMILIES, "categorical")


def family(name: str) -> Family:
    """The numeric family called ``name`` (a clear error for any other name)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown numeric MLE family {name!r}; choose one of {', '.join(NUMERIC_FAMILIES)}"
        ) from None
