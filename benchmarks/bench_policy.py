"""How calm and how sharp is the default policy on the shapes real features have?

The panel (issue 8): for each shape, a reference of 10,000 values is profiled with
``ReferenceProfile.build`` exactly as a user would leave it (family, bins and centre inferred), and
windows of n = 30 ... 100,000 values are judged by the default ``Policy``:

* **no drift**: windows from the reference's own distribution; every shape, every n. Target: at
  most 1% of windows alert;
* **shift**: the mean moved by 0.25 population standard deviations (counts: by a whole number
  plus a Bernoulli remainder, so they stay counts), n = 300. Targets: 95% on normal data, 90% on
  the other shapes, 80% with heavy tails;
* **scale x1.3**: values spread 1.3 times further from the population mean (counts re-rounded),
  n = 300, on the shapes that take negative or spread values naturally. Target: 90% on normal data;
  the others are reported;
* **irrelevant drift**: a 0.02 sd shift at n = 100,000, and x1.02 for values bounded at 0.
  Target: no alert where the shift is a translation (see ``check_targets``);
* **categorical shift**: [.5, .3, .15, .05] -> [.45, .3, .15, .1] at n = 300. Target: 65%.

Small windows (issue 21, :func:`simulate_small`): gross drift against N(0, 1) references at n = 10,
30 and 100 (shifts of 3, 20 and 1000 sd, values all beyond the reference's range, a unit change
x1000, whole numbers 0..99 from another column, lognormal(3, 2)) and a constant reference (2015)
whose values become 2016. Target: 99% of windows alert at n = 30 and 100, and at n = 10 for values
beyond the range and the constant. And no-drift windows of 1-5 rows of features missing in 10-80%
of the reference's rows, judged with the quality tests too (:func:`full_severity`). Target: at
most 1% alert.

A cell simulates many windows at once: their histograms on the profile's bins, their moments
(``moments.merge_moments`` semantics, two passes) and then the very functions records use
(``significance.comparison_table``, ``power_divergence``, ``js_bias``, ``window_tests``) and the
policy's ``decide``. ``cross_check`` runs ``compare()`` + ``Policy.assess`` on sample windows of
every shape and requires the same severities and p-values.

Run: ``python -m benchmarks.bench_policy`` (``make bench``). Prints each rate with its 95% Wilson
interval; exit status 1 when a target is missed.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from divtransforms.bins import CategoricalBins, NumericBins
from divtransforms.divergence import js_divergence
from divtransforms.mle import MomentMLE
from divtransforms.policy import Evidence, FeaturePolicy, Policy, decide, dense_enough
from divtransforms.profile import FeatureProfile, ReferenceProfile
from divtransforms.significance import (
    DriftTest,
    histogram_p_values,
    js_bias,
    mean_test,
    moment_columns,
    range_test,
    window_tests,
)

N_REFERENCE = 10_000
WINDOW_SIZES = (30, 100, 300, 1_000, 10_000, 100_000)
N_REFERENCES = 24
MAX_SAMPLES_PER_CELL = 6_000_000
Sampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Shape:
    name: str
    sample: Sampler
    group: str  # "normal" | "other" | "heavy" | "categorical"
    integer: bool = False
    scale: bool = False  # in the scale x1.3 panel
    positive: bool = False  # continuous values bounded below by 0


def _zipf(k: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


CATEGORIES_REF = np.array([0.5, 0.3, 0.15, 0.05])
CATEGORIES_SHIFT = np.array([0.45, 0.3, 0.15, 0.1])
RARE = _zipf(300, 1.1)

SHAPES = (
    Shape("normal", lambda r, s: r.standard_normal(s), "normal", scale=True),
    Shape("lognormal", lambda r, s: r.lognormal(0.0, 1.0, s), "other", positive=True),
    Shape(
        "ages (rounded normal)",
        lambda r, s: np.maximum(np.round(r.normal(40.0, 12.0, s)), 0.0),
        "other",
        integer=True,
        scale=True,
    ),
    Shape("counts var<mean", lambda r, s: r.binomial(12, 0.4, s).astype(float), "other", True),
    Shape("poisson counts", lambda r, s: r.poisson(4.0, s).astype(float), "other", True),
    Shape(
        "counts var=4x mean",
        lambda r, s: r.negative_binomial(2, 0.25, s).astype(float),
        "other",
        integer=True,
    ),
    Shape(
        "zero-inflated counts",
        lambda r, s: np.where(r.random(s) < 0.6, 0.0, r.poisson(3.0, s)),
        "other",
        integer=True,
    ),
    Shape("student t3", lambda r, s: r.standard_t(3, s), "heavy", scale=True),
    Shape("student t5", lambda r, s: r.standard_t(5, s), "heavy", scale=True),
    Shape("exponential", lambda r, s: r.exponential(1.0, s), "other", positive=True),
    Shape("gamma k=2", lambda r, s: r.gamma(2.0, 1.0, s), "other", positive=True),
    Shape("weibull k=1.5", lambda r, s: r.weibull(1.5, s), "other", positive=True),
    Shape(
        "bimodal mixture",
        lambda r, s: np.where(r.random(s) < 0.3, r.normal(-2.0, 0.5, s), r.normal(1.0, 1.0, s)),
        "other",
        scale=True,
    ),
    Shape(
        "prices (ties at .99)",
        lambda r, s: np.round(np.exp(r.normal(3.0, 0.7, s))) + 0.99,
        "other",
        positive=True,
    ),
    Shape(
        "percentages (1 decimal)",
        lambda r, s: np.round(100.0 * r.beta(2.0, 5.0, s), 1),
        "other",
        positive=True,
    ),
    Shape("rare flag (3%)", lambda r, s: (r.random(s) < 0.03).astype(float), "other", True),
    Shape(
        "categorical 4 values",
        lambda r, s: r.choice(4, size=s, p=CATEGORIES_REF),
        "categorical",
    ),
    Shape(
        "categorical, 300 values (Zipf)",
        lambda r, s: r.choice(300, size=s, p=RARE),
        "categorical",
    ),
)


def repetitions(n: int) -> int:
    """Windows per cell: 20,000 for small n (a 1% rate +- 0.14%), 100 at n = 100,000."""
    return int(min(20_000, max(100, MAX_SAMPLES_PER_CELL // n)))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


# -- the vectorised window path -------------------------------------------------------------------


def bin_numeric(x: np.ndarray, edges: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Counts per row in the layout [under, b0 .. bK-1, over] (numpy.histogram bins)."""
    k = len(edges) - 1
    idx = np.searchsorted(edges, x, side="right")  # 0 under, 1..K bins, K+1 over (or x == eK)
    idx[x == edges[-1]] = k
    rows = np.repeat(np.arange(x.shape[0]), x.shape[1])
    flat = (rows * (k + 2) + idx.ravel())[valid.ravel()]
    return np.bincount(flat, minlength=x.shape[0] * (k + 2)).reshape(x.shape[0], k + 2)


