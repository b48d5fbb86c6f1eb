"""Does the sequential detector (CUSUM over windows) keep its false-alarm run length, and how fast
does it find a small persistent drift?

The panel (issue 23), with the default settings (``FeaturePolicy.persistent_shift = 0.1`` sd,
``persistent_arl = 1,000`` windows):

* **in-control run length**: independent windows of the reference's own distribution, n = 30 to
  10,000; 200 streams per n, each against its own reference of 10,000 values profiled as a user
  would leave it (so the reference's own sampling error, which every window of a stream shares,
  is in the figures). A stream restarts its detectors after each false alarm; the average run
  length is windows / alarms. Target: at least 1,000 windows at every n (the location and
  histogram detectors together).
* **detection delay**: 20 windows without drift, then the mean moves by 0.05, 0.1 and 0.2 sd at
  n = 300 and by 0.1 sd at n = 100 and 3,000; the delay is the number of drifted windows up to and
  including the first alarm. Targets: median at most 6 windows for 0.1 sd, at most 3 for 0.2 sd
  (n = 300).

Each window's scores come from the very functions records use: ``significance.mean_test`` and
the histogram test (``comparison_table`` + ``power_divergence``) on the window's moments and
counts, then ``sequential.location_score`` / ``histogram_score``, and the detectors step with
``sequential.cusum_step`` and the thresholds of ``CusumSettings``. Windows of up to
``REAL_SAMPLES`` values in a cell are drawn value by value (normal, and two skewed/heavy shapes at
n = 30 and 100); larger cells draw a normal window's sufficient statistics exactly (mean, sum of
squares) and its histogram as a multinomial on the true bin probabilities.
``tests/core/test_sequential.py`` runs a reduced panel and checks the library's records against
this path.

Run: ``python -m benchmarks.bench_cusum`` (or ``python -m benchmarks cusum``); exit status 1 when
a target is missed.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from benchmarks.bench_policy import SHAPES, bin_numeric, row_moments
from divtransforms.mle import MomentMLE
from divtransforms.profile import FeatureProfile, ReferenceProfile
from divtransforms.sequential import (
    HISTOGRAM_ARL,
    LOCATION_ARL,
    CusumSettings,
    cusum_step,
    detector_threshold,
    histogram_score,
    histogram_shift,
    location_score,
    standard_error,
)
from divtransforms.significance import comparison_table, mean_test, moment_columns, power_divergence

N_REFERENCE = 10_000
ARL_SIZES = (30, 100, 300, 1_000, 3_000, 10_000)
STREAMS = 200
WINDOWS = 3_000  # per stream (restarting after each alarm)
REAL_SAMPLES = 200_000_000  # values drawn one by one per cell at most
BURN_IN = 20
MAX_DELAY = 300
DELAY_CASES = ((300, 0.05), (300, 0.1), (300, 0.2), (100, 0.1), (3_000, 0.1))
TARGET_ARL = 1_000.0
TARGET_MEDIAN = {(300, 0.1): 6.0, (300, 0.2): 3.0}
Sampler = Callable[[np.random.Generator, int], np.ndarray]
_SHAPES = {s.name: s for s in SHAPES}


@dataclass(frozen=True)
class Stream:
    """A stream's reference profile and how its windows are drawn."""

    fp: FeatureProfile
    sample: Sampler
    normal: bool


def reference(rng: np.random.Generator, shape: str = "normal") -> Stream:
    s = _SHAPES[shape]
    fp = ReferenceProfile.build({"v": s.sample(rng, N_REFERENCE)}).features["v"]
    return Stream(fp, s.sample, shape == "normal")


