"""Running MLE: exact merges, convergence, scipy agreement, invalid samples, model KL."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from divtransforms import CategoricalBins, accumulator_for, accumulator_from_dict, model_kl
from divtransforms.mle import (
    NUMERIC_FAMILIES,
    gamma_shape,
    infer_family,
    mean_log_likelihood,
)

RNG = np.random.default_rng(42)

SAMPLES = {
    "normal": lambda n, r: r.normal(3.0, 2.0, n),
    "lognormal": lambda n, r: r.lognormal(0.5, 0.8, n),
    "exponential": lambda n, r: r.exponential(1 / 2.5, n),
    "poisson": lambda n, r: r.poisson(4.0, n).astype(float),
    "bernoulli": lambda n, r: (r.random(n) < 0.3).astype(float),
    "gamma": lambda n, r: r.gamma(2.5, 1.5, n),
}
TRUE = {
    "normal": {"mu": 3.0, "sigma": 2.0},
    "lognormal": {"mu": 0.5, "sigma": 0.8},
    "exponential": {"rate": 2.5},
    "poisson": {"rate": 4.0},
    "bernoulli": {"p": 0.3},
    "gamma": {"shape": 2.5, "scale": 1.5},
}


def _fit(family, x, splits=()):
    parts = np.split(x, sorted(splits)) if splits else [x]
    accs = [accumulator_for(family).add(p) for p in parts]
    out = accs[0]
    for a in accs[1:]:
        out = out.merge(a)
    return out


def _close(a, b, rel):
    assert a.n == b.n and a.n_invalid == b.n_invalid
    ea, eb = a.estimate(), b.estimate()
    for k in ea.params:
        assert ea.params[k] == pytest.approx(eb.params[k], rel=rel, abs=0), k
        assert ea.se[k] == pytest.approx(eb.se[k], rel=max(rel, 1e-11), abs=0), k


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(NUMERIC_FAMILIES),
    st.lists(st.integers(1, 1999), min_size=1, max_size=6, unique=True),
    st.integers(0, 2**32 - 1),
)
def test_merge_of_random_splits_equals_one_fit(family, splits, seed):
    x = SAMPLES[family](2000, np.random.default_rng(seed))
    _close(_fit(family, x, splits), _fit(family, x), 1e-12)


@pytest.mark.parametrize("family", ["normal", "gamma", "lognormal", "poisson", "exponential"])
def test_merge_is_exact_on_large_offset_data(family):
    rng = np.random.default_rng(7)
    x = 1e9 + rng.normal(0, 1e-3, 20_000)
    if family == "poisson":
        x = np.round(1e9 + rng.normal(0, 30, 20_000))
    one = _fit(family, x)
    for splits in ([7], [1, 500, 19_999], list(range(1000, 20_000, 1000))):
        _close(_fit(family, x, splits), one, 1e-12)
    if family == "normal":
        # and the one-shot fit itself is right: compare with exact rational arithmetic
        est = one.estimate()
        d = x - 1e9  # exact: Sterbenz
        mean_d = math.fsum(d) / d.size
        var = math.fsum((d - mean_d) ** 2) / d.size
        assert est.params["mu"] == pytest.approx(1e9 + mean_d, rel=1e-15)
        assert est.params["sigma"] ** 2 == pytest.approx(var, rel=1e-9)


def test_merge_is_commutative_and_handles_empty():
    x = SAMPLES["gamma"](500, RNG)
    a, b = accumulator_for("gamma").add(x[:200]), accumulator_for("gamma").add(x[200:])
    _close(a.merge(b), b.merge(a), 1e-12)
    empty = accumulator_for("gamma")
    assert a.merge(empty) == a
    assert empty.merge(a).estimate() == a.estimate()
    assert math.isnan(empty.estimate().params["shape"])


@pytest.mark.slow
@pytest.mark.parametrize("family", NUMERIC_FAMILIES)
def test_estimates_converge_to_true_parameters(family):
    rng = np.random.default_rng(123)
    acc = accumulator_for(family)
    for _ in range(10):
        acc = acc.add(SAMPLES[family](100_000, rng))
    est = acc.estimate()
    for k, v in TRUE[family].items():
        # within 5 standard errors, and the standard error itself is small
        assert abs(est.params[k] - v) < 5 * est.se[k], (k, est.params[k], v)
        assert est.se[k] < 0.01 * abs(v)


def test_gamma_shape_matches_scipy_fit():
    for shape, scale in [(0.5, 2.0), (2.5, 1.5), (30.0, 0.1)]:
        x = np.random.default_rng(5).gamma(shape, scale, 5000)
        k_sp, _, scale_sp = stats.gamma.fit(x, floc=0)
        est = accumulator_for("gamma").add(x).estimate()
        assert est.params["shape"] == pytest.approx(k_sp, rel=0.01)
        assert est.params["scale"] == pytest.approx(scale_sp, rel=0.01)


def test_gamma_shape_solver_large_and_small():
    for k in (1e-3, 0.1, 1.0, 10.0, 1e4, 1e8, 1e12):
        if k > 1e6:
            s = 1 / (2 * k) + 1 / (12 * k * k)
        else:
            s = math.log(k) - float(special.digamma(k))
        assert gamma_shape(s) == pytest.approx(k, rel=1e-9)
    assert gamma_shape(0.0) == math.inf


def test_normal_standard_errors_are_sandwich_and_fisher_on_normal_data():
    x = RNG.normal(0, 2, 400)
    est = accumulator_for("normal").add(x).estimate()
    sigma = np.std(x)
    assert est.params["sigma"] == pytest.approx(sigma, rel=1e-12)
    assert est.se["mu"] == pytest.approx(sigma / 20, rel=1e-12)
    # sandwich: sigma sqrt((excess kurtosis + 2) / 4n), the Fisher sigma / sqrt(2n) on normal data
    kurt = stats.kurtosis(x)
    assert est.se["sigma"] == pytest.approx(sigma * math.sqrt((kurt + 2) / 1600), rel=1e-9)
    assert est.se["sigma"] == pytest.approx(sigma / math.sqrt(800), rel=0.2)
    heavy = accumulator_for("normal").add(RNG.standard_t(5, 4000)).estimate()
    assert heavy.se["sigma"] > 1.5 * heavy.params["sigma"] / math.sqrt(8000)  # t5: kurtosis 6


@pytest.mark.parametrize(
    ("family", "values", "n", "n_invalid"),
    [
        ("lognormal", [1.0, 0.0, -2.0, 3.0, np.nan, np.inf], 2, 3),
        ("gamma", [1.0, 0.0, 2.0], 2, 1),
        ("poisson", [1.0, 2.5, -1.0, 3.0], 2, 2),
        ("bernoulli", [0.0, 1.0, 0.5, 1.0], 3, 1),
        ("exponential", [0.0, 1.0, -0.1], 2, 1),
        ("normal", np.array([1.0, "x", None, 2.0], dtype=object), 2, 1),
    ],
)
def test_invalid_samples_are_counted_not_dropped(family, values, n, n_invalid):
    acc = accumulator_for(family).add(values)
    assert acc.n == n
    assert acc.n_invalid == n_invalid


@pytest.mark.parametrize("family", NUMERIC_FAMILIES)
def test_state_round_trip(family):
    acc = accumulator_for(family).add(SAMPLES[family](300, RNG))
    assert accumulator_from_dict(acc.to_dict()) == acc
    with pytest.raises(ValueError, match="version"):
        accumulator_from_dict({**acc.to_dict(), "version": 99})


def test_categorical_mle_is_the_histogram():
    spec = CategoricalBins(("a", "b"), ("c",))
    acc = accumulator_for("categorical", spec).add(["a", "a", "b", "c", "new", None])
    est = acc.estimate()
    assert acc.n == 5
    assert est.params["p_a"] == pytest.approx(0.4)
    assert est.params["p___unseen__"] == pytest.approx(0.2)
    assert accumulator_from_dict(acc.to_dict()) == acc
    with pytest.raises(ValueError, match="bins"):
        accumulator_for("categorical")


def test_model_kl_matches_numerical_integration():
    from scipy import integrate

    cases = [
        (
            "normal",
            {"mu": 0.3, "sigma": 1.2},
            {"mu": 0.0, "sigma": 1.0},
            stats.norm(0.3, 1.2),
            stats.norm(0, 1),
        ),
        ("exponential", {"rate": 2.0}, {"rate": 1.0}, stats.expon(scale=0.5), stats.expon()),
        (
            "gamma",
            {"shape": 2.0, "scale": 1.5},
            {"shape": 3.0, "scale": 1.0},
            stats.gamma(2.0, scale=1.5),
            stats.gamma(3.0, scale=1.0),
        ),
    ]
    for family, cur, ref, dc, dr in cases:
        lo, hi = dc.ppf(1e-12), dc.isf(1e-12)
        val, _ = integrate.quad(
            lambda x, dc=dc, dr=dr: dc.pdf(x) * (dc.logpdf(x) - dr.logpdf(x)), lo, hi, limit=200
        )
        assert model_kl(family, cur, ref, base=math.e) == pytest.approx(val, rel=1e-6)
        assert model_kl(family, cur, ref) == pytest.approx(val / math.log(2), rel=1e-6)
    k = np.arange(0, 60)
    pc_, pr_ = stats.poisson.pmf(k, 4.0), stats.poisson.pmf(k, 3.0)
    assert model_kl("poisson", {"rate": 4.0}, {"rate": 3.0}, base=math.e) == pytest.approx(
        float(np.sum(pc_ * np.log(pc_ / pr_))), rel=1e-9
    )
    assert model_kl("bernoulli", {"p": 0.3}, {"p": 0.5}, base=2) == pytest.approx(
        stats.entropy([0.3, 0.7], [0.5, 0.5], base=2)
    )
    assert model_kl("normal", {"mu": 0, "sigma": 1}, {"mu": 0, "sigma": 1}) == 0.0


@pytest.mark.parametrize("family", NUMERIC_FAMILIES)
def test_mean_log_likelihood_from_statistics_matches_scipy(family):
    x = SAMPLES[family](2000, RNG)
    ref = accumulator_for(family).add(SAMPLES[family](5000, RNG)).estimate()
    p = ref.params
    dist = {
        "normal": lambda: stats.norm(p.get("mu"), p.get("sigma")),
        "lognormal": lambda: stats.lognorm(p.get("sigma"), scale=math.exp(p.get("mu", 0))),
        "exponential": lambda: stats.expon(scale=1 / p.get("rate", 1)),
        "poisson": lambda: stats.poisson(p.get("rate")),
        "bernoulli": lambda: stats.bernoulli(p.get("p")),
        "gamma": lambda: stats.gamma(p.get("shape"), scale=p.get("scale")),
    }[family]()
    expected = np.mean(dist.logpmf(x) if family in ("poisson", "bernoulli") else dist.logpdf(x))
    ll = mean_log_likelihood(accumulator_for(family).add(x), ref)
    assert ll == pytest.approx(expected, rel=1e-9)


def test_infer_family():
    assert infer_family(np.array([0, 1, 1, 0.0])) == "bernoulli"
    assert infer_family(np.array([0, 3, 5, 2.0])) == "poisson"
    assert infer_family(RNG.lognormal(0, 1, 500)) == "lognormal"
    assert infer_family(RNG.normal(0, 1, 500)) == "normal"