def bin_codes(codes: np.ndarray, code_to_bin: np.ndarray, n_bins: int) -> np.ndarray:
    rows = np.repeat(np.arange(codes.shape[0]), codes.shape[1])
    flat = rows * n_bins + code_to_bin[codes.ravel()]
    return np.bincount(flat, minlength=codes.shape[0] * n_bins).reshape(codes.shape[0], n_bins)


def row_moments(t: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(n, mean, M2, M3, M4)`` of each row's values where ``ok`` (two passes)."""
    n = ok.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, t, 0.0).sum(axis=1) / n
        d = np.where(ok, t - mean[:, None], 0.0)
        d2 = d * d
    return n, mean, d2.sum(axis=1), (d2 * d).sum(axis=1), (d2 * d2).sum(axis=1)


def histogram_evidence(
    counts: np.ndarray, ref: np.ndarray, cells: np.ndarray, ordered: bool = False
) -> tuple[np.ndarray, ...]:
    """``(statistic, p, js_corrected, dof)`` of each window, as ``compare.drift_record``."""
    n = counts.sum(axis=1).astype(np.float64)
    n_ref = float(ref.sum())
    stat, p, dof = histogram_p_values(counts, ref, float(n[0]), cells, ordered)  # one n per cell
    js = np.asarray(js_divergence(counts, np.broadcast_to(ref, counts.shape)), dtype=np.float64)
    corrected = np.maximum(js - js_bias(n, n_ref, ((counts + ref) > 0).sum(axis=1)), 0.0)
    stat = np.where(dof >= 1, stat, 0.0)
    return stat, np.where(n > 0, p, np.nan), np.where(n > 0, corrected, np.nan), dof


