"""Running maximum-likelihood estimates from mergeable sufficient statistics
(docs/concepts.md, "Running maximum-likelihood estimates").

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
from divtransforms.families import (
    FAMILIES,
    NUMERIC_FAMILIES,
    REGISTRY,
    Estimate,
    Family,
    family,
    gamma_shape,
)
from divtransforms.inference import choose_family
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

STATE_VERSION = 2


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
        family(self.family)  # a clear error for an unknown family

    @property
    def model(self) -> Family:
        """The family's rules (``divtransforms.families.REGISTRY``)."""
        return REGISTRY[self.family]

    # -- adding data ---------------------------------------------------------------------------
    def _valid(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        return self.model.valid(x)

    def transform(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The family's value ``t`` of valid samples ``x``."""
        return self.model.transform(x)

    def add(self, values: Any, feature: str | None = None) -> MomentMLE:
        """A new accumulator with one more batch (numpy/pyarrow/sequence; NaN = missing)."""
        x, n_bad_type = to_float_array(values, feature)
        nan = np.isnan(x)
        if nan.any():
            x = x[~nan]
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
        model = self.model
        keep_dev = model.dispersion and math.isfinite(self.center)
        dev = Moments()
        if keep_dev:
            d = np.subtract(t, self.center)
            dev = Moments.of(np.abs(d, out=d))
        s = float(np.sum(_g((t - mt.shift - mt.offset) / mt.mean))) if model.log_statistic else 0.0
        mean_lfact = float(special.gammaln(x + 1.0).mean()) if model.log_factorial else 0.0
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
        if self.model.log_statistic:
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
        """MLEs with robust (sandwich) standard errors where the family's own are not robust
        (see ``divtransforms.families``); NaN for an empty accumulator."""
        return self.model.estimate(self) if self.n else self.model.empty_estimate()

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
    """The family :func:`divtransforms.inference.choose_family` picks for a numeric sample."""
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
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(acc.model.mean_loglik(acc, ref.params))


def model_kl(
    family: str, cur: Mapping[str, float], ref: Mapping[str, float], base: float = 2.0
) -> float:
    """Closed-form ``KL(current fit || reference fit)`` in ``base`` units (NaN if undefined).

    Each family's formula is in ``divtransforms.families``; categorical: the discrete KL of the
    probability vectors.
    """
    vals = [*cur.values(), *ref.values()]
    if any(isinstance(v, float) and math.isnan(v) for v in vals):
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if family == "categorical":
            kl = float(kl_divergence(list(cur.values()), list(ref.values()), base=math.e))
        else:
            kl = REGISTRY[family].kl(cur, ref) if family in REGISTRY else _unknown(family)
    if math.isnan(kl):
        return math.nan
    return max(float(kl), 0.0) / math.log(base)


def _unknown(name: str) -> float:
    raise ValueError(f"unknown family {name!r}")


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
