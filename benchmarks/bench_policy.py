"""How calm and how sharp is the default policy? Alert rates against window size, by simulation.

Setup (issue 4): a reference of 10,000 samples; current windows of n = 10 ... 100,000;
N(0, 1) against N(0, 1) and against mean shifts of 0.1, 0.25 and 0.5 sigma; a practically
irrelevant shift of 0.02 sigma (it should never alert, even at n = 100,000); categorical
[.5, .3, .15, .05] against the same and against [.45, .3, .15, .1].

Each cell simulates many windows (up to 40,000, fewer for large n) against several independent
reference draws, computes the record fields the policy reads (the same formulas as
``divtransforms.compare.drift_record``: 32 quantile bins + under/overflow, G statistic, plug-in JS
minus its no-drift bias, window and reference MLEs) as whole arrays, and asks the default
``Policy`` for the severities with the same vectorised code ``Policy.assess`` uses. A cross-check
runs ``drift_record`` + ``Policy.assess`` on a sample of windows and requires identical severities.

Run: ``python -m benchmarks.bench_policy`` (``make bench``). Prints a table; exit status 1 when a
target is missed.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from divtransforms.policy import (
    DriftTest,
    Evidence,
    FeaturePolicy,
    Policy,
    decide,
    histogram_test,
    normal_tests,
)
from divtransforms.significance import js_bias

N_REFERENCE = 10_000
WINDOW_SIZES = (10, 30, 100, 300, 1_000, 10_000, 100_000)
N_BINS = 32
N_REFERENCES = 8
CATEGORIES_REF = np.array([0.5, 0.3, 0.15, 0.05])
CATEGORIES_SHIFT = np.array([0.45, 0.3, 0.15, 0.1])
MAX_SAMPLES_PER_CELL = 12_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "numeric" | "categorical"
    shift: float = 0.0
    drifted: bool = False
    sizes: tuple[int, ...] = WINDOW_SIZES


SCENARIOS = (
    Scenario("N(0,1) no drift", "numeric"),
    Scenario("shift 0.1 sigma", "numeric", 0.1, True),
    Scenario("shift 0.25 sigma", "numeric", 0.25, True),
    Scenario("shift 0.5 sigma", "numeric", 0.5, True),
    Scenario("shift 0.02 sigma (irrelevant)", "numeric", 0.02, False, (1_000, 10_000, 100_000)),
    Scenario("categorical no drift", "categorical"),
    Scenario("categorical shift", "categorical", drifted=True),
)


def repetitions(n: int) -> int:
    """Windows per cell: 40,000 for small n (a 1% rate +- 0.05%), 200 at n = 100,000."""
    return int(min(40_000, max(200, MAX_SAMPLES_PER_CELL // n)))


def _js_plugin(counts: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Plug-in JS (bits) between each row of ``counts`` and ``ref`` (raw frequencies)."""
    p = counts / counts.sum(axis=1, keepdims=True)
    q = np.broadcast_to(ref / ref.sum(axis=-1, keepdims=True), p.shape)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.maximum(0.5 * (kl_p + kl_q), 0.0)