def judge(fp: FeatureProfile, window: np.ndarray, policy: FeaturePolicy) -> np.ndarray:
    """Severities of the windows (rows) of one feature: the record path, vectorised."""
    spec = fp.bins
    if isinstance(spec, CategoricalBins):
        code_to_bin = _code_to_bin(spec, int(window.max()) + 1)
        counts = bin_codes(window.astype(np.int64), code_to_bin, spec.n_bins)
        valid = None
    else:
        assert isinstance(spec, NumericBins)
        valid = np.isfinite(window)
        counts = bin_numeric(window, spec.edges, valid)
    ref_counts = np.asarray(fp.histogram.counts)
    numeric = isinstance(spec, NumericBins)
    stat, p, effect, dof = histogram_evidence(
        counts, ref_counts, spec.test_cells(ref_counts), numeric
    )
    n = counts.sum(axis=1)
    p = np.where(dense_enough(n, dof, policy.min_expected), p, np.nan)
    t_pair = dev_pair = None
    mle = fp.mle
    if isinstance(mle, MomentMLE) and valid is not None:
        ok = valid & mle._valid(np.where(valid, window, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = mle.transform(np.where(ok, window, 1.0))
        t_pair = (row_moments(t, ok), moment_columns(mle.t))
        if mle.dev.n:
            dev_pair = (row_moments(np.abs(t - mle.center), ok), moment_columns(mle.dev))
    beyond = range_test(counts, ref_counts) if numeric else None
    tests: list[DriftTest] = window_tests(fp.family, (stat, p, effect), t_pair, dev_pair, beyond)
    return decide(policy, Evidence(n, tests))


def _code_to_bin(spec: CategoricalBins, n_codes: int) -> np.ndarray:
    """Bin index of each category code ``i`` (label ``str(i)``), as ``CategoricalBins.count``."""
    where = {v: i for i, v in enumerate(spec.vocabulary)}
    other = set(spec.other_values)
    out = np.empty(max(n_codes, 1), dtype=np.int64)
    for code in range(out.size):
        label = str(code)
        if label in where:
            out[code] = where[label]
        elif label in other or not spec.track_unseen:
            out[code] = spec.n_bins - 2
        else:
            out[code] = spec.n_bins - 1
    return out


def reference_profile(shape: Shape, ref: np.ndarray) -> FeatureProfile:
    values = ref.astype(str) if shape.group == "categorical" else ref
    return ReferenceProfile.build({"v": values}).features["v"]


# -- scenarios ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    mean: float
    sd: float


def population(shape: Shape, rng: np.random.Generator) -> Population:
    x = shape.sample(rng, 2_000_000).astype(np.float64)
    return Population(float(x.mean()), float(x.std()))


def drifted(
    shape: Shape, pop: Population, kind: str, amount: float
) -> Callable[[np.random.Generator, int], np.ndarray]:
    """A sampler for the drifted windows: ``shift`` by ``amount`` sds or ``scale`` by ``amount``."""

    def sample(rng: np.random.Generator, size: int) -> np.ndarray:
        x = shape.sample(rng, size).astype(np.float64)
        if kind == "relative":
            return x * amount
        if kind == "shift":
            s = amount * pop.sd
            if shape.integer:
                whole = math.floor(s)
                return x + whole + (rng.random(size) < s - whole)
            return x + s
        y = pop.mean + amount * (x - pop.mean)
        return np.round(y) if shape.integer else y

    return sample


def cell(
    shape: Shape,
    sampler: Sampler,
    n: int,
    reps: int,
    policy: Policy,
    rng: np.random.Generator,
    profiles: list[FeatureProfile],
) -> dict:
    fp_policy = policy.default
    severities = []
    per_ref = math.ceil(reps / len(profiles))
    chunk = max(1, min(per_ref, 1_000_000 // n))
    for fp in profiles:
        done = 0
        while done < per_ref:
            m = min(chunk, per_ref - done)
            window = sampler(rng, m * n).reshape(m, n)
            severities.append(judge(fp, window, fp_policy))
            done += m
    return _rate(np.concatenate(severities)[:reps])


def simulate(
    policy: Policy | None = None,
    sizes: tuple[int, ...] = WINDOW_SIZES,
    rep_scale: float = 1.0,
    seed: int = 20261201,
    shapes: tuple[Shape, ...] = SHAPES,
    n_references: int = N_REFERENCES,
    progress: Callable[[str], None] | None = None,
) -> dict[tuple[str, str, int], dict]:
    """Alert rates per (shape, scenario, n); scenario in no drift / shift / scale / irrelevant."""
    policy = policy or Policy()
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, str, int], dict] = {}
    for shape in shapes:
        t0 = time.perf_counter()
        profiles = [
            reference_profile(shape, shape.sample(rng, N_REFERENCE)) for _ in range(n_references)
        ]
        plan: list[tuple[str, Sampler, int]] = [("no drift", shape.sample, n) for n in sizes]
        if shape.group == "categorical":
            if shape.name.startswith("categorical 4"):

                def shifted(r: np.random.Generator, s: int) -> np.ndarray:
                    return r.choice(4, size=s, p=CATEGORIES_SHIFT)

                plan.append(("shift", shifted, 300))
        else:
            pop = population(shape, rng)
            plan.append(("shift", drifted(shape, pop, "shift", 0.25), 300))
            if shape.scale:
                plan.append(("scale", drifted(shape, pop, "scale", 1.3), 300))
            if 100_000 in sizes:
                plan.append(("irrelevant", drifted(shape, pop, "shift", 0.02), 100_000))
                if shape.positive:
                    plan.append(("relative", drifted(shape, pop, "relative", 1.02), 100_000))
        for scenario, sampler, n in plan:
            if scenario == "no drift" and n not in sizes:
                continue
            reps = max(50, int(repetitions(n) * rep_scale))
            out[(shape.name, scenario, n)] = cell(shape, sampler, n, reps, policy, rng, profiles)
        if progress:
            windows = sum(v["windows"] for (s, _, _), v in out.items() if s == shape.name)
            progress(f"{shape.name}: {windows:,} windows in {time.perf_counter() - t0:.1f} s")
    return out


# -- cross-check and report -----------------------------------------------------------------------


def cross_check(n_windows: int = 6, seed: int = 7) -> tuple[int, int, float]:
    """``compare()`` + ``Policy.assess`` against :func:`judge`, window by window, on every shape.

    Returns ``(agreeing severities, windows, largest p-value difference)``."""
    from divtransforms.compare import compare

    policy = Policy()
    rng = np.random.default_rng(seed)
    agree = total = 0
    worst = 0.0
    for shape in SHAPES:
        ref = shape.sample(rng, N_REFERENCE)
        categorical = shape.group == "categorical"
        profile = ReferenceProfile.build({"v": ref.astype(str) if categorical else ref})
        fp = profile.features["v"]
        for i in range(n_windows):
            n = (30, 300, 3000)[i % 3]
            x = shape.sample(rng, n)
            if i % 2 and not categorical:
                x = x + 0.5 * float(np.std(ref))
            rec = compare(profile, {"v": x.astype(str) if categorical else x}).to_pylist()[0]
            vec = judge(fp, x[None, :].astype(np.float64), policy.default)[0]
            agree += int(rec["severity"] == vec)
            total += 1
            # The p-values of the record against the vectorised ones (same functions, same data).
            for t in rec["tests"]:
                if t["kind"] == "range":
                    valid = np.isfinite(x)[None, :]
                    counts = bin_numeric(x[None, :].astype(np.float64), fp.bins.edges, valid)
                    _, p, _ = range_test(counts, np.asarray(fp.histogram.counts))
                    worst = max(worst, abs(float(p[0]) - t["p_value"]))
                    continue
                if t["kind"] in ("histogram", "quality"):
                    continue
                mle = fp.mle
                assert isinstance(mle, MomentMLE)
                ok = np.isfinite(x) & mle._valid(x)
                tt = mle.transform(x[ok])
                vals = tt if t["kind"] == "location" else np.abs(tt - mle.center)
                pair = (row_moments(vals[None, :], np.ones((1, vals.size), bool)), None)
                ref_m = mle.t if t["kind"] == "location" else mle.dev
                _, p, _ = mean_test(pair[0], moment_columns(ref_m))
                if math.isfinite(t["p_value"]) or math.isfinite(float(p[0])):
                    worst = max(worst, abs(float(p[0]) - t["p_value"]))
    return agree, total, worst


TARGETS_SHIFT = {"normal": 0.95, "other": 0.90, "heavy": 0.80, "categorical": 0.65}


def check_targets(results: dict[tuple[str, str, int], dict]) -> tuple[list[str], list[str]]:
    """The issue's targets: ``(misses, notes)``; no misses when all are met.

    A simulated rate is an estimate: a false-alarm rate misses the 1% target when its whole 95%
    interval is above 1% (a point estimate above 1% inside the noise is a note); power targets
    are judged on the point estimate. The irrelevant drift (no alert at n = 100,000) is a 0.02 sd
    translation; for values bounded at 0 and counts, where adding 0.02 sd is not a translation
    (see ``BOUNDED``), it is x1.02 instead, and the additive case is a note. The 3% flag has no
    power target: a 0.25 sd shift moves it
    from 3% to 7.3%, which even the exact binomial test at this level finds in only ~83% of
    windows of 300.
    """
    groups = {s.name: s.group for s in SHAPES}
    shape_of = {s.name: s for s in SHAPES}
    misses, notes = [], []
    for (name, scenario, n), r in sorted(results.items()):
        pct = f"{100 * r['rate']:.2f}% [{100 * r['low']:.2f}, {100 * r['high']:.2f}]"
        if scenario == "no drift" and r["low"] > 0.01:
            misses.append(f"false alarms, {name}, n={n:,}: {pct} > 1%")
        elif scenario == "no drift" and r["rate"] > 0.01:
            notes.append(f"false alarms, {name}, n={n:,}: {pct}: above 1% within the noise")
        elif scenario == "shift" and n == 300:
            target = TARGETS_SHIFT[groups[name]]
            if name.startswith("rare flag"):
                notes.append(f"shift 0.25 sd, {name}, n=300: {pct} (no target, see above)")
            elif r["rate"] < target:
                misses.append(f"shift 0.25 sd, {name}, n=300: {pct} < {100 * target:.0f}%")
        elif scenario == "scale" and groups[name] == "normal" and r["rate"] < 0.90:
            misses.append(f"scale x1.3, {name}, n=300: {pct} < 90%")
        elif scenario in ("irrelevant", "relative") and r["alerts"] > 0:
            what = "0.02 sd shift" if scenario == "irrelevant" else "x1.02"
            line = f"{what} alerted, {name}, n=100,000: {r['alerts']} of {r['windows']} windows"
            if scenario == "irrelevant" and (shape_of[name].positive or shape_of[name].integer):
                notes.append(f"{line} ({BOUNDED})")
            else:
                misses.append(line)
    return misses, notes


BOUNDED = (
    "not a translation: on values bounded at 0 an added 0.02 sd empties two thirds of the lowest "
    "quantile bin, and counts move by whole units; the histogram judges it as large as a "
    "0.1-0.16 sd normal shift. The small relative drift of such features is x1.02"
)


def format_table(
    results: dict[tuple[str, str, int], dict], sizes: tuple[int, ...] = WINDOW_SIZES
) -> str:
    def fmt(r: dict | None) -> str:
        if r is None:
            return ""
        if r["insufficient"] == 1.0:
            return "insufficient"
        return f"{100 * r['rate']:.2f} ({100 * r['low']:.2f}-{100 * r['high']:.2f})"

    lines = [
        "No drift: % of windows that alert (95% Wilson interval)",
        "| shape | family | " + " | ".join(f"n={n:,}" for n in sizes) + " |",
        "|---" * (len(sizes) + 2) + "|",
    ]
    families = {name: fam for (name, _, _), fam in _FAMILIES.items()}
    for shape in SHAPES:
        cells = [fmt(results.get((shape.name, "no drift", n))) for n in sizes]
        if any(cells):
            fam = families.get(shape.name, "")
            lines.append(f"| {shape.name} | {fam} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Drift: % of windows that alert",
        "| shape | shift 0.25 sd, n=300 | scale x1.3, n=300 | +0.02 sd, n=100,000 "
        "| x1.02, n=100,000 |",
        "|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        row = [
            fmt(results.get((shape.name, sc, n)))
            for sc, n in (
                ("shift", 300),
                ("scale", 300),
                ("irrelevant", 100_000),
                ("relative", 100_000),
            )
        ]
        if any(row):
            lines.append(f"| {shape.name} | " + " | ".join(row) + " |")
    reps = " / ".join(f"{repetitions(n):,}" for n in sizes)
    lines.append("")
    lines.append(
        f"windows per cell (n = {', '.join(f'{n:,}' for n in sizes)}): {reps}; "
        f"{N_REFERENCES} reference draws of {N_REFERENCE:,} values per shape."
    )
    return "\n".join(lines)


_FAMILIES: dict[tuple[str, str, int], str] = {}


def inferred_families(seed: int = 1) -> dict[str, str]:
    """The family a user's reference of each shape gets (most common over 8 draws)."""
    rng = np.random.default_rng(seed)
    out = {}
    for shape in SHAPES:
        fams = [
            str(reference_profile(shape, shape.sample(rng, N_REFERENCE)).family) for _ in range(8)
        ]
        values, counts = np.unique(fams, return_counts=True)
        out[shape.name] = ", ".join(f"{v} {c}/8" for v, c in zip(values, counts, strict=True))
        _FAMILIES[(shape.name, "", 0)] = out[shape.name]
    return out


# -- small windows (issue 21): gross drift at n = 10 ... 100, tiny windows of sparse features -----

SMALL_SIZES = (10, 30, 100)
GROSS_TARGET = 0.99
SPARSE_SIZES = (1, 2, 3, 4, 5)
SPARSE_MISSING = (0.1, 0.3, 0.5, 0.8)


def _beyond_range(r: np.random.Generator, s: int) -> np.ndarray:
    """Values beyond a N(0, 1) reference's observed range: |x| uniform on [5, 8] sd, either side
    (a reference of 10,000 reaches 5 sd with a chance of 0.3%)."""
    return np.where(r.random(s) < 0.5, -1.0, 1.0) * r.uniform(5.0, 8.0, s)


# (scenario, sampler, target at n = 10 or None): windows judged against a N(0, 1) reference.
GROSS: tuple[tuple[str, Sampler, float | None], ...] = (
    ("shift 3 sd", lambda r, s: r.normal(3.0, 1.0, s), None),
    ("shift 20 sd", lambda r, s: r.normal(20.0, 1.0, s), None),
    ("shift 1000 sd", lambda r, s: r.normal(1000.0, 1.0, s), None),
    ("all beyond the reference's range", _beyond_range, GROSS_TARGET),
    ("unit change x1000", lambda r, s: 1000.0 * r.standard_normal(s), None),
    ("wrong column (whole numbers 0..99)", lambda r, s: r.integers(0, 100, s).astype(float), None),
    ("lognormal(3, 2)", lambda r, s: r.lognormal(3.0, 2.0, s), None),
)
CONSTANT_CHANGE = "constant 2015 -> 2016"


def full_severity(fp: FeatureProfile, window: np.ndarray, policy: FeaturePolicy) -> np.ndarray:
    """Severities of windows (rows, NaN = missing) with the record's quality verdict too: the
    distribution's severity (:func:`judge`, rows grouped by their number of values, since a
    comparison table is fixed by n) and the missing-rate tests (``quality.quality_tests``,
    ``policy.quality_verdict``), the worse of the two, as ``Policy.explain``."""
    from divtransforms.policy import quality_verdict
    from divtransforms.quality import quality_tests
    from divtransforms.records import SEVERITY_RANK

    n = np.isfinite(window).sum(axis=1)
    dist = np.empty(window.shape[0], dtype=object)
    dist[n == 0] = "insufficient"  # nothing to test (compare: NaN divergences and tests)
    for size in np.unique(n[n > 0]):
        rows = n == size
        dist[rows] = judge(fp, window[rows], policy)
    missing = window.shape[1] - n
    ref = fp.histogram
    tests = quality_tests(
        {"n": n, "n_missing": missing, "n_invalid": np.zeros_like(n)},
        {"n": ref.n, "n_missing": ref.n_missing, "n_invalid": ref.n_invalid},
        unseen=False,
    )
    fpol = Policy(default=policy)
    out = np.empty(window.shape[0], dtype=object)
    for i in range(window.shape[0]):
        record = {
            "feature": "v",
            "kind": fp.kind,
            "n": int(n[i]),
            "n_missing": int(missing[i]),
            "n_invalid": 0,
            "n_reference": ref.n,
            "tests": [
                {"name": t.name, "kind": t.kind, "p_value": t.p_value[i], "effect": t.effect[i]}
                for t in tests
            ],
        }
        quality = quality_verdict(record, fpol.default)[0]
        out[i] = max(dist[i], quality, key=SEVERITY_RANK.__getitem__)
    return out


def _rate(sev: np.ndarray) -> dict:
    """Alerting windows among ``sev`` (warning or critical), with a Wilson interval."""
    alerts = np.isin(sev, ("warning", "critical"))
    k = int(alerts.sum())
    lo, hi = wilson(k, int(sev.size))
    return {
        "windows": int(sev.size),
        "alerts": k,
        "rate": k / sev.size,
        "low": lo,
        "high": hi,
        "insufficient": float((sev == "insufficient").mean()),
    }


def simulate_small(
    policy: Policy | None = None,
    windows: int = 2_000,
    n_references: int = 8,
    seed: int = 20261207,
) -> dict[tuple[str, str, int], dict]:
    """Alert rates of the default policy in small windows (issue 21), keyed like
    :func:`simulate`: ``("normal", gross scenario, n)`` for n = 10, 30, 100 against N(0, 1)
    references; ``("constant 2015", CONSTANT_CHANGE, n)``; and ``("normal, p% missing",
    "no drift", n)`` for windows of n = 1 ... 5 rows of a feature missing in p% of the
    reference's rows (and, at random, of the window's), judged with the quality tests."""
    fpol = (policy or Policy()).default
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, str, int], dict] = {}
    per_ref = math.ceil(windows / n_references)
    normals = [
        reference_profile(SHAPES[0], rng.standard_normal(N_REFERENCE)) for _ in range(n_references)
    ]
    constant = reference_profile(SHAPES[0], np.full(N_REFERENCE, 2015.0))
    for scenario, sampler, _ in GROSS:
        for n in SMALL_SIZES:
            sev = [judge(fp, sampler(rng, per_ref * n).reshape(per_ref, n), fpol) for fp in normals]
            out[("normal", scenario, n)] = _rate(np.concatenate(sev)[:windows])
    for n in SMALL_SIZES:
        sev = judge(constant, np.full((windows, n), 2016.0), fpol)
        out[("constant 2015", CONSTANT_CHANGE, n)] = _rate(sev)
    for rate in SPARSE_MISSING:
        profiles = []
        for _ in range(n_references):
            x = rng.standard_normal(N_REFERENCE)
            x[rng.random(N_REFERENCE) < rate] = np.nan
            profiles.append(ReferenceProfile.build({"v": x}).features["v"])
        for n in SPARSE_SIZES:
            sev = []
            for fp in profiles:
                x = rng.standard_normal((per_ref, n))
                x[rng.random((per_ref, n)) < rate] = np.nan
                sev.append(full_severity(fp, x, fpol))
            out[(f"normal, {100 * rate:.0f}% missing", "no drift", n)] = _rate(
                np.concatenate(sev)[:windows]
            )
    return out


