"""Running maximum-likelihood estimates from mergeable sufficient statistics (DESIGN.md s. 4).

Every numeric family keeps the moments (n, mean, M2, M3, M4; ``divtransforms.moments.Moments``)
of a transformed value ``t`` (``x`` itself, or ``log x`` for the lognormal), and those of the
absolute deviations ``|t - c|`` from a centre ``c`` fixed by the reference. Merges are exact
(Pebay's update around a shift carried exactly), so ``1e9 + N(0, 1e-3)`` data keep full precision
after any split. The gamma family also keeps ``S = sum(x/m - 1 - log(x/m))`` (``m`` the mean), a
sum of non-negative terms from which ``ln(mean) - mean(log x) = S / n`` follows without
cancellation.

Invalid samples for a family (``x <= 0`` for lognormal/gamma, negative or non-integer for poisson,
not 0/1 for bernoulli, ``+-inf`` everywhere) are counted in ``n_invalid`` and excluded; missing
values (NaN) are not counted here (the histogram counts them).

Standard errors are robust (sandwich) where a parameter is a function of the mean or variance of
``t``: they come from the data's variance and kurtosis, not from the model, and equal the
Fisher-information errors when the family is the true one.

| family      | parameters        | standard errors                                  |
|-------------|-------------------|--------------------------------------------------|
| normal      | mu, sigma         | s/sqrt(n), sigma sqrt((kurt + 2) / 4n)           |
| lognormal   | mu, sigma (log x) | the same on log x                                |
| exponential | rate              | rate^2 s/sqrt(n) (delta method on 1/mean)        |
| poisson     | rate              | s/sqrt(n)                                        |
| bernoulli   | p                 | sqrt(p(1-p)/n)                                   |
| gamma       | shape, scale      | Fisher information (trigamma)                    |
| categorical | p_<label>         | sqrt(p(1-p)/n)                                   |

The tests that decide drift live in ``divtransforms.significance``; they read these moments.
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
from divtransforms.moments import Moments, ValueSummary

__all__ = [
    "FAMILIES",
    "NUMERIC_FAMILIES",
    "CategoricalMLE",
    "Estimate",
    "MLEAccumulator",
    "MomentMLE",
    "accumulator_for",
    "accumulator_from_dict",
    "gamma_shape",
    "infer_family",
    "mean_log_likelihood",
    "model_kl",
]

NUMERIC_FAMILIES = ("normal", "lognormal", "exponential", "poisson", "bernoulli", "gamma")
FAMILIES = (*NUMERIC_FAMILIES, "categorical")
STATE_VERSION = 2


@dataclass(frozen=True)
class Estimate:
    """Fitted parameters of one family with their standard errors, from ``n`` samples."""

    family: str
    n: int
    params: dict[str, float]
    se: dict[str, float]


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
    """Accumulator for the numeric families (see the module docstring).

    ``t`` holds the moments of the family's value (``x``, or ``log x`` for the lognormal), ``dev``
    those of ``|t - center|``, the absolute deviations from a centre fixed by the reference (its
    mean of ``t``; NaN until a reference sets it, and then ``dev`` stays empty). Both feed the drift
    tests (``divtransforms.significance``), which use only these moments and so hold whatever the
    true distribution is.
    """

    family: str
    t: Moments = field(default_factory=Moments)
    center: float = math.nan
    dev: Moments = field(default_factory=Moments)
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

    def transform(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The family's value ``t`` of valid samples ``x``."""
        return np.log(x) if self.family == "lognormal" else x

    def add(self, values: Any, feature: str | None = None) -> MomentMLE:
        """A new accumulator with one more batch (numpy/pyarrow/sequence; NaN = missing)."""
        x, n_bad_type = to_float_array(values, feature)
        x = x[~np.isnan(x)]
        ok = self._valid(x)
        n_invalid = n_bad_type + int(x.shape[0] - ok.sum())
        x = x[ok] if n_invalid - n_bad_type else x
        return self.merge(self._from_valid(x, n_invalid))

    def with_center(self, center: float) -> MomentMLE:
        """An empty accumulator of this family whose ``dev`` moments are about ``center``."""
        return MomentMLE(self.family, center=float(center))

    def _from_valid(self, x: NDArray[np.float64], n_invalid: int) -> MomentMLE:
        if x.shape[0] == 0:
            return MomentMLE(self.family, center=self.center, n_invalid=n_invalid)
        t = self.transform(x)
        mt = Moments.of(t)
        dev = Moments.of(np.abs(t - self.center)) if math.isfinite(self.center) else Moments()
        s = 0.0
        if self.family == "gamma":
            s = float(np.sum(_g((t - mt.shift - mt.offset) / mt.mean)))
        mean_lfact = float(special.gammaln(x + 1.0).mean()) if self.family == "poisson" else 0.0
        return MomentMLE(self.family, mt, self.center, dev, s, mean_lfact, n_invalid)

    def merge(self, other: MomentMLE) -> MomentMLE:
        """Exact combination of two accumulators (Pebay), commutative up to rounding.

        Deviations about different centres (state kept across two references) cannot be
        combined: the result keeps this accumulator's centre with empty ``dev`` moments.
        """
        if other.family != self.family:
            raise ValueError(f"cannot merge {self.family} and {other.family} statistics")
        same_center = self.center == other.center or (
            math.isnan(self.center) and math.isnan(other.center)
        )
        dev = self.dev.merge(other.dev) if same_center else Moments()
        n_invalid = self.n_invalid + other.n_invalid
        if other.n == 0:
            return replace(self, dev=dev, n_invalid=n_invalid)
        if self.n == 0:
            return replace(other, center=self.center, dev=dev, n_invalid=n_invalid)
        t = self.t.merge(other.t)
        na, nb, n = self.n, other.n, t.n
        s = 0.0
        if self.family == "gamma":
            m = t.mean
            off_b = (other.t.shift - self.t.shift) + other.t.offset  # both about self's shift
            s = (
                self.s
                + na * float(_g((self.t.offset - t.offset) / m))
                + other.s
                + nb * float(_g((off_b - t.offset) / m))
            )
        mean_lfact = (self.mean_lfact * na + other.mean_lfact * nb) / n
        return MomentMLE(self.family, t, self.center, dev, s, mean_lfact, n_invalid)

    # -- estimates -----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.t.n

    @property
    def mean(self) -> float:
        """Mean of the transformed value (``x``, or ``log x`` for the lognormal)."""
        return self.t.mean

    @property
    def variance(self) -> float:
        """MLE variance (``M2 / n``) of the transformed value."""
        return self.t.variance

    def estimate(self) -> Estimate:
        """MLEs with robust (sandwich) standard errors where the family's own are not robust.

        mu, rate and p are functions of the mean of ``t``, so their sandwich standard error
        comes from the sample variance (delta method for ``rate = 1/mean``); sigma's uses the
        sample kurtosis, ``sigma sqrt((kurt + 2) / 4n)``. Under the family itself these equal
        the Fisher-information errors. Gamma keeps its Fisher-information errors.
        """
        f, n = self.family, self.n
        nan = math.nan
        if n == 0:
            names = _PARAM_NAMES[f]
            return Estimate(f, 0, {k: nan for k in names}, {k: nan for k in names})
        m, var = self.mean, self.variance
        sd_mean = math.sqrt(var / n)
        if f in ("normal", "lognormal"):
            sigma = math.sqrt(var)
            kurt = self.t.kurtosis
            return Estimate(
                f,
                n,
                {"mu": m, "sigma": sigma},
                {"mu": sd_mean, "sigma": sigma * math.sqrt(max(kurt + 2.0, 0.0) / (4 * n))},
            )
        if f == "exponential":
            rate = 1.0 / m if m > 0 else math.inf
            return Estimate(f, n, {"rate": rate}, {"rate": rate * rate * sd_mean})
        if f == "poisson":
            return Estimate(f, n, {"rate": m}, {"rate": sd_mean})
        if f == "bernoulli":
            return Estimate(f, n, {"p": m}, {"p": sd_mean})
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
            "n": self.n,  # for readers of the state file; the moments below carry it too
            "t": self.t.to_list(),
            "center": self.center if math.isfinite(self.center) else None,
            "dev": self.dev.to_list(),
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
    if version not in (1, STATE_VERSION):
        raise ValueError(f"MLE state version {version} is not supported (expected {STATE_VERSION})")
    family = d.get("family")
    if family == "categorical":
        spec = bin_spec_from_dict(d["bins"])
        if not isinstance(spec, CategoricalBins):
            raise ValueError("categorical MLE state must carry categorical bins")
        return CategoricalMLE(spec, tuple(d["counts"]), int(d.get("n_invalid", 0)))
    if version == 1:  # n, mean, M2 only: the third and fourth moments are unknown
        shift, off, m2 = float(d["shift"]), float(d["offset"]), float(d["m2"])
        t = Moments(int(d["n"]), shift, off, m2, math.nan, math.nan)
        return MomentMLE(
            str(family), t, s=float(d.get("s", 0.0)), mean_lfact=float(d.get("mean_lfact", 0.0)),
            n_invalid=int(d.get("n_invalid", 0)),
        )  # fmt: skip
    center = d.get("center")
    return MomentMLE(
        str(family),
        Moments.from_list(d["t"]),
        math.nan if center is None else float(center),
        Moments.from_list(d["dev"]),
        float(d.get("s", 0.0)),
        float(d.get("mean_lfact", 0.0)),
        int(d.get("n_invalid", 0)),
    )


def infer_family(values: Any) -> str:
    """The family :func:`divtransforms.families.choose_family` picks for a numeric sample."""
    from divtransforms.families import choose_family

    x, _ = to_float_array(values)
    return choose_family(ValueSummary.of(x)).family


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


def category_tests(cur: CategoricalMLE, ref: CategoricalMLE) -> dict[str, tuple[float, float]]:
    """Pooled two-proportion z-test of each category, current against reference:
    ``{"p_<label>": (z, two-sided p)}``; NaN for a category neither sample has."""
    nc, nr = cur.n, ref.n
    out: dict[str, tuple[float, float]] = {}
    labels = [f"p_{lab}" for lab in cur.spec.labels]
    if nc == 0 or nr == 0:
        return {k: (math.nan, math.nan) for k in labels}
    pooled = (cur._arr + ref._arr) / (nc + nr)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nr))
        diff = cur._arr / nc - ref._arr / nr
        z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
    p = 2.0 * special.ndtr(-np.abs(z))
    for k, pp, zi, pi in zip(labels, pooled, z, p, strict=True):
        out[k] = (math.nan, math.nan) if pp == 0 else (float(zi), float(pi))
    return out