def _g_statistic(counts: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """G statistic and dof (K' - 1) of each row of ``counts`` against ``ref``."""
    ref = np.broadcast_to(ref, counts.shape).astype(np.float64)
    a = counts.astype(np.float64)
    n_a = a.sum(axis=1, keepdims=True)
    n_b = ref.sum(axis=1, keepdims=True)
    col = a + ref
    total = n_a + n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ga = np.where(a > 0, a * np.log(a * total / (n_a * col)), 0.0).sum(axis=1)
        gb = np.where(ref > 0, ref * np.log(ref * total / (n_b * col)), 0.0).sum(axis=1)
    dof = (col > 0).sum(axis=1) - 1
    return np.maximum(2.0 * (ga + gb), 0.0), dof


def histogram_evidence(counts: np.ndarray, ref_counts: np.ndarray, fp: FeaturePolicy) -> DriftTest:
    n = counts.sum(axis=1)
    n_ref = float(ref_counts.sum())
    g, dof = _g_statistic(counts, ref_counts)
    k_nonempty = ((counts + ref_counts) > 0).sum(axis=1)
    # js_bias is scalar: evaluate it once per distinct (n, K') and scatter back.
    keys, inverse = np.unique(np.stack([n, k_nonempty], axis=1), axis=0, return_inverse=True)
    bias = np.array([js_bias(float(a), n_ref, int(k)) for a, k in keys])[inverse.ravel()]
    js_corr = _js_plugin(counts, ref_counts) - bias
    return histogram_test(
        g,
        dof,
        n,
        np.full(n.shape, n_ref),
        counts,
        np.broadcast_to(ref_counts, counts.shape),
        np.maximum(js_corr, 0.0),
        fp.min_expected,
    )


def bin_numeric(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per row in the layout [under, b0 .. bK-1, over] (numpy.histogram bins)."""
    k = len(edges) - 1
    idx = np.searchsorted(edges, x, side="right")  # 0 under, 1..K bins, K+1 over (or x == eK)
    idx[x == edges[-1]] = k
    rows = np.repeat(np.arange(x.shape[0]), x.shape[1])
    flat = rows * (k + 2) + idx.ravel()
    return np.bincount(flat, minlength=x.shape[0] * (k + 2)).reshape(x.shape[0], k + 2)


def numeric_cell(
    rng: np.random.Generator, n: int, shift: float, reps: int, policy: Policy
) -> np.ndarray:
    fp = policy.default
    severities = []
    per_ref = math.ceil(reps / N_REFERENCES)
    chunk = max(1, min(per_ref, 2_000_000 // n))
    for _ in range(N_REFERENCES):
        ref = rng.standard_normal(N_REFERENCE)
        edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, N_BINS + 1)))
        ref_counts = bin_numeric(ref[None, :], edges)[0]
        mu_r, sigma_r = ref.mean(), ref.std()
        done = 0
        while done < per_ref:
            m = min(chunk, per_ref - done)
            x = rng.standard_normal((m, n)) + shift
            counts = bin_numeric(x, edges)
            tests = [histogram_evidence(counts, ref_counts, fp)]
            tests += normal_tests(
                x.mean(axis=1), x.std(axis=1), np.full(m, n), mu_r, sigma_r, N_REFERENCE
            )
            severities.append(decide(fp, Evidence(np.full(m, n), tests)))
            done += m
    return np.concatenate(severities)[:reps]


def categorical_cell(
    rng: np.random.Generator, n: int, probs: np.ndarray, reps: int, policy: Policy
) -> np.ndarray:
    fp = policy.default
    severities = []
    per_ref = math.ceil(reps / N_REFERENCES)
    for _ in range(N_REFERENCES):
        # Layout as CategoricalBins: the 4 values, __other__, __unseen__ (both empty here).
        ref_counts = np.concatenate([rng.multinomial(N_REFERENCE, CATEGORIES_REF), [0, 0]])
        counts = np.concatenate(
            [rng.multinomial(n, probs, size=per_ref), np.zeros((per_ref, 2), dtype=np.int64)],
            axis=1,
        )
        tests = [histogram_evidence(counts, ref_counts, fp)]
        severities.append(decide(fp, Evidence(np.full(per_ref, n), tests)))
    return np.concatenate(severities)[:reps]


def simulate(
    policy: Policy | None = None,
    sizes: tuple[int, ...] = WINDOW_SIZES,
    rep_scale: float = 1.0,
    seed: int = 20261125,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
) -> dict[tuple[str, int], dict]:
    """Alert rate (warning or critical) and insufficient rate per (scenario, n)."""
    policy = policy or Policy()
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, int], dict] = {}
    for sc in scenarios:
        for n in sc.sizes:
            if n not in sizes:
                continue
            reps = max(50, int(repetitions(n) * rep_scale))
            if sc.kind == "numeric":
                sev = numeric_cell(rng, n, sc.shift, reps, policy)
            else:
                probs = CATEGORIES_SHIFT if sc.drifted else CATEGORIES_REF
                sev = categorical_cell(rng, n, probs, reps, policy)
            alerts = np.isin(sev, ("warning", "critical"))
            out[(sc.name, n)] = {
                "windows": int(sev.size),
                "alerts": int(alerts.sum()),
                "rate": float(alerts.mean()),
                "critical": float((sev == "critical").mean()),
                "insufficient": float((sev == "insufficient").mean()),
            }
    return out


def cross_check(n_windows: int = 40, seed: int = 7) -> tuple[int, int]:
    """``drift_record`` + ``Policy.assess`` against this module's vectorised path, window by window.

    Returns (agreeing, total)."""
    from divtransforms.compare import drift_record
    from divtransforms.histogram import Histogram
    from divtransforms.mle import accumulator_for
    from divtransforms.profile import ReferenceProfile

    policy = Policy()
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(N_REFERENCE)
    profile = ReferenceProfile.build({"x": ref}, families={"x": "normal"}, n_bins=N_BINS)
    fprof = profile.features["x"]
    agree = 0
    for i in range(n_windows):
        n = (30, 100, 300, 1000)[i % 4]
        x = rng.standard_normal(n) + (0.25 if i % 2 else 0.0)
        hist = Histogram.empty(fprof.bins).add(x)
        acc = accumulator_for("normal").add(x)
        rec = drift_record(
            fprof,
            hist,
            acc,
            acc,
            window_start=None,
            window_end=None,
            pane=0,
            run_id="bench",
            reference_id=profile.reference_id,
            alpha=0.5,
            base=2.0,
        )
        edges = np.asarray(fprof.bins.edges)
        ref_counts = np.asarray(fprof.histogram.counts)
        counts = bin_numeric(x[None, :], edges)
        tests = [histogram_evidence(counts, ref_counts, policy.default)]
        ref_est = fprof.mle.estimate().params
        tests += normal_tests(
            [x.mean()], [x.std()], [n], ref_est["mu"], ref_est["sigma"], fprof.mle.n
        )
        vec = decide(policy.default, Evidence(np.array([n]), tests))[0]
        agree += int(policy.assess(rec) == vec)
    return agree, n_windows


def format_table(
    results: dict[tuple[str, int], dict], sizes: tuple[int, ...] = WINDOW_SIZES
) -> str:
    header = "| scenario | " + " | ".join(f"n={n:,}" for n in sizes) + " |"
    lines = [header, "|---" * (len(sizes) + 1) + "|"]
    for sc in SCENARIOS:
        cells = []
        for n in sizes:
            r = results.get((sc.name, n))
            if r is None:
                cells.append("")
            elif r["insufficient"] == 1.0:
                cells.append("insufficient")
            else:
                cells.append(f"{100 * r['rate']:.2f}%")
        lines.append(f"| {sc.name} | " + " | ".join(cells) + " |")
    reps = " / ".join(f"{repetitions(n):,}" for n in sizes)
    lines.append("")
    lines.append(
        f"windows per cell (n = {', '.join(f'{n:,}' for n in sizes)}): {reps}; "
        f"{N_REFERENCES} reference draws of {N_REFERENCE:,} samples each."
    )
    return "\n".join(lines)


def check_targets(results: dict[tuple[str, int], dict]) -> list[str]:
    """The issue's targets; returns the misses (empty when all met)."""
    misses = []
    for (name, n), r in results.items():
        if name in ("N(0,1) no drift", "categorical no drift") and r["rate"] > 0.01:
            misses.append(f"false alarms {name} n={n}: {100 * r['rate']:.2f}% > 1%")
    checks = [("shift 0.25 sigma", 300, 0.95), ("categorical shift", 300, 0.80)]
    for name, n, target in checks:
        r = results.get((name, n))
        if r is not None and r["rate"] < target:
            misses.append(f"{name} n={n}: {100 * r['rate']:.2f}% < {100 * target:.0f}%")
    r = results.get(("shift 0.02 sigma (irrelevant)", 100_000))
    if r is not None and r["alerts"] > 0:
        misses.append(f"irrelevant drift alerted in {r['alerts']} windows at n=100,000")
    return misses


def main() -> int:
    t0 = time.perf_counter()
    policy = Policy()
    results = simulate(policy)
    elapsed = time.perf_counter() - t0
    print("Default policy (divtransforms.policy.FeaturePolicy()): share of windows that alert")
    print(format_table(results))
    print(f"simulated {sum(r['windows'] for r in results.values()):,} windows in {elapsed:.1f} s")
    agree, total = cross_check()
    print(f"cross-check drift_record + Policy.assess vs vectorised path: {agree}/{total} agree")
    misses = check_targets(results)
    if agree != total:
        misses.append(f"cross-check: only {agree}/{total} windows agree")
    for miss in misses:
        print(f"TARGET MISSED: {miss}")
    if not misses:
        print("all targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