def cross_check_small(n_windows: int = 4, seed: int = 11) -> tuple[int, int]:
    """``compare()`` + the default policy against :func:`judge` / :func:`full_severity` on small
    windows: each gross-drift scenario at n = 10 and 30, a constant that changes, and tiny
    windows of a 50%-missing feature. Returns ``(agreeing severities, windows)``."""
    from divtransforms.compare import compare

    fpol = Policy().default
    rng = np.random.default_rng(seed)
    normal = ReferenceProfile.build({"v": rng.standard_normal(N_REFERENCE)})
    constant = ReferenceProfile.build({"v": np.full(N_REFERENCE, 2015.0)})
    x = rng.standard_normal(N_REFERENCE)
    x[rng.random(N_REFERENCE) < 0.5] = np.nan
    sparse = ReferenceProfile.build({"v": x})
    cases: list[tuple[ReferenceProfile, np.ndarray, bool]] = []
    for _, sampler, _ in GROSS:
        cases += [(normal, sampler(rng, n), False) for n in (10, 30)]
    cases += [(constant, np.full(n, 2016.0), False) for n in (10, 30)]
    for _ in range(n_windows):
        for n in SPARSE_SIZES:
            w = rng.standard_normal(n)
            w[rng.random(n) < 0.5] = np.nan
            cases.append((sparse, w, True))
    agree = 0
    for profile, w, quality in cases:
        rec = compare(profile, {"v": w}).to_pylist()[0]
        fp = profile.features["v"]
        vec = (full_severity if quality else judge)(fp, w[None, :], fpol)[0]
        agree += int(rec["severity"] == vec)
    return agree, len(cases)


