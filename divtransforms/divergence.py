"""Information-theoretic divergences between discrete distributions
(docs/concepts.md, "Quantities, units and direction").

Every function takes counts or probabilities over the same bins, normalises them inside, and
works on one pair (1-D inputs, a ``float`` result) or on many pairs at once (2-D inputs, one row
per pair, an array result). The default logarithm base is 2 (bits); pass ``base=math.e`` for nats.

Conventions, part of the contract:

* ``0 log 0 = 0``; a bin with ``p_i = 0`` contributes nothing to H(p), H(p, q) or D(p || q).
* ``D(p || q) = +inf`` (never NaN) when some ``p_i > 0`` has ``q_i = 0`` and ``alpha == 0``.
* ``alpha`` is an additive pseudo-count per bin applied to the (count) inputs before normalising;
  ``alpha = 0.5`` is the Jeffreys / Krichevsky-Trofimov estimator used for drift records.
* Inputs must be finite and non-negative with a positive total; anything else raises ``ValueError``.

References: Cover & Thomas, *Elements of Information Theory* (2nd ed.), ch. 2; Lin (1991),
"Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37(1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "cross_entropy",
    "divergences",
    "entropy",
    "hellinger",
    "js_distance",
    "js_divergence",
    "kl_divergence",
    "normalize",
    "psi",
]


def _log_base(base: float) -> float:
    if not (isinstance(base, int | float) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    return math.log(base)


def _as_counts(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (one distribution) or 2-D (one per row), got shape {arr.shape}"
        )
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has no bins")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"{name} contains negative values")
    return arr


def normalize(x: ArrayLike, alpha: float = 0.0, *, name: str = "p") -> NDArray[np.float64]:
    """Turn counts (or unnormalised weights) into probabilities, with ``alpha`` added to each bin.

    Rows of a 2-D input are normalised independently. Raises ``ValueError`` for negative, NaN or
    infinite input, a negative ``alpha``, or a row whose total (after smoothing) is zero.
    """
    arr = _as_counts(x, name)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if alpha:
        arr = arr + alpha
    total = arr.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"{name} sums to zero: no mass to normalise")
    return arr / total


def _pair(
    p: ArrayLike, q: ArrayLike, alpha: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pa = normalize(p, alpha, name="p")
    qa = normalize(q, alpha, name="q")
    if pa.shape[-1] != qa.shape[-1]:
        raise ValueError(
            f"p and q must have the same number of bins, got {pa.shape[-1]} and {qa.shape[-1]}"
        )
    if pa.ndim == 2 and qa.ndim == 2 and pa.shape[0] != qa.shape[0]:
        raise ValueError(f"p and q have different numbers of rows: {pa.shape[0]} and {qa.shape[0]}")
    return pa, qa


def _out(values: NDArray[np.float64], ndim: int) -> Any:
    return float(values) if ndim == 0 else values


def _xlogy(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """x * ln(y) with 0 * ln(anything) = 0 (scipy.special.xlogy, without the import cost)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * np.log(y)
    return np.where(x == 0, 0.0, out)


def entropy(p: ArrayLike, base: float = 2.0) -> Any:
    """Shannon entropy ``H(p) = -sum p_i log p_i`` (``0 log 0 = 0``).

    >>> entropy([1, 1, 1, 1])
    2.0
    """
    h = _entropy_of(normalize(p), _log_base(base))
    return _out(h, h.ndim)


def _entropy_of(pa: NDArray[np.float64], lb: float) -> NDArray[np.float64]:
    return np.maximum(-_xlogy(pa, pa).sum(axis=-1) / lb, 0.0)


def cross_entropy(p: ArrayLike, q: ArrayLike, base: float = 2.0, alpha: float = 0.0) -> Any:
    """Cross-entropy ``H(p, q) = -sum p_i log q_i``; ``H(p, p) = H(p)``.

    ``+inf`` when some ``p_i > 0`` has ``q_i = 0``.
    """
    lb = _log_base(base)
    h = _cross_entropy_of(*_pair(p, q, alpha), lb)
    return _out(h, h.ndim)


def _cross_entropy_of(
    pa: NDArray[np.float64], qa: NDArray[np.float64], lb: float
) -> NDArray[np.float64]:
    return -_xlogy(pa, qa).sum(axis=-1) / lb


