"""Exact bin indices of float64 values on a uniform grid of cells (the counting kernel of
``divtransforms.bins.NumericBins``; ``docs/performance.md``, "Binning")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Grid"]


class Grid:
    """Exact bin indices of float64 values in a few vectorised passes, for one set of edges.

    The bin of ``x`` is ``b(x) = #{e in E : e <= x}`` over ``E = [e_0, ..., e_K-1,
    nextafter(e_K, +inf)]`` (so ``x == e_K`` stays in the last, closed bin, ``x > e_K`` is the
    overflow ``K + 1`` and ``x < e_0`` the underflow 0): the count layout of ``NumericBins``.

    A cell ``f(x) = trunc(clamp(x * scale - offset, 0, G + 1))`` on ``G`` uniform cells over
    ``[e_0, e_K]`` is computed with float operations that are all monotone (correctly rounded
    multiply and subtract by constants, ``fmax``/``fmin``, truncation), so ``e <= x`` implies
    ``f(e) <= f(x)``, and ``f(e) < f(x)`` implies ``e < x``. Hence, with ``c = f(x)``,
    ``lo[c] = #{e : f(e) < c} <= b(x) <= #{e : f(e) <= c} = lo[c] + m[c]``, where ``f(e)`` is
    the same computation on the edges. ``b`` starts at ``lo[c]`` (a table lookup) and a
    branchless binary search of ``d = bit_length(max m)`` exact comparisons ``x >= E[b + s - 1]``
    (``s = 2^(d-1) .. 1``; ``E`` padded with NaN, which compares false) finishes it. No rounding
    can move a value across an edge: every decision is a comparison with an edge, as in
    ``numpy.histogram``. NaN is clamped to cell 0 and stays in bin 0; it is counted apart and
    taken out. Heavy tails (edges bunched in a few cells) only make ``d`` larger.
    """

    CELLS = 4096
    BLOCK = 1 << 14  # values per pass: the block's buffers stay in the L1/L2 cache

    def __init__(self, edges: NDArray[np.float64], scale: float, offset: float) -> None:
        self.k = int(edges.shape[0])  # the number of edges: bins are 0 .. k (k + 1 counts)
        self.scale, self.offset, self.top = scale, offset, float(self.CELLS + 1)
        e = edges.copy()
        e[-1] = np.nextafter(e[-1], math.inf)
        fe = self.cell(e)
        c = np.arange(self.CELLS + 2)
        self.lut = np.searchsorted(fe, c, side="left").astype(np.intp)
        m = int((np.searchsorted(fe, c, side="right") - self.lut).max())
        self.steps = [1 << i for i in reversed(range(m.bit_length()))]
        # E[b + s - 1] for b up to k and s up to 2^(d-1): NaN beyond the last edge
        self.padded = np.concatenate([e, np.full(max(self.steps, default=1), np.nan)])

    @classmethod
    def of(cls, edges: NDArray[np.float64]) -> Grid | None:
        """The grid of ``edges``; None when their range is too small or large for one (the
        scale or offset would not be finite and positive)."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            span = float(edges[-1]) - float(edges[0])
            scale = cls.CELLS / span if span > 0 else math.inf
            offset = float(edges[0]) * scale - 1.0
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
            return None
        return cls(edges, scale, offset)

    def cell(self, x: NDArray[np.float64], out: NDArray[np.float64] | None = None) -> Any:
        y = np.multiply(x, self.scale, out=out)
        np.subtract(y, self.offset, out=y)
        np.fmax(y, 0.0, out=y)
        np.fmin(y, self.top, out=y)
        return y.astype(np.intp)

    def counts(self, x: NDArray[np.float64]) -> tuple[NDArray[np.int64], int]:
        """``(counts over the k + 1 bins, NaN count)`` of ``x``."""
        n = int(x.shape[0])
        size = min(n, self.BLOCK)
        y = np.empty(size, dtype=np.float64)
        cell = np.empty(size, dtype=np.intp)
        b = np.empty(size, dtype=np.intp)
        probe = np.empty(size, dtype=np.float64)
        ge = np.empty(size, dtype=np.bool_)
        step = np.empty(size, dtype=np.intp)
        counts = np.zeros(self.k + 1, dtype=np.int64)
        n_missing = 0
        with np.errstate(over="ignore", invalid="ignore"):
            for lo in range(0, n, self.BLOCK):
                v = x[lo : lo + self.BLOCK]
                m = int(v.shape[0])
                yy, cc, bb, pp, gg = y[:m], cell[:m], b[:m], probe[:m], ge[:m]
                np.multiply(v, self.scale, out=yy)
                np.subtract(yy, self.offset, out=yy)
                np.fmax(yy, 0.0, out=yy)
                np.fmin(yy, self.top, out=yy)
                np.copyto(cc, yy, casting="unsafe")  # truncation: y is in [0, G + 1]
                self.lut.take(cc, out=bb)
                for s in self.steps:
                    self.padded[s - 1 :].take(bb, out=pp)
                    np.greater_equal(v, pp, out=gg)
                    if s == 1:
                        bb += gg
                    else:
                        np.multiply(gg, s, out=step[:m])
                        bb += step[:m]
                counts += np.bincount(bb, minlength=self.k + 1)
                nan = int(np.count_nonzero(np.isnan(v, out=gg)))
                counts[0] -= nan
                n_missing += nan
        return counts, n_missing