def _bin_probabilities(fp: FeatureProfile, shift: float) -> np.ndarray:
    """True probabilities of a N(shift, 1) value in the layout of ``bench_policy.bin_numeric``."""
    edges = np.asarray(fp.bins.edges, dtype=np.float64)  # type: ignore[union-attr]
    cdf = special.ndtr(edges - shift)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def window_scores(
    stream: Stream, n: int, m: int, shift: float, rng: np.random.Generator, real: bool
) -> tuple[np.ndarray, ...]:
    """``(z, scale, shared, histogram z, histogram se, histogram shared, dof)`` of ``m``
    windows of ``n`` values whose mean moved by ``shift`` (sd of the standard normal, or of the
    shape's population)."""
    fp = stream.fp
    mle = fp.mle
    assert isinstance(mle, MomentMLE)
    ref_counts = np.asarray(fp.histogram.counts)
    if real or not stream.normal:
        x = stream.sample(rng, m * n).reshape(m, n).astype(np.float64)
        if shift:
            x = x + shift * float(np.sqrt(mle.t.m2 / mle.t.n))
        valid = np.isfinite(x)
        counts = bin_numeric(x, fp.bins.edges, valid)  # type: ignore[union-attr]
        ok = valid & mle._valid(np.where(valid, x, 0.0))
        t = mle.transform(np.where(ok, x, 1.0))
        moments = row_moments(t, ok)
    else:
        mean = rng.normal(shift, 1.0 / math.sqrt(n), m)
        m2 = rng.chisquare(n - 1, m)
        moments = (np.full(m, float(n)), mean, m2, np.zeros(m), 3.0 * m2 * m2 / n)
        counts = rng.multinomial(n, _bin_probabilities(fp, shift), size=m)
    u, p, _ = mean_test(moments, moment_columns(mle.t))
    z, scale = location_score(u, p, moments[0], mle.t.n)
    table, table_ref = comparison_table(
        counts, ref_counts, float(n), fp.bins.test_cells(ref_counts)
    )
    stat, dof = power_divergence(table, table_ref)
    hp = np.where(dof >= 1, special.chdtrc(np.maximum(dof, 1), stat), np.nan)
    hs = histogram_score(hp)
    hse = standard_error(n, fp.histogram.n)
    return z, scale, scale**2 / mle.t.n, hs, hse, 1.0 / (fp.histogram.n * hse**2), dof


class Detectors:
    """The location (two-sided) and histogram detectors of many streams at once."""

    def __init__(self, streams: int, settings: CusumSettings) -> None:
        self.up = np.zeros(streams)
        self.down = np.zeros(streams)
        self.hist = np.zeros(streams)
        self.settings = settings

    def step(self, z, scale, shared, hz, hse, hshared, dof) -> np.ndarray:
        """One window of every stream; True where a detector crossed (it then restarts)."""
        s = self.settings
        mu = s.shift * scale
        big_h = mu * _thresholds(mu / 2.0, LOCATION_ARL * s.arl, np.sqrt(shared), True)
        self.up = cusum_step(self.up, z, mu, big_h)
        self.down = cusum_step(self.down, -z, mu, big_h)
        hmu = histogram_shift(s.shift, hse, dof)
        hmu = np.where(np.isfinite(hmu) & (hmu > 0), hmu, np.nan)
        hh = hmu * _thresholds(hmu / 2.0, HISTOGRAM_ARL * s.arl, hshared, False)
        self.hist = cusum_step(self.hist, hz, hmu, hh)
        alarm = (
            (self.up > big_h) | (self.down > big_h) | (self.hist > np.nan_to_num(hh, nan=np.inf))
        )
        self.up[alarm] = self.down[alarm] = self.hist[alarm] = 0.0
        return alarm


def _thresholds(k: np.ndarray, arl: float, offset_sd: np.ndarray, two_sided: bool) -> np.ndarray:
    """The library's ``detector_threshold`` of every stream (cached per distinct value)."""
    k, off = np.broadcast_arrays(
        np.asarray(k, dtype=np.float64), np.asarray(offset_sd, dtype=np.float64)
    )
    return np.array(
        [
            detector_threshold(a, arl, b, two_sided)
            if np.isfinite(a) and np.isfinite(b)
            else np.nan
            for a, b in zip(k.tolist(), off.tolist(), strict=True)
        ]
    )


def in_control(
    n: int,
    streams: int = STREAMS,
    windows: int = WINDOWS,
    shape: str = "normal",
    seed: int = 1,
    settings: CusumSettings | None = None,
) -> dict:
    """Alarms of ``streams`` streams of ``windows`` windows without drift: ARL = windows / alarms,
    with a 95% interval (Poisson on the alarms)."""
    rng = np.random.default_rng(seed)
    refs = [reference(rng, shape) for _ in range(streams)]
    real = streams * windows * n <= REAL_SAMPLES or shape != "normal"
    dets = Detectors(streams, settings or CusumSettings())
    cols = _scores_of_streams(refs, n, windows, 0.0, rng, real)
    per_stream = np.zeros(streams, dtype=np.int64)
    for t in range(windows):
        per_stream += dets.step(*(c[:, t] for c in cols))
    alarms = int(per_stream.sum())
    total = streams * windows
    lo = total / max(special.gammaincinv(alarms + 1, 0.975), 1e-9)
    hi = total / special.gammaincinv(alarms, 0.025) if alarms else math.inf
    return {
        "n": n,
        "shape": shape,
        "windows": total,
        "alarms": alarms,
        "arl": total / alarms if alarms else math.inf,
        "low": lo,
        "high": hi,
        "real": real,
    }


