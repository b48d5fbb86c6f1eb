"""Family inference and the fit indicator."""

import math

import numpy as np
import pytest
from scipy import stats

from divtransforms import ReferenceProfile
from divtransforms.bins import NumericBins
from divtransforms.inference import choose_family, family_fit
from divtransforms.mle import accumulator_for
from divtransforms.moments import ValueSummary

RNG = np.random.default_rng(8)


@pytest.mark.parametrize(
    ("values", "family", "words"),
    [
        (RNG.integers(0, 2, 1000).astype(float), "bernoulli", "0 or 1"),
        (RNG.poisson(4.0, 10_000).astype(float), "poisson", "dispersion test"),
        (RNG.negative_binomial(2, 0.25, 10_000).astype(float), "normal", "over-dispersed"),
        (RNG.binomial(12, 0.4, 10_000).astype(float), "normal", "under-dispersed"),
        (np.maximum(np.round(RNG.normal(40, 12, 10_000)), 0), "normal", "over-dispersed"),
        (RNG.lognormal(0, 1, 10_000), "lognormal", "best AIC"),
        (RNG.gamma(2.0, 1.0, 10_000), "gamma", "best AIC"),
        (RNG.normal(5, 1, 10_000) - 10, "normal", "real values"),
    ],
    ids=[
        "binary",
        "poisson",
        "overdispersed",
        "underdispersed",
        "ages",
        "lognormal",
        "gamma",
        "real",
    ],
)
def test_choose_family(values, family, words):
    choice = choose_family(ValueSummary.of(values))
    assert choice.family == family and words in choice.reason


def test_aic_uses_the_true_log_likelihoods():
    x = RNG.exponential(2.0, 10_000)
    ll = {
        "lognormal": stats.lognorm.logpdf(x, *stats.lognorm.fit(x, floc=0)).mean(),
        "normal": stats.norm.logpdf(x, *stats.norm.fit(x)).mean(),
        "exponential": stats.expon.logpdf(x, 0, x.mean()).mean(),
    }
    reason = choose_family(ValueSummary.of(x)).reason
    for fam, value in ll.items():
        assert f"{fam} {value:.4g}" in reason or f"({fam}" in reason or f": {fam}" in reason


def _fit(values, family):
    spec = NumericBins.from_sample(values, n_bins=32)
    counts = spec.count(values).counts
    return family_fit(spec.edges, counts, accumulator_for(family).add(values).estimate())


def test_fit_is_good_for_the_true_family_and_poor_for_a_wrong_one():
    x = RNG.normal(0, 1, 10_000)
    assert _fit(x, "normal")["quality"] == "good"
    assert _fit(RNG.standard_t(3, 10_000), "normal")["quality"] == "poor"
    assert _fit(RNG.poisson(4.0, 10_000).astype(float), "poisson")["quality"] == "good"
    assert _fit((RNG.random(5000) < 0.2).astype(float), "bernoulli")["quality"] == "good"
    lognormal = RNG.lognormal(0, 1, 10_000)
    assert _fit(lognormal, "lognormal")["kl_bits"] < _fit(lognormal, "normal")["kl_bits"]


def test_fit_g_statistic_matches_a_direct_computation():
    x = RNG.gamma(3.0, 2.0, 5000)
    spec = NumericBins.from_sample(x, n_bins=16)
    counts = spec.count(x).counts
    est = accumulator_for("gamma").add(x).estimate()
    fit = family_fit(spec.edges, counts, est)
    cdf = stats.gamma.cdf(spec.edges, est.params["shape"], scale=est.params["scale"])
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    g = 2 * np.sum(counts[counts > 0] * np.log(counts[counts > 0] / (5000 * probs[counts > 0])))
    assert fit["g_statistic"] == pytest.approx(g, rel=1e-9)
    assert fit["dof"] == np.count_nonzero((counts > 0) | (probs > 0)) - 1 - 2


def test_profile_records_the_reason_and_the_fit():
    profile = ReferenceProfile.build({"x": RNG.standard_t(3, 5000), "k": RNG.poisson(3.0, 5000)})
    x, k = profile.features["x"], profile.features["k"]
    assert x.family == "normal" and x.fit["quality"] == "poor" and "real values" in x.reason
    assert k.family == "poisson" and k.fit["quality"] == "good"
    again = ReferenceProfile.from_dict(profile.to_dict())
    assert again.features["x"].fit == x.fit and again.features["k"].reason == k.reason
    assert math.isfinite(x.mle.center) and x.mle.dev.n == 5000
    # bernoulli has no dispersion test, so its accumulators keep no |x - c| moments
    flag = ReferenceProfile.build({"f": (RNG.random(1000) < 0.2).astype(float)}).features["f"]
    assert flag.family == "bernoulli" and flag.mle.dev.n == 0
