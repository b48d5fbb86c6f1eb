"""Sequential detection of small persistent drift across windows: a CUSUM per feature.

Each window is judged alone by the per-window tests (``divtransforms.significance``). A drift that
is small but persistent (a 0.1 sd shift of a mean from one day on) passes most windows' tests and
fails a few at random. Page's cumulative sum (CUSUM) over a feature's stream of windows, in
event-time order, accumulates that evidence with a known false-alarm run length.

Scores (one function each, :func:`location_score` and :func:`histogram_score`)
    ``location``: the mean test's result as a signed standard normal score,
    ``z = sign(u) Phi^-1(1 - p / 2)`` (``u``, ``p``: the mean test's skewness-corrected statistic
    and p-value), so it is N(0, 1) under "no drift" whatever the test's small-sample correction.
    A shift of ``d`` reference standard deviations moves it by about ``d / se`` with
    ``se = sqrt(1 / n_w + 1 / n_r)`` (``scale`` below). ``histogram``: the histogram test's
    p-value as a one-sided score ``z = Phi^-1(1 - p)``; its expected value under an effect of
    Cohen's ``w`` (a location shift of ``d`` sd of a normal has ``w`` about ``d``) is the score of
    the chi-square quantile ``dof + lambda``, ``lambda = w^2 / se^2``. A between-window variance
    ``tau2`` (in reference variances) enters both through the one standard error
    (:func:`standard_error`): ``se^2 = 1 / n_w + 1 / n_r + tau2``.

Detector (Page 1954, in log-likelihood-ratio units so the window size may vary)
    For a shift ``mu_t`` of the score expected from the smallest shift to detect ``delta``,
    ``S+_t = max(0, S+_{t-1} + mu_t (z_t - mu_t / 2))`` and ``S-`` the same on ``-z_t``
    (the histogram detector is one-sided). With a constant window size this is the textbook CUSUM
    of ``z`` with reference value ``k = mu / 2`` and threshold ``h``, scaled by ``mu``; records
    report it in those units (``S / mu_t`` against ``h_t``). ``h`` follows from the in-control
    average run length by Siegmund's approximation for a normal CUSUM,
    ``ARL0 = (exp(2 k b) - 2 k b - 1) / (2 k^2)`` with ``b = h + 1.166`` (Siegmund 1985), for
    increments of any drift (:func:`alarm_rate`), averaged over the reference's own sampling
    error: every window of a stream is compared with the same reference sample, so its error is a
    shift all the windows share (a share ``1 / (n_r se^2)`` of the location score's variance; about
    that share as the histogram score's standard deviation). :func:`calibrated_threshold` solves
    for ``h``. The location detector (both sides) and the histogram detector each get a run length
    of ``2.5 ARL0``, so the feature's is ``1.25 ARL0``: half the budget each and a 25% margin for
    the approximations (``benchmarks/bench_cusum.py`` checks the result by simulation).
    Above the threshold the statistic is held at ``h + 2`` (in score units) at most, and an alarm
    lasts until it falls to ``max(h - 2, h / 2)``: a persistent drift gives one alarm, not a
    flicker, and when it ends the alarm clears within about ``4 / k`` windows (5 for the mean at
    n = 300, more for a detector as weak as the histogram's there). A windowed reference's scores
    of windows that move together (``WindowScore.g > 1``: per window ``1 / g`` of their long-run
    sd, ``variation.cusum``) have that band narrowed to ``2 / g``, and a released detector
    restarts at 0, where its threshold's run length is counted from: otherwise the next wandering
    day re-crosses from just below ``h`` (most crossings of a tau = 0.3 wander were such
    re-crossings) and a small ``k`` (one independent unit a day) drains the band slowly.

Change point and size
    The change point is the first window of the crossing side's current excursion (the window
    after its statistic was last 0), the size the mean of ``z_t / scale_t`` (reference sd) over it.

State
    :class:`CusumState` per feature, JSON-able, part of the running estimates
    (``divtransforms.running.RunningEstimates``) and of the MLE-state file. Updates are keyed by the
    window's start: a window at or before the last one counted is never counted again, so a replayed
    or resumed run leaves the state as an uninterrupted one. A state made on another reference
    (:func:`reference_key`) is discarded.

References: E. S. Page (1954), "Continuous inspection schemes", Biometrika 41; D. Siegmund (1985),
"Sequential Analysis", Springer, ch. X; J. Cohen (1988), "Statistical Power Analysis".
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from scipy import special

__all__ = [
    "CUSUM_STATE_VERSION",
    "DEFAULT_ARL",
    "DEFAULT_SHIFT",
    "CusumSettings",
    "CusumState",
    "Side",
    "WindowScore",
    "alarm_rate",
    "calibrated_threshold",
    "cusum_step",
    "detector_threshold",
    "histogram_score",
    "histogram_shift",
    "location_score",
    "reference_key",
    "siegmund_arl",
    "standard_error",
    "threshold",
    "window_key",
    "window_score",
]

CUSUM_STATE_VERSION = 1
DEFAULT_SHIFT = 0.1
DEFAULT_ARL = 1000.0
OVERSHOOT = 1.166  # 2 x 0.583, Siegmund's correction for a normal CUSUM's overshoot
BAND = 2.0  # score units above the threshold a detector is held at, and below it it clears
MAX_SCORE = 37.0  # |Phi^-1(p)| for the smallest p a float holds
# Shares of the feature's false-alarm budget: the location detector (both sides) and the
# histogram detector each alarm once in 2.5 ARL0 windows, the feature once in 1.25 ARL0: half
# the budget each, with a 25% margin for the approximations (Siegmund's formula is up to about 10%
# optimistic at large k, the histogram's score is only nearly normal).
LOCATION_ARL = 2.5
HISTOGRAM_ARL = 2.5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- the decision threshold ----------------------------------------------------------------------


def siegmund_arl(k: Any, h: Any) -> Any:
    """Siegmund's approximation of the in-control average run length of a one-sided CUSUM of
    N(0, 1) values with reference value ``k`` and threshold ``h`` (arrays broadcast)."""
    k = np.asarray(k, dtype=np.float64)
    b = np.asarray(h, dtype=np.float64) + OVERSHOOT
    x = 2.0 * k * b
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        arl = np.where(k > 1e-9, np.expm1(x) - x, 0.0) / np.where(k > 1e-9, 2.0 * k * k, 1.0)
    out = np.where(k > 1e-9, arl, b * b)
    return float(out) if out.ndim == 0 else out


def threshold(k: Any, arl: Any) -> Any:
    """The smallest ``h >= 0`` whose :func:`siegmund_arl` is ``arl`` (vectorised Newton on
    ``e^x - x - 1 = 2 k^2 arl``, ``x = 2 k (h + 1.166)``, started right of the root so it
    converges monotonically)."""
    k = np.maximum(np.asarray(k, dtype=np.float64), 1e-9)
    c = 2.0 * k * k * np.asarray(arl, dtype=np.float64)
    x = np.log1p(c) + 1.0
    for _ in range(60):
        step = (np.expm1(x) - x - c) / np.expm1(x)
        x = x - step
        if np.all(np.abs(step) < 1e-12 * np.maximum(x, 1.0)):
            break
    h = np.maximum(x / (2.0 * k) - OVERSHOOT, 0.0)
    return float(h) if h.ndim == 0 else h


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def alarm_rate(k: Any, h: Any, offset_sd: Any = 0.0, two_sided: bool = True) -> Any:
    """False alarms per window of a CUSUM of scores whose mean, shared by every window of the
    stream, is off by ``N(0, offset_sd^2)`` (the reference's own sampling error) and whose spread
    around it is ``sqrt(1 - offset_sd^2)``: Siegmund's approximation
    ``ARL(D) = (exp(-2 D b) + 2 D b - 1) / (2 D^2)`` (``D``: the drift of the increments
    ``z - k`` in units of that spread, ``b = h / spread + 1.166``) averaged over the offset by
    Gauss-Hermite quadrature, ``1 / ARL`` of each side summed."""
    k = np.asarray(k, dtype=np.float64)[..., None]
    h = np.asarray(h, dtype=np.float64)[..., None]
    off = np.asarray(offset_sd, dtype=np.float64)[..., None]
    spread = np.sqrt(np.maximum(1.0 - off * off, 1e-6))
    b = h / spread + OVERSHOOT
    delta = off * _NODES
    rate: Any = 0.0
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        d = (sign * delta - k) / spread
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            x = -2.0 * d * b
            arl = np.where(np.abs(d) > 1e-9, (np.expm1(x) - x) / (2.0 * d * d), b * b)
        rate = rate + np.where(np.isfinite(arl), 1.0 / np.maximum(arl, 1.0), 0.0)
    out = (rate * _WEIGHTS).sum(axis=-1)
    return float(out) if out.ndim == 0 else out


def calibrated_threshold(k: Any, arl: Any, offset_sd: Any = 0.0, two_sided: bool = True) -> Any:
    """The threshold ``h >= 0`` whose :func:`alarm_rate` is ``1 / arl`` (bisection, vectorised;
    with no offset and one side it is :func:`threshold`)."""
    k, arl, off = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (k, arl, offset_sd))
    )
    lo = np.zeros(k.shape)
    hi = np.maximum(threshold(np.maximum(k, 1e-3), arl), 1.0)
    for _ in range(60):  # widen until the rate is low enough
        over = alarm_rate(k, hi, off, two_sided) > 1.0 / arl
        if not np.any(over):
            break
        hi = np.where(over, 2.0 * hi + 1.0, hi)
    ok0 = alarm_rate(k, lo, off, two_sided) <= 1.0 / arl
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        high = alarm_rate(k, mid, off, two_sided) > 1.0 / arl
        lo = np.where(high, mid, lo)
        hi = np.where(high, hi, mid)
    out = np.where(ok0, 0.0, hi)
    return float(out) if out.ndim == 0 else out


@functools.lru_cache(maxsize=4096)
def _threshold_cached(k: float, arl: float, offset_sd: float, two_sided: bool) -> float:
    return float(calibrated_threshold(k, arl, offset_sd, two_sided))


def detector_threshold(k: float, arl: float, offset_sd: float, two_sided: bool) -> float:
    """:func:`calibrated_threshold` of one detector, its inputs rounded to 4 significant digits
    (cached: a feature's window size rarely changes)."""

    def r(v: float) -> float:
        return float(f"{v:.4g}")

    return _threshold_cached(r(k), r(arl), r(offset_sd), two_sided)


def cusum_step(s: Any, z: Any, mu: Any, big_h: Any, band: Any = BAND) -> Any:
    """One window of a one-sided CUSUM in log-likelihood-ratio units: ``max(0, s + mu (z - mu /
    2))``, held at ``H + band mu`` at most; a NaN score leaves ``s`` as it is. The library's
    detectors and the panel's simulations (``benchmarks/bench_cusum.py``) both step here."""
    s = np.asarray(s, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    big_h = np.asarray(big_h, dtype=np.float64)
    nxt = np.maximum(s + mu * (z - mu / 2.0), 0.0)
    nxt = np.minimum(nxt, big_h + np.asarray(band, dtype=np.float64) * mu)
    out = np.where(np.isfinite(z) & np.isfinite(mu), nxt, s)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class CusumSettings:
    """The detector's calibration (``FeaturePolicy.persistent_shift`` / ``persistent_arl``).

    ``shift``: the smallest persistent shift to detect, in reference standard deviations of the
    tested value (for the histogram detector: Cohen's ``w``); 0 turns the detector off.
    ``arl``: the in-control average run length (windows between false alarms) of the feature.
    """

    shift: float = DEFAULT_SHIFT
    arl: float = DEFAULT_ARL

    @property
    def enabled(self) -> bool:
        return self.shift > 0

    def location(self, scale: float, shared: float) -> tuple[float, float]:
        """``(mu, h)`` of the location detector for a window whose score moves by ``scale`` per
        reference sd: ``mu = shift * scale``, ``h`` for ``k = mu / 2``, both sides together
        ``LOCATION_ARL * arl``, and the share ``shared`` of the score's variance that comes
        from the reference (``offset_sd = sqrt(shared)``)."""
        mu = self.shift * scale
        h = detector_threshold(mu / 2.0, LOCATION_ARL * self.arl, math.sqrt(shared), True)
        return mu, h

    def histogram(
        self, se: float, dof: int, shared: float, mu: float = math.nan
    ) -> tuple[float, float]:
        """``(mu, h)`` of the histogram detector: :func:`histogram_shift` (or ``mu`` when given:
        a windowed reference's, ``variation.cusum``), ``HISTOGRAM_ARL * arl``, and the
        reference's share ``shared`` (``offset_sd = shared`` for a chi-square)."""
        if not math.isfinite(mu):
            mu = histogram_shift(self.shift, se, dof)
        if not (math.isfinite(mu) and mu > 0):
            return math.nan, math.nan
        return mu, detector_threshold(mu / 2.0, HISTOGRAM_ARL * self.arl, shared, False)


# -- standardised scores --------------------------------------------------------------------------


def standard_error(n_window: Any, n_reference: Any, tau2: Any = 0.0) -> Any:
    """Standard error, in reference standard deviations, of a window mean against the reference
    mean: ``sqrt(1 / n_w + 1 / n_r + tau2)``. ``tau2`` is the between-window variance of the
    feed (in reference variances; 0 for independent windows), the one place it enters the
    detector's scores."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(
            1.0 / np.asarray(n_window, dtype=np.float64)
            + 1.0 / np.asarray(n_reference, dtype=np.float64)
            + np.asarray(tau2, dtype=np.float64)
        )


def location_score(
    u: Any, p_value: Any, n_window: Any, n_reference: Any, tau2: Any = 0.0
) -> tuple[Any, Any]:
    """The location detector's input: ``(z, scale)``.

    ``z`` is the mean test's signed normal score ``sign(u) Phi^-1(1 - p / 2)`` (NaN where the test
    was not applied), shrunk by ``se0 / se`` when there is between-window variance ``tau2``
    (``se0`` without it); ``scale`` is the score's expected move per reference sd of shift,
    ``1 / se``."""
    u = np.asarray(u, dtype=np.float64)
    p = np.clip(np.asarray(p_value, dtype=np.float64), 1e-300, 1.0)
    z = np.sign(u) * np.minimum(-special.ndtri(p / 2.0), MAX_SCORE)
    se0 = standard_error(n_window, n_reference)
    se = standard_error(n_window, n_reference, tau2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = z * (se0 / se)
        scale = 1.0 / se
    return z, scale


def histogram_score(p_value: Any) -> Any:
    """The histogram detector's input: the test's p-value as a one-sided normal score
    ``Phi^-1(1 - p)`` (large when the histograms differ; NaN where the test was not applied)."""
    p = np.clip(np.asarray(p_value, dtype=np.float64), 1e-300, 1.0)
    out = np.clip(-special.ndtri(p), -MAX_SCORE, MAX_SCORE)
    return float(out) if out.ndim == 0 else out


def histogram_shift(w: Any, se: Any, dof: Any) -> Any:
    """Expected :func:`histogram_score` under an effect of Cohen's ``w``: the score of the
    chi-square quantile ``dof + lambda``, ``lambda = (w / se)^2`` (the noncentral statistic's
    mean)."""
    dof = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    lam = (np.asarray(w, dtype=np.float64) / np.asarray(se, dtype=np.float64)) ** 2
    out = histogram_score(special.chdtrc(dof, dof + lam))
    return float(out) if np.ndim(out) == 0 else out


class WindowScore(NamedTuple):
    """A window's detector inputs for one feature (NaN: the test was not applied)."""

    location: float
    scale: float  # location score per reference sd of shift (1 / se)
    shared: float  # the reference's share of the location score's variance, 1 / (n_r se^2)
    histogram: float
    hist_se: float  # standard error (reference sd) at the histogram's n
    hist_shared: float  # the reference's share at the histogram's n
    dof: int  # the histogram test's degrees of freedom
    hist_mu: float = math.nan  # the histogram score's expected move under the smallest shift
    # (a windowed reference's, ``variation.cusum.judged_score``; NaN: :func:`histogram_shift`'s)
    g: float = 1.0  # the location score's long-run sd per window over its own (a windowed
    # reference's windows that move together, ``variation.cusum``): the alarm band is BAND / g
    hist_g: float = 1.0  # the same for the histogram score


def window_score(fp: Any, hist: Any, mle_window: Any, tau2: float = 0.0) -> WindowScore:
    """The detector inputs of one feature's window: the very tests records carry
    (``significance.mean_test`` on the family's value, the p-value of ``homogeneity_test`` on
    the reference's test cells), turned into scores by :func:`location_score` and
    :func:`histogram_score`."""
    from divtransforms.mle import MomentMLE
    from divtransforms.significance import (
        comparison_table,
        mean_test,
        moment_columns,
        power_divergence,
    )

    loc = scale = shared = hs = hist_se = hist_shared = math.nan
    dof = 0
    ref = fp.mle if isinstance(fp.mle, MomentMLE) else None
    win = mle_window if isinstance(mle_window, MomentMLE) else None
    if ref is not None and win is not None and fp.family not in (None, "categorical"):
        u, p, _ = mean_test(moment_columns(win.t), moment_columns(ref.t))
        if math.isfinite(float(p)):
            z, sc = location_score(u, p, win.t.n, ref.t.n, tau2)
            loc, scale = float(z), float(sc)
            shared = float(sc) ** 2 / ref.t.n
    ref_counts = fp.histogram.counts
    if hist.n and fp.histogram.n:
        # homogeneity_test's p-value without its descriptive G
        a, b = comparison_table(hist.counts, ref_counts, hist.n, fp.bins.test_cells(ref_counts))
        stat, k = power_divergence(a, b)
        if int(k) >= 1:
            hs, dof = histogram_score(special.chdtrc(int(k), float(stat))), int(k)
            hist_se = float(standard_error(hist.n, fp.histogram.n, tau2))
            hist_shared = 1.0 / (fp.histogram.n * hist_se**2)
    return WindowScore(loc, scale, shared, hs, hist_se, hist_shared, dof)


# -- the state ------------------------------------------------------------------------------------


def window_key(start: Any) -> int | None:
    """A window's start as epoch microseconds (datetimes and microseconds alike; None: the global
    window, which has no place in a sequence)."""
    if start is None:
        return None
    if isinstance(start, datetime):
        return (start - _EPOCH) // timedelta(microseconds=1)
    return int(start)


def reference_key(fp: Any) -> str:
    """A short fingerprint of a feature's reference (its histogram, family and moments): a state
    made on another reference is discarded."""
    h = hashlib.sha256()
    h.update(str(fp.family).encode())
    h.update(np.asarray(fp.histogram.counts, dtype=np.int64).tobytes())
    h.update("\x1f".join(map(str, fp.bins.labels)).encode())
    mle = getattr(fp, "mle", None)
    t = getattr(mle, "t", None)
    if t is not None:
        h.update(np.asarray([t.n, t.mean, t.m2], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Side:
    """One one-sided CUSUM: the statistic (log-likelihood-ratio units), the first window of its
    current excursion, and the windows and summed shift (reference sd) since."""

    s: float = 0.0
    since: int | None = None
    windows: int = 0
    total: float = 0.0

    def step(
        self, key: int, z: float, mu: float, big_h: float, shift_sd: float, band: float = BAND
    ) -> Side:
        if not (math.isfinite(z) and math.isfinite(mu)):
            return self
        s = cusum_step(self.s, z, mu, big_h, band)
        if s <= 0.0:
            return Side()
        if self.s <= 0.0:
            return Side(s, key, 1, shift_sd)
        return Side(s, self.since, self.windows + 1, self.total + shift_sd)


@dataclass(frozen=True)
class CusumState:
    """A feature's detectors over its windows (see the module docstring).

    ``last``: the start (epoch microseconds) of the last window counted; ``windows``: windows
    counted. ``up``/``down``: the location detector's sides, ``hist`` the histogram detector.
    ``report``: what the last window's record shows (statistics and thresholds in the window's
    score units, the alarm, the change point and size).
    """

    reference: str = ""
    last: int | None = None
    windows: int = 0
    up: Side = field(default_factory=Side)
    down: Side = field(default_factory=Side)
    hist: Side = field(default_factory=Side)
    report: Mapping[str, Any] = field(default_factory=dict)

    def advance(self, key: int | None, score: WindowScore, settings: CusumSettings) -> CusumState:
        """This state after the window starting at ``key`` (idempotent: a window at or before
        the last one counted, or the global window, changes nothing)."""
        if key is None or not settings.enabled or (self.last is not None and key <= self.last):
            return self
        up, down, hist = self.up, self.down, self.hist
        loc_stat = loc_h = hist_stat = hist_h = math.nan
        shift_sd = math.nan
        loc_band, hist_band = BAND / score.g, BAND / score.hist_g
        if math.isfinite(score.location) and math.isfinite(score.scale) and score.scale > 0:
            mu, h = settings.location(score.scale, score.shared)
            big_h = mu * h
            shift_sd = score.location / score.scale
            up = up.step(key, score.location, mu, big_h, shift_sd, loc_band)
            down = down.step(key, -score.location, mu, big_h, shift_sd, loc_band)
            loc_stat, loc_h = max(up.s, down.s) / mu, h
        if math.isfinite(score.histogram) and math.isfinite(score.hist_se):
            mu, h = settings.histogram(score.hist_se, score.dof, score.hist_shared, score.hist_mu)
            if math.isfinite(mu) and mu > 0:
                hist = hist.step(key, score.histogram, mu, mu * h, 0.0, hist_band)
                hist_stat, hist_h = hist.s / mu, h
        was = self.report.get("alarm")
        report = _report(
            was, up, down, hist, loc_stat, loc_h, hist_stat, hist_h, loc_band, hist_band
        )
        if was is not None and report["alarm"] != was:  # released: see the module docstring
            if was == "mean" and score.g > 1.0:
                up, down = Side(), Side()
            if was == "histogram" and report["alarm"] is None and score.hist_g > 1.0:
                hist = Side()
        return replace(
            self, last=key, windows=self.windows + 1, up=up, down=down, hist=hist, report=report
        )

    def record_fields(self, key: int | None) -> dict[str, Any]:
        """The record fields of the window starting at ``key``: this state's report when ``key``
        is the last window counted, nulls otherwise (a window counted by an earlier run)."""
        if key is None or key != self.last or not self.report:
            return dict.fromkeys(RECORD_KEYS)
        r = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in self.report.items()}  # fmt: skip
        return {
            "cusum": r.get("statistic"),
            "cusum_threshold": r.get("threshold"),
            "cusum_histogram": r.get("histogram"),
            "cusum_histogram_threshold": r.get("histogram_threshold"),
            "cusum_alarm": r.get("alarm"),
            "cusum_change_point": _when(r.get("change_point")),
            "cusum_shift": r.get("shift"),
            "cusum_windows": self.windows,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["report"] = {k: _finite(v) for k, v in self.report.items()}
        return {"version": CUSUM_STATE_VERSION, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CusumState:
        version = d.get("version", CUSUM_STATE_VERSION)
        if version != CUSUM_STATE_VERSION:
            raise ValueError(
                f"CUSUM state version {version} is not supported (expected {CUSUM_STATE_VERSION})"
            )

        def side(x: Mapping[str, Any] | None) -> Side:
            x = x or {}
            since = x.get("since")
            return Side(
                float(x.get("s", 0.0)),
                None if since is None else int(since),
                int(x.get("windows", 0)),
                float(x.get("total", 0.0)),
            )

        last = d.get("last")
        return cls(
            str(d.get("reference", "")),
            None if last is None else int(last),
            int(d.get("windows", 0)),
            side(d.get("up")),
            side(d.get("down")),
            side(d.get("hist")),
            {k: (math.nan if v is None and k in _FLOAT_REPORT else v) for k, v in
             (d.get("report") or {}).items()},
        )  # fmt: skip


RECORD_KEYS = (
    "cusum",
    "cusum_threshold",
    "cusum_histogram",
    "cusum_histogram_threshold",
    "cusum_alarm",
    "cusum_change_point",
    "cusum_shift",
    "cusum_windows",
)
_FLOAT_REPORT = ("statistic", "threshold", "histogram", "histogram_threshold", "shift")


def _report(
    was: str | None,
    up: Side,
    down: Side,
    hist: Side,
    loc: float,
    loc_h: float,
    hs: float,
    hs_h: float,
    loc_band: float = BAND,
    hs_band: float = BAND,
) -> dict[str, Any]:
    """What a window's record shows: the statistics and thresholds, which detector is in alarm
    (``mean`` before ``histogram``), and that side's change point and size. A detector is in
    alarm above its threshold ``h``, and stays so (``was``) until it falls to ``max(h - BAND,
    h / 2)``."""
    alarm = None
    change, shift = None, math.nan
    mean_on = math.isfinite(loc) and (
        loc > loc_h or (was == "mean" and loc > _release(loc_h, loc_band))
    )
    hist_on = math.isfinite(hs) and (
        hs > hs_h or (was == "histogram" and hs > _release(hs_h, hs_band))
    )
    if mean_on:
        side = up if up.s >= down.s else down
        alarm, change = "mean", side.since
        shift = side.total / side.windows if side.windows else math.nan
    elif hist_on:
        alarm, change = "histogram", hist.since
    return {
        "statistic": loc,
        "threshold": loc_h,
        "histogram": hs,
        "histogram_threshold": hs_h,
        "alarm": alarm,
        "change_point": change,
        "shift": shift,
    }


def _release(h: float, band: float = BAND) -> float:
    return max(h - band, h / 2.0)


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _when(micros: Any) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=int(micros))


def nan_or(v: Any) -> float:
    return math.nan if v is None else float(v)


@dataclass(frozen=True)
class Scorer:
    """How a window's statistics become the detectors' inputs: the features' reference profiles
    and each feature's settings (``FeaturePolicy.cusum``)."""

    features: Mapping[str, Any]
    settings: Mapping[str, CusumSettings]
    judge: Any = None  # a windowed reference's ``variation.cusum.JudgedScores`` (None: plain)

    @classmethod
    def of(cls, features: Mapping[str, Any], policy: Any = None, judge: Any = None) -> Scorer:
        """Settings from ``policy`` (a :class:`divtransforms.policy.Policy`; anything without
        ``for_feature``, or None, gives the defaults); ``judge``: a windowed reference's
        ``variation.cusum.JudgedScores``, whose null (season, between-window variation) the
        scores then take."""
        per = getattr(policy, "for_feature", None)
        settings = {n: (per(n).cusum() if per is not None else CusumSettings()) for n in features}
        return cls(dict(features), settings, judge)

    def scores(
        self, stats: Any, tau2: Mapping[str, float] | None = None, start: Any = None
    ) -> dict[str, WindowScore]:
        """``{feature: WindowScore}`` of a window's statistics (``window.FeatureStats``) for the
        features whose detector is on; with a judge, judged as the window starting at
        ``start`` is (its season)."""
        judged = self.judge.judged(window_key(start)) if self.judge is not None else {}
        out = {}
        for n, fp in self.features.items():
            if not self.settings[n].enabled or n not in stats.histograms:
                continue
            hist, mle = stats.histograms[n], stats.mle.get(n)
            if n in judged:
                out[n] = self.judge.score(judged[n], hist, mle, self.settings[n].shift)
            else:
                out[n] = window_score(fp, hist, mle, (tau2 or {}).get(n, 0.0))
        return out