def _kl(pa: NDArray[np.float64], qa: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sum of p ln(p/q) in nats with the conventions above, clipped at zero (rounding)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = pa * (np.log(pa) - np.log(qa))
    terms = np.where(pa == 0, 0.0, terms)
    terms = np.where((pa > 0) & (qa == 0), np.inf, terms)
    return np.maximum(terms.sum(axis=-1), 0.0)


def kl_divergence(p: ArrayLike, q: ArrayLike, base: float = 2.0, alpha: float = 0.0) -> Any:
    """Kullback-Leibler divergence ``D(p || q) = sum p_i log(p_i / q_i) = H(p, q) - H(p)``.

    Asymmetric and >= 0. With ``alpha = 0`` the exact value, ``+inf`` when some ``p_i > 0`` has
    ``q_i = 0``; with ``alpha > 0`` both inputs (as counts) get ``alpha`` added to every bin first,
    so the result is finite. Matches ``scipy.stats.entropy(p, q, base=base)``.

    >>> round(kl_divergence([1, 1], [1, 3]), 6)
    0.207519
    """
    lb = _log_base(base)
    pa, qa = _pair(p, q, alpha)
    d = _kl(pa, qa) / lb
    return _out(d, d.ndim)


def js_divergence(p: ArrayLike, q: ArrayLike, base: float = 2.0) -> Any:
    """Jensen-Shannon divergence ``JS = D(p || m) / 2 + D(q || m) / 2`` with ``m = (p + q) / 2``.

    Symmetric, finite, 0 iff ``p == q``, at most ``log_base(2)`` (1 in base 2). Needs no smoothing.
    Equals ``scipy.spatial.distance.jensenshannon(p, q, base=base) ** 2``.
    """
    lb = _log_base(base)
    js = _js_of(*_pair(p, q), lb)
    return _out(js, js.ndim)


def _js_of(pa: NDArray[np.float64], qa: NDArray[np.float64], lb: float) -> NDArray[np.float64]:
    m = 0.5 * (pa + qa)
    js = 0.5 * (_kl(pa, m) + _kl(qa, m)) / lb
    return np.minimum(js, math.log(2) / lb)


def js_distance(p: ArrayLike, q: ArrayLike, base: float = 2.0) -> Any:
    """Jensen-Shannon distance ``sqrt(JS(p, q))``: a metric on distributions."""
    return _out(np.sqrt(np.asarray(js_divergence(p, q, base))), np.ndim(js_divergence(p, q, base)))


def psi(p: ArrayLike, q: ArrayLike, base: float = 2.0, alpha: float = 0.5) -> Any:
    """Population stability index ``sum (p_i - q_i) log(p_i / q_i) = D(p||q) + D(q||p)``.

    Jeffreys' symmetric divergence. Smoothed with ``alpha`` (default 0.5 pseudo-counts, as drift
    records) so that it is finite; with ``alpha = 0`` it is ``+inf`` when a bin is empty in one
    distribution only. The popular rule-of-thumb thresholds (0.1 / 0.25) are in nats
    (``base=math.e``).
    """
    d = _psi_of(*_pair(p, q, alpha), _log_base(base))
    return _out(d, d.ndim)


def _psi_of(pa: NDArray[np.float64], qa: NDArray[np.float64], lb: float) -> NDArray[np.float64]:
    return (_kl(pa, qa) + _kl(qa, pa)) / lb


def hellinger(p: ArrayLike, q: ArrayLike) -> Any:
    """Hellinger distance ``sqrt(1 - sum sqrt(p_i q_i))`` in [0, 1] (no base, no smoothing)."""
    h = _hellinger_of(*_pair(p, q))
    return _out(h, h.ndim)


def _hellinger_of(pa: NDArray[np.float64], qa: NDArray[np.float64]) -> NDArray[np.float64]:
    bc = np.sqrt(pa * qa).sum(axis=-1)
    return np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))


def divergences(p: ArrayLike, q: ArrayLike, base: float = 2.0, alpha: float = 0.0) -> dict:
    """The divergences of ``p`` (a window) from ``q`` (the reference) that drift records hold,
    each normalisation done once: ``entropy_current`` (``entropy(p)``), ``cross_entropy``,
    ``kl_divergence``, ``kl_reverse`` and ``psi`` (smoothed with ``alpha``), ``js_divergence`` and
    ``hellinger`` (raw): the same values as the functions one by one. Floats for one pair, arrays
    for rows of pairs."""
    lb = _log_base(base)
    p0, q0 = _pair(p, q)
    ps, qs = _pair(p, q, alpha) if alpha else (p0, q0)
    out = {
        "entropy_current": _entropy_of(p0, lb),
        "cross_entropy": _cross_entropy_of(ps, qs, lb),
        "kl_divergence": _kl(ps, qs) / lb,
        "kl_reverse": _kl(qs, ps) / lb,
        "js_divergence": _js_of(p0, q0, lb),
        "psi": _psi_of(ps, qs, lb),
        "hellinger": _hellinger_of(p0, q0),
    }
    return {k: _out(v, v.ndim) for k, v in out.items()}
