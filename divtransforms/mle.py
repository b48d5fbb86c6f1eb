"""Running maximum-likelihood estimates from mergeable sufficient statistics (DESIGN.md s. 4).

Every numeric family keeps the moments of a transformed value ``t`` (``x`` itself, or ``log x`` for
the lognormal) as ``n``, a ``shift`` and the mean offset from it, and ``M2`` (sum of squared
deviations). Batches use two passes around a shift; merges use Chan et al.'s update with the shift
difference taken exactly, so that ``1e9 + N(0, 1e-3)`` data keep full precision after any split.
The gamma family also keeps ``S = sum(x/m - 1 - log(x/m))`` (``m`` the mean), a sum of non-negative
terms from which ``ln(mean) - mean(log x) = S / n`` follows without cancellation.

Invalid samples for a family (``x <= 0`` for lognormal/gamma, negative or non-integer for poisson,
not 0/1 for bernoulli, ``+-inf`` everywhere) are counted in ``n_invalid`` and excluded; missing
values (NaN) are not counted here (the histogram counts them).

| family      | parameters        | standard errors (Fisher information)                       |
|-------------|-------------------|------------------------------------------------------------|
| normal      | mu, sigma         | sigma/sqrt(n), sigma/sqrt(2n)                              |
| lognormal   | mu, sigma (log x) | the same on log x                                          |
| exponential | rate              | rate/sqrt(n)                                               |
| poisson     | rate              | sqrt(rate/n)                                               |
| bernoulli   | p                 | sqrt(p(1-p)/n)                                             |
| gamma       | shape, scale      | inverse of n [[trigamma(k), 1/theta], [1/theta, k/theta^2]] |
| categorical | p_<label>         | sqrt(p(1-p)/n)                                             |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import special

from divtransforms.bins import CategoricalBins, bin_spec_from_dict, to_float_array
from divtransforms.divergence import kl_divergence

__all__ = [
    "FAMILIES",
    "NUMERIC_FAMILIES",
    "CategoricalMLE",
    "Estimate",
    "MLEAccumulator",
    "MomentMLE",
    "ParameterTest",
    "accumulator_for",
    "accumulator_from_dict",
    "gamma_shape",
    "infer_family",
    "mean_log_likelihood",
    "model_kl",
    "parameter_tests",
]

NUMERIC_FAMILIES = ("normal", "lognormal", "exponential", "poisson", "bernoulli", "gamma")
FAMILIES = (*NUMERIC_FAMILIES, "categorical")
STATE_VERSION = 1


@dataclass(frozen=True)
class Estimate:
    """Fitted parameters of one family with their standard errors, from ``n`` samples."""

    family: str
    n: int
    params: dict[str, float]
    se: dict[str, float]


@dataclass(frozen=True)
class ParameterTest:
    """Test of one parameter, current against reference: signed z-score and two-sided p-value."""

    name: str
    z: float
    p_value: float


def _g(u: NDArray[np.float64] | float) -> Any:
    """``u - log1p(u)`` (>= 0), accurate for tiny ``u`` as well."""
    u = np.asarray(u, dtype=np.float64)
    small = np.abs(u) < 1e-4
    series = u * u * (0.5 - u * (1.0 / 3.0 - u * 0.25))
    with np.errstate(invalid="ignore", divide="ignore"):
        direct = u - np.log1p(u)
    return np.where(small, series, direct)


@dataclass(frozen=True)
class MomentMLE:
    """Accumulator for the numeric families (see the module docstring)."""

    family: str
    n: int = 0
    shift: float = 0.0
    offset: float = 0.0  # mean of t = shift + offset
    m2: float = 0.0
    s: float = 0.0  # gamma only: sum(x/m - 1 - log(x/m))
    mean_lfact: float = 0.0  # poisson only: mean of log(x!)
    n_invalid: int = 0

    def __post_init__(self) -> None:
        if self.family not in NUMERIC_FAMILIES:
            raise ValueError(
                f"unknown numeric MLE family {self.family!r}; "
                f"choose one of {', '.join(NUMERIC_FAMILIES)}"
            )

    # -- adding data ---------------------------------------------------------------------------
    def _valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        ok = np.isfinite(x)
        f = self.family
        if f in ("lognormal", "gamma"):
            ok &= x > 0
        elif f == "exponential":
            ok &= x >= 0
        elif f == "poisson":
            ok &= (x >= 0) & (np.floor(x) == x)
        elif f == "bernoulli":
            ok &= (x == 0) | (x == 1)
        return ok

    def add(self, values: Any, feature: str | None = None) -> MomentMLE:
        """A new accumulator with one more batch (numpy/pyarrow/sequence; NaN = missing)."""
        x, n_bad_type = to_float_array(values, feature)
        x = x[~np.isnan(x)]
        ok = self._valid(x)
        n_invalid = n_bad_type + int(x.shape[0] - ok.sum())
        x = x[ok] if n_invalid - n_bad_type else x
        batch = self._from_valid(x, n_invalid)
        return self.merge(batch)

    def _from_valid(self, x: NDArray[np.float64], n_invalid: int) -> MomentMLE:
        n = int(x.shape[0])
        if n == 0:
            return replace(
                self, n=0, shift=0.0, offset=0.0, m2=0.0, s=0.0, mean_lfact=0.0, n_invalid=n_invalid
            )
        t = np.log(x) if self.family == "lognormal" else x
        shift = float(t[0])
        d = t - shift
        off = float(d.mean())
        r = d - off
        off += float(r.mean())  # one refinement step: the residual mean is ~ulp-level
        r = d - off
        m2 = float((r * r).sum())  # no BLAS: pairwise summation, no thread start-up
        s = 0.0
        if self.family == "gamma":
            m = shift + off
            s = float(np.sum(_g(r / m)))
        mean_lfact = float(special.gammaln(x + 1.0).mean()) if self.family == "poisson" else 0.0
        return MomentMLE(self.family, n, shift, off, m2, s, mean_lfact, n_invalid)

    def merge(self, other: MomentMLE) -> MomentMLE:
        """Exact combination of two accumulators (Chan et al.), commutative up to rounding."""
        if other.family != self.family:
            raise ValueError(f"cannot merge {self.family} and {other.family} statistics")
        if other.n == 0:
            return replace(self, n_invalid=self.n_invalid + other.n_invalid)
        if self.n == 0:
            return replace(other, n_invalid=self.n_invalid + other.n_invalid)
        na, nb = self.n, other.n
        n = na + nb
        shift = self.shift
        off_a = self.offset
        off_b = (other.shift - shift) + other.offset  # exact when shifts are within 2x (Sterbenz)
        delta = off_b - off_a
        off = off_a + delta * (nb / n)
        m2 = self.m2 + other.m2 + delta * delta * (na * nb / n)
        s = 0.0
        if self.family == "gamma":
            m = shift + off
            s = (
                self.s
                + na * float(_g((off_a - off) / m))
                + other.s
                + nb * float(_g((off_b - off) / m))
            )
        mean_lfact = (self.mean_lfact * na + other.mean_lfact * nb) / n
        return MomentMLE(
            self.family, n, shift, off, m2, s, mean_lfact, self.n_invalid + other.n_invalid
        )

    # -- estimates -----------------------------------------------------------------------------
    @property
    def mean(self) -> float:
        """Mean of the transformed value (``x``, or ``log x`` for the lognormal)."""
        return self.shift + self.offset if self.n else math.nan

    @property
    def variance(self) -> float:
        """MLE variance (``M2 / n``) of the transformed value."""
        return self.m2 / self.n if self.n else math.nan

    def estimate(self) -> Estimate:
        f, n = self.family, self.n
        nan = math.nan
        if n == 0:
            names = _PARAM_NAMES[f]
            return Estimate(f, 0, {k: nan for k in names}, {k: nan for k in names})
        m = self.mean
        if f in ("normal", "lognormal"):
            sigma = math.sqrt(self.variance)
            return Estimate(
                f,
                n,
                {"mu": m, "sigma": sigma},
                {"mu": sigma / math.sqrt(n), "sigma": sigma / math.sqrt(2 * n)},
            )
        if f == "exponential":
            rate = 1.0 / m if m > 0 else math.inf
            return Estimate(f, n, {"rate": rate}, {"rate": rate / math.sqrt(n)})
        if f == "poisson":
            return Estimate(f, n, {"rate": m}, {"rate": math.sqrt(m / n)})
        if f == "bernoulli":
            return Estimate(f, n, {"p": m}, {"p": math.sqrt(max(m * (1 - m), 0.0) / n)})
        # gamma
        k = gamma_shape(self.s / n)
        theta = m / k
        tg = float(special.polygamma(1, k)) if k < 1e8 else 1.0 / k + 1.0 / (2 * k * k)
        denom = k * tg - 1.0
        if k >= 1e8 or denom <= 0:
            denom = 1.0 / (2 * k)  # k*trigamma(k) - 1 ~ 1/(2k) for large k
        var_k = k / (n * denom)
        var_theta = tg * theta * theta / (n * denom)
        return Estimate(
            f,
            n,
            {"shape": k, "scale": theta},
            {"shape": math.sqrt(var_k), "scale": math.sqrt(var_theta)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "family": self.family,
            "n": self.n,
            "shift": self.shift,
            "offset": self.offset,
            "m2": self.m2,
            "s": self.s,
            "mean_lfact": self.mean_lfact,
            "n_invalid": self.n_invalid,
        }


_PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sigma"),
    "lognormal": ("mu", "sigma"),
    "exponential": ("rate",),
    "poisson": ("rate",),
    "bernoulli": ("p",),
    "gamma": ("shape", "scale"),
}


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


@dataclass(frozen=True)
class CategoricalMLE:
    """Category probabilities ``p_k = c_k / n`` on a categorical bin spec (the histogram itself)."""

    spec: CategoricalBins
    counts: tuple[int, ...] = ()
    n_invalid: int = 0
    family: ClassVar[str] = "categorical"
    _arr: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = self.counts or (0,) * self.spec.n_bins
        if len(counts) != self.spec.n_bins:
            raise ValueError("categorical counts do not match the bin spec")
        object.__setattr__(self, "counts", tuple(int(c) for c in counts))
        object.__setattr__(self, "_arr", np.asarray(self.counts, dtype=np.int64))

    @property
    def n(self) -> int:
        return int(self._arr.sum())

    def add(self, values: Any, feature: str | None = None) -> CategoricalMLE:
        c = self.spec.count(values, feature)
        return self.add_counts(c.counts, c.n_invalid)

    def add_counts(self, counts: NDArray[np.int64], n_invalid: int = 0) -> CategoricalMLE:
        return CategoricalMLE(
            self.spec, tuple((self._arr + np.asarray(counts)).tolist()), self.n_invalid + n_invalid
        )

    def merge(self, other: CategoricalMLE) -> CategoricalMLE:
        if other.spec != self.spec:
            raise ValueError("cannot merge categorical statistics on different vocabularies")
        return self.add_counts(other._arr, other.n_invalid)

    def estimate(self) -> Estimate:
        n = self.n
        labels = self.spec.labels
        if n == 0:
            return Estimate(
                "categorical",
                0,
                {f"p_{lab}": math.nan for lab in labels},
                {f"p_{lab}": math.nan for lab in labels},
            )
        p = self._arr / n
        se = np.sqrt(p * (1 - p) / n)
        return Estimate(
            "categorical",
            n,
            {f"p_{lab}": float(v) for lab, v in zip(labels, p, strict=True)},
            {f"p_{lab}": float(v) for lab, v in zip(labels, se, strict=True)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "family": "categorical",
            "bins": self.spec.to_dict(),
            "counts": list(self.counts),
            "n_invalid": self.n_invalid,
        }


MLEAccumulator = MomentMLE | CategoricalMLE


def accumulator_for(family: str, spec: CategoricalBins | None = None) -> MLEAccumulator:
    """An empty accumulator for ``family`` (``categorical`` needs its bin ``spec``)."""
    if family == "categorical":
        if not isinstance(spec, CategoricalBins):
            raise ValueError("the categorical family needs the feature's categorical bins")
        return CategoricalMLE(spec)
    return MomentMLE(family)


def accumulator_from_dict(d: Mapping[str, Any]) -> MLEAccumulator:
    """Rebuild an accumulator from :meth:`to_dict` output (checks the state version)."""
    version = d.get("version", STATE_VERSION)
    if version != STATE_VERSION:
        raise ValueError(f"MLE state version {version} is not supported (expected {STATE_VERSION})")
    family = d.get("family")
    if family == "categorical":
        spec = bin_spec_from_dict(d["bins"])
        if not isinstance(spec, CategoricalBins):
            raise ValueError("categorical MLE state must carry categorical bins")
        return CategoricalMLE(spec, tuple(d["counts"]), int(d.get("n_invalid", 0)))
    return MomentMLE(
        str(family),
        int(d["n"]),
        float(d["shift"]),
        float(d["offset"]),
        float(d["m2"]),
        float(d.get("s", 0.0)),
        float(d.get("mean_lfact", 0.0)),
        int(d.get("n_invalid", 0)),
    )


def _skew(x: NDArray[np.float64]) -> float:
    """Sample skewness (the biased, moment estimator ``scipy.stats.skew`` computes)."""
    d = x - x.mean()
    m2 = float((d * d).mean())
    return float((d * d * d).mean()) / m2**1.5 if m2 > 0 else 0.0


def infer_family(values: Any) -> str:
    """A sensible default family for a numeric sample: bernoulli for 0/1, poisson for
    non-negative integers, lognormal for positive values with a right skew, else normal."""
    x, _ = to_float_array(values)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "normal"
    if np.all((x == 0) | (x == 1)):
        return "bernoulli"
    if np.all((x >= 0) & (np.floor(x) == x)):
        return "poisson"
    if np.all(x > 0) and x.size >= 8 and _skew(np.log(x)) ** 2 < _skew(x) ** 2 and _skew(x) > 1.0:
        return "lognormal"
    return "normal"


# -- comparing a window's fit to the reference's ------------------------------------------------


def mean_log_likelihood(acc: MLEAccumulator, ref: Estimate, alpha: float = 0.5) -> float:
    """Mean log-likelihood (nats per sample) of the data in ``acc`` under the reference fit.

    Computed from the sufficient statistics alone. NaN for an empty accumulator. For the
    categorical family the reference probabilities are smoothed with ``alpha`` pseudo-counts.
    """
    if acc.n == 0 or ref.n == 0:
        return math.nan
    if isinstance(acc, CategoricalMLE):
        p = np.asarray(list(ref.params.values())) * ref.n + alpha
        p = p / p.sum()
        return float(np.dot(acc._arr / acc.n, np.log(p)))
    f, m, var = acc.family, acc.mean, acc.variance
    rp = ref.params
    with np.errstate(divide="ignore", invalid="ignore"):
        if f in ("normal", "lognormal"):
            s0 = rp["sigma"]
            if s0 == 0:
                return math.inf if (var == 0 and m == rp["mu"]) else -math.inf
            mse = var + (m - rp["mu"]) ** 2
            ll = -0.5 * math.log(2 * math.pi * s0 * s0) - mse / (2 * s0 * s0)
            return ll - m if f == "lognormal" else ll
        if f == "exponential":
            lam = rp["rate"]
            return math.log(lam) - lam * m
        if f == "poisson":
            lam = rp["rate"]
            return float(special.xlogy(m, lam)) - lam - acc.mean_lfact
        if f == "bernoulli":
            p = rp["p"]
            return float(special.xlogy(m, p) + special.xlog1py(1 - m, -p))
        k, theta = rp["shape"], rp["scale"]
        mean_log = math.log(m) - acc.s / acc.n
        return (k - 1) * mean_log - m / theta - k * math.log(theta) - float(special.gammaln(k))


def model_kl(
    family: str, cur: Mapping[str, float], ref: Mapping[str, float], base: float = 2.0
) -> float:
    """Closed-form ``KL(current fit || reference fit)`` in ``base`` units (NaN if undefined).

    normal/lognormal: ``ln(s_r/s_c) + (s_c^2 + (m_c - m_r)^2) / (2 s_r^2) - 1/2``;
    exponential: ``ln(l_c/l_r) + l_r/l_c - 1``; poisson: ``l_c ln(l_c/l_r) + l_r - l_c``;
    bernoulli: ``p_c ln(p_c/p_r) + (1-p_c) ln((1-p_c)/(1-p_r))``; gamma (shape k, scale t):
    ``(k_c - k_r) digamma(k_c) - lnG(k_c) + lnG(k_r) + k_r ln(t_r/t_c) + k_c (t_c - t_r)/t_r``;
    categorical: the discrete KL of the probability vectors.
    """
    vals = [*cur.values(), *ref.values()]
    if any(isinstance(v, float) and math.isnan(v) for v in vals):
        return math.nan
    lb = math.log(base)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if family in ("normal", "lognormal"):
            sc, sr, mc, mr = cur["sigma"], ref["sigma"], cur["mu"], ref["mu"]
            if sr == 0 or sc == 0:
                return 0.0 if (sc == sr and mc == mr) else math.inf
            kl = math.log(sr / sc) + (sc * sc + (mc - mr) ** 2) / (2 * sr * sr) - 0.5
        elif family == "exponential":
            lc, lr = cur["rate"], ref["rate"]
            kl = math.log(lc / lr) + lr / lc - 1
        elif family == "poisson":
            lc, lr = cur["rate"], ref["rate"]
            kl = float(special.xlogy(lc, lc) - special.xlogy(lc, lr)) + lr - lc
            if lr == 0 and lc > 0:
                kl = math.inf
        elif family == "bernoulli":
            kl = float(
                kl_divergence([cur["p"], 1 - cur["p"]], [ref["p"], 1 - ref["p"]], base=math.e)
            )
        elif family == "gamma":
            kc, tc, kr, tr = cur["shape"], cur["scale"], ref["shape"], ref["scale"]
            kl = float(
                (kc - kr) * special.digamma(kc)
                - special.gammaln(kc)
                + special.gammaln(kr)
                + kr * math.log(tr / tc)
                + kc * (tc - tr) / tr
            )
        elif family == "categorical":
            kl = float(kl_divergence(list(cur.values()), list(ref.values()), base=math.e))
        else:
            raise ValueError(f"unknown family {family!r}")
    if isinstance(kl, float) and math.isnan(kl):
        return math.nan
    return max(float(kl), 0.0) / lb


def _two_sided_z(p: float, sign: float) -> float:
    if not math.isfinite(p):
        return math.nan
    p = min(max(p, 0.0), 1.0)
    return math.copysign(float(special.ndtri(1.0 - p / 2.0)) if p < 1 else 0.0, sign)


def _z_test(diff: float, se: float) -> tuple[float, float]:
    if not (math.isfinite(diff) and math.isfinite(se)):
        return math.nan, math.nan
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    z = diff / se
    return z, float(2.0 * special.ndtr(-abs(z)))


def _f_test(ratio: float, d1: float, d2: float) -> float:
    if not (math.isfinite(ratio) and d1 > 0 and d2 > 0):
        return math.nan
    cdf = float(special.fdtr(d1, d2, ratio))
    return min(1.0, 2.0 * min(cdf, 1.0 - cdf))


def parameter_tests(cur_acc: MLEAccumulator, ref_acc: MLEAccumulator) -> list[ParameterTest]:
    """Per-parameter tests of the current window against the reference (two-sided).

    normal/lognormal: ``mu`` by a z-test with the reference's sigma (exact under the null for
    normal data), ``sigma`` by the F-test of variances; exponential: F-test of means (exact,
    ``F(2 n_c, 2 n_r)``); poisson: conditional binomial test of the counts (exact); bernoulli and
    categorical: pooled two-proportion z-tests; gamma: Wald z-tests with the reference's Fisher
    information. Each z is signed (current minus reference) and equals ``Phi^-1(1 - p/2)``.
    """
    if cur_acc.family != ref_acc.family:
        raise ValueError("parameter tests need two accumulators of the same family")
    nc, nr = cur_acc.n, ref_acc.n
    cur, ref = cur_acc.estimate(), ref_acc.estimate()
    names = list(ref.params)
    if nc == 0 or nr == 0:
        return [ParameterTest(k, math.nan, math.nan) for k in names]
    f = cur_acc.family
    out: list[ParameterTest] = []
    if isinstance(cur_acc, CategoricalMLE) and isinstance(ref_acc, CategoricalMLE):
        c, r = cur_acc._arr, ref_acc._arr
        pooled = (c + r) / (nc + nr)
        for k, ci, ri, pp in zip(names, c, r, pooled, strict=True):
            if pp == 0:  # a category neither sample has: nothing to test
                out.append(ParameterTest(k, 0.0, math.nan))
                continue
            se = math.sqrt(pp * (1 - pp) * (1 / nc + 1 / nr))
            z, p = _z_test(ci / nc - ri / nr, se)
            out.append(ParameterTest(k, z, p))
        return out
    assert isinstance(cur_acc, MomentMLE) and isinstance(ref_acc, MomentMLE)
    mc, mr = cur_acc.mean, ref_acc.mean
    if f in ("normal", "lognormal"):
        sr = math.sqrt(ref_acc.variance)
        z, p = _z_test(mc - mr, sr * math.sqrt(1 / nc + 1 / nr))
        out.append(ParameterTest("mu", z, p))
        vc = cur_acc.m2 / (nc - 1) if nc > 1 else math.nan
        vr = ref_acc.m2 / (nr - 1) if nr > 1 else math.nan
        if vr == 0:
            p = 1.0 if vc == 0 else 0.0
        else:
            p = _f_test(vc / vr, nc - 1, nr - 1)
        out.append(ParameterTest("sigma", _two_sided_z(p, vc - vr), p))
    elif f == "exponential":
        p = _f_test(mc / mr, 2 * nc, 2 * nr) if mr > 0 else math.nan
        # rate = 1/mean: a larger mean is a smaller rate.
        out.append(ParameterTest("rate", _two_sided_z(p, mr - mc), p))
    elif f == "poisson":
        sc, sr_ = round(mc * nc), round(mr * nr)
        total = sc + sr_
        frac = nc / (nc + nr)
        if total == 0:
            p = 1.0
        else:
            lower = float(special.bdtr(sc, total, frac))  # P(X <= sc)
            upper = float(special.bdtrc(sc - 1, total, frac)) if sc > 0 else 1.0  # P(X >= sc)
            p = min(1.0, 2.0 * min(lower, upper))
        out.append(ParameterTest("rate", _two_sided_z(p, mc - mr), p))
    elif f == "bernoulli":
        pp = (mc * nc + mr * nr) / (nc + nr)
        z, p = _z_test(mc - mr, math.sqrt(pp * (1 - pp) * (1 / nc + 1 / nr)))
        out.append(ParameterTest("p", z, p))
    else:  # gamma
        se_ref = ref.se
        for k in names:
            se_unit = se_ref[k] * math.sqrt(nr)  # per-sample standard deviation at the reference
            z, p = _z_test(cur.params[k] - ref.params[k], se_unit * math.sqrt(1 / nc + 1 / nr))
            out.append(ParameterTest(k, z, p))
    return out