def _scores_of_streams(refs, n, windows, shift, rng, real) -> tuple[np.ndarray, ...]:
    """Scores of ``windows`` windows of each stream: arrays (streams, windows)."""
    parts = [window_scores(r, n, windows, shift, rng, real) for r in refs]
    return tuple(
        np.stack([np.broadcast_to(np.asarray(p[i], dtype=np.float64), (windows,)) for p in parts])
        for i in range(7)
    )


def delays(
    n: int, shift: float, streams: int = 400, seed: int = 2, settings: CusumSettings | None = None
) -> dict:
    """Delay (drifted windows up to the first alarm) of a shift that starts after ``BURN_IN``
    windows; streams that alarmed during the burn-in are counted and left out."""
    rng = np.random.default_rng(seed)
    refs = [reference(rng) for _ in range(streams)]
    real = streams * (BURN_IN + MAX_DELAY) * n <= REAL_SAMPLES
    dets = Detectors(streams, settings or CusumSettings())
    before = _scores_of_streams(refs, n, BURN_IN, 0.0, rng, real)
    after = _scores_of_streams(refs, n, MAX_DELAY, shift, rng, real)
    early = np.zeros(streams, dtype=bool)
    for t in range(BURN_IN):
        early |= dets.step(*(c[:, t] for c in before))
    delay = np.full(streams, np.inf)
    for t in range(MAX_DELAY):
        alarm = dets.step(*(c[:, t] for c in after))
        delay[np.isinf(delay) & alarm] = t + 1
        if np.all(np.isfinite(delay[~early])):
            break
    d = delay[~early]
    return {
        "n": n,
        "shift": shift,
        "streams": int(d.size),
        "early": int(early.sum()),
        "median": float(np.median(d)),
        "mean": float(np.mean(d[np.isfinite(d)])) if np.isfinite(d).any() else math.inf,
        "p90": float(np.quantile(d, 0.9)),
        "undetected": int(np.isinf(d).sum()),
    }


def check_targets(arl: list[dict], delay: list[dict]) -> list[str]:
    missed = [
        f"ARL0 at n = {r['n']} ({r['shape']}): {r['arl']:.0f} < {TARGET_ARL:.0f}"
        for r in arl
        if r["arl"] < TARGET_ARL
    ]
    for r in delay:
        target = TARGET_MEDIAN.get((r["n"], r["shift"]))
        if target is not None and r["median"] > target:
            missed.append(
                f"median delay {r['shift']} sd at n = {r['n']}: {r['median']:.1f} > {target:.0f}"
            )
    return missed


def format_tables(arl: list[dict], delay: list[dict]) -> str:
    lines = [
        "| n | shape | windows | false alarms | ARL0 (95% interval) | values |",
        "|---|---|---|---|---|---|",
    ]
    for r in arl:
        lines.append(
            f"| {r['n']:,} | {r['shape']} | {r['windows']:,} | {r['alarms']} | "
            f"{r['arl']:,.0f} ({r['low']:,.0f} - {r['high']:,.0f}) | "
            f"{'drawn' if r['real'] else 'sufficient statistics'} |"
        )
    lines += [
        "",
        f"| shift | n | streams | median delay | mean (detected) | 90% | not within {MAX_DELAY} "
        "| alarms in burn-in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in delay:
        lines.append(
            f"| {r['shift']} sd | {r['n']:,} | {r['streams']} | {r['median']:.0f} | "
            f"{r['mean']:.1f} | {r['p90']:.0f} | {r['undetected']} | {r['early']} |"
        )
    return "\n".join(lines)


def main() -> int:
    t0 = time.perf_counter()
    arl = []
    for n in ARL_SIZES:
        arl.append(in_control(n))
        print(f"n = {n}: ARL0 {arl[-1]['arl']:.0f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for shape in ("poisson counts", "student t3", "lognormal"):
        for n in (30, 100):
            arl.append(in_control(n, streams=100, windows=2_000, shape=shape, seed=3))
            r = arl[-1]
            print(f"{shape} n = {n}: ARL0 {r['arl']:.0f} ({time.perf_counter() - t0:.0f} s)")
    delay = [delays(n, shift) for n, shift in DELAY_CASES]
    print(format_tables(arl, delay))
    missed = check_targets(arl, delay)
    for m in missed:
        print(f"TARGET MISSED: {m}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