def check_small_targets(results: dict[tuple[str, str, int], dict]) -> list[str]:
    """Issue 21's targets, missed ones: gross drift alerts in >= 99% of windows of 30 and 100
    values (and of 10 values for values all beyond the reference's range and a constant that
    changes); tiny windows of sparse features without drift alert at most 1% (a miss when the
    whole 95% interval is above 1%, as :func:`check_targets`)."""
    at_ten = {name for name, _, target in GROSS if target is not None} | {CONSTANT_CHANGE}
    misses = []
    for (name, scenario, n), r in sorted(results.items()):
        pct = f"{100 * r['rate']:.2f}% [{100 * r['low']:.2f}, {100 * r['high']:.2f}]"
        if scenario == "no drift":
            if r["low"] > 0.01:
                misses.append(f"false alarms, {name}, n={n}: {pct} > 1%")
        elif (n >= 30 or scenario in at_ten) and r["rate"] < GROSS_TARGET:
            misses.append(f"{scenario}, {name}, n={n}: {pct} < {100 * GROSS_TARGET:.0f}%")
    return misses


def format_small(results: dict[tuple[str, str, int], dict]) -> str:
    def fmt(r: dict | None) -> str:
        if r is None:
            return ""
        return f"{100 * r['rate']:.2f} ({100 * r['low']:.2f}-{100 * r['high']:.2f})"

    lines = [
        "Gross drift in small windows: % of windows that alert (95% Wilson interval)",
        "| reference | what arrived | " + " | ".join(f"n={n}" for n in SMALL_SIZES) + " |",
        "|---" * (len(SMALL_SIZES) + 2) + "|",
    ]
    for name, scenario in dict.fromkeys((k[0], k[1]) for k in results if k[1] != "no drift"):
        cells = [fmt(results.get((name, scenario, n))) for n in SMALL_SIZES]
        lines.append(f"| {name} | {scenario} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Tiny windows of sparse features, no drift: % of windows that alert (insufficient %)",
        "| feature | " + " | ".join(f"n={n}" for n in SPARSE_SIZES) + " |",
        "|---" * (len(SPARSE_SIZES) + 1) + "|",
    ]
    for name in dict.fromkeys(k[0] for k in results if k[1] == "no drift"):
        cells = []
        for n in SPARSE_SIZES:
            r = results.get((name, "no drift", n))
            cells.append("" if r is None else f"{fmt(r)} ({100 * r['insufficient']:.0f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    t0 = time.perf_counter()
    policy = Policy()
    inferred_families()
    results = simulate(policy, progress=lambda line: print(line, flush=True))
    elapsed = time.perf_counter() - t0
    print()
    print("Default policy (divtransforms.policy.FeaturePolicy()), families inferred")
    print(format_table(results))
    print(f"simulated {sum(r['windows'] for r in results.values()):,} windows in {elapsed:.1f} s")
    agree, total, worst = cross_check()
    print(
        f"cross-check compare() + Policy.assess vs vectorised path: {agree}/{total} severities "
        f"agree, largest p-value difference {worst:.2g}"
    )
    misses, notes = check_targets(results)
    t1 = time.perf_counter()
    small = simulate_small(policy)
    print()
    print(format_small(small))
    print(
        f"simulated {sum(r['windows'] for r in small.values()):,} small windows in "
        f"{time.perf_counter() - t1:.1f} s"
    )
    misses += check_small_targets(small)
    agree_small, total_small = cross_check_small()
    print(f"cross-check on small windows: {agree_small}/{total_small} severities agree")
    if agree_small != total_small:
        misses.append(f"cross-check on small windows: only {agree_small}/{total_small} agree")
    for note in notes:
        print(f"note: {note}")
    if agree != total:
        misses.append(f"cross-check: only {agree}/{total} windows agree")
    if worst > 1e-9:
        misses.append(f"cross-check: p-values differ by {worst:.2g}")
    return report_targets(misses)


def report_targets(misses: list[str]) -> int:
    """Print each missed target (or that all were met); the exit status: 1 when any was missed."""
    for miss in misses:
        print(f"TARGET MISSED: {miss}")
    if not misses:
        print("all targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
