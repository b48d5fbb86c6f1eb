"""Exact quantiles of a numeric feature in bounded memory, over a few passes of its batches.

``numpy.quantile(x, q, method="inverted_cdf")`` needs the whole column in memory. The reference
build instead finds the same order statistics with passes over the data that keep only counts
and a few small slices of values (a selection by distribution counting, as a radix select):

1. The root region holds every finite value, between the minimum and the maximum (known from the
   first pass's summary). A pass counts the region's values on ``CELLS`` equal cells; a cell's
   index, ``floor((x - lo) * scale)`` clipped, never decreases as ``x`` grows, so the values of a
   lower cell are all smaller than those of a higher one and the counts place every wanted rank
   in one cell, with the exact number of values below it.
2. A cell holding a wanted rank becomes a region of its own. The next pass gathers its values if
   there are at most ``GATHER_MAX`` of them (then ``numpy.partition`` gives the exact value), or
   counts them on a finer grid over the cell (and so on, for heavily concentrated data). A region
   whose values are all equal is resolved without gathering.

Memory is ``O(cells + regions x GATHER_MAX)`` per feature whatever the number of rows; typical
data needs two passes after the summary (one counting, one gathering). Because each region knows
the exact number of values below it, ``below(v)`` (values ``< v``) is exact for every edge found,
which gives the reference histogram on the final edges without another pass.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CellCounts", "ExactQuantiles", "inverted_cdf_ranks"]

CELLS = 4096
GATHER_MAX = 1 << 15


def inverted_cdf_ranks(n: int, q: NDArray[np.float64]) -> NDArray[np.intp]:
    """The 0-based ranks ``numpy.quantile(..., method="inverted_cdf")`` takes for ``n`` values
    (numpy's own arithmetic: ``n * q - 1``, the next integer unless exact, clipped at 0)."""
    index = n * np.asarray(q, dtype=np.float64) - 1
    previous = np.floor(index)
    res = np.where(index - previous == 0, previous, previous + 1).astype(np.intp)
    res[res < 0] = 0
    return res


@dataclass
class _Region:
    """Values ``v`` with ``lo_cell(v) == cell`` along a path of grids; ``below`` values lie
    under it, ``count`` in it. ``ranks`` are the wanted ranks inside it."""

    path: tuple[tuple[float, float, int], ...]  # (lo, scale, cell) per level
    below: int
    count: int
    ranks: list[int]
    lo: float
    hi: float
    values: list[NDArray[np.float64]] = field(default_factory=list)  # gathering
    counts: NDArray[np.integer] | None = None  # counting on a finer grid
    vmin: float = math.inf
    vmax: float = -math.inf
    seen: int = 0  # values of this pass in the region
    grid: tuple[float, float] | None = None  # (lo, scale) of the finer grid


def _cells(x: NDArray[np.float64], lo: float, scale: float) -> NDArray[np.intp]:
    """Monotone cell index of each value on a grid of ``CELLS`` cells from ``lo``."""
    with np.errstate(over="ignore", invalid="ignore"):
        buf = np.subtract(x, lo)
        np.multiply(buf, scale, out=buf)
    np.clip(buf, 0, CELLS - 1, out=buf)
    return buf.astype(np.intp)


class CellCounts:
    """The first counting pass of :class:`ExactQuantiles`, run before the number of values and
    the wanted ranks are known (the reference build does it in the same pass as the value
    summaries, which saves a pass over the data).

    The grid spans the first batch's finite values; values outside it fall in the end cells
    (the index is clipped, so it still never decreases as ``x`` grows). If they are many, the
    cell holding a wanted rank is counted again on a finer grid: more passes, never a wrong
    value. ``add(x)`` takes each batch (non-finite values are ignored)."""

    def __init__(self) -> None:
        self.grid: tuple[float, float] | None = None
        # The narrowest integers the values counted so far fit (a wide table holds a thousand
        # of these at once): int16 below 2**15 values, int32 below 2**31, int64 beyond.
        self.counts: NDArray[np.signedinteger] = np.zeros(CELLS, dtype=np.int16)
        self.n = 0
        self.vmin, self.vmax = math.inf, -math.inf

    def add(self, x: NDArray[np.float64]) -> None:
        finite = np.isfinite(x)
        x = x if finite.all() else x[finite]
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.grid is None:
            self.grid = (lo, _scale(lo, hi))
        self.n += int(x.size)
        for dtype in (np.int16, np.int32):
            if self.counts.dtype == dtype and self.n > np.iinfo(dtype).max:
                self.counts = self.counts.astype(np.int32 if dtype is np.int16 else np.int64)
        self.vmin, self.vmax = min(self.vmin, lo), max(self.vmax, hi)
        self.counts += np.bincount(_cells(x, *self.grid), minlength=CELLS)


def _scale(lo: float, hi: float) -> float:
    """``CELLS`` cells over ``[lo, hi]`` (a finite, positive scale even for a constant or a
    subnormal-width batch: any grid is correct, a poor one only costs a finer pass)."""
    width = hi - lo
    if math.isinf(width):  # the width overflows float64
        scale = CELLS / (hi / 2 - lo / 2) / 2
    else:
        scale = CELLS / width if width > 0 else math.inf
    if not (math.isfinite(scale) and scale > 0):
        scale = CELLS / max(abs(lo), 1.0)
    return scale


class ExactQuantiles:
    """Order statistics of ``ranks`` of one feature's ``n`` finite values in ``[lo, hi]``.

    ``gather_max`` (at most ``GATHER_MAX``) caps the values a region may gather; a caller with
    many features lowers it to bound the total. Drive it with passes: ``add(x)`` for every batch
    (float64, non-finite values are ignored),
    then ``end_pass()``; repeat while ``done`` is false. Then ``values()`` are the order
    statistics and ``below(v)`` counts values smaller than one of them.
    """

    def __init__(
        self,
        n: int,
        lo: float,
        hi: float,
        ranks: NDArray[np.intp],
        gather_max: int | None = None,
        counted: CellCounts | None = None,
    ) -> None:
        self.n = int(n)
        self._gather_max = GATHER_MAX if gather_max is None else int(gather_max)
        wanted = sorted({int(r) for r in np.asarray(ranks).tolist()})
        if self.n <= 0 or not wanted or wanted[0] < 0 or wanted[-1] >= self.n:
            raise ValueError(f"ranks {wanted} are not within {self.n} values")
        self._found: dict[int, float] = {}
        self._resolved: list[tuple[float, float, int, NDArray[np.float64] | None]] = []
        self._by_lo: list[tuple[float, float, int, NDArray[np.float64] | None]] = []
        self._los: list[float] = []
        root = _Region((), 0, self.n, wanted, float(lo), float(hi))
        self._pending: list[_Region] = []
        self._top: tuple[float, float, NDArray[np.bool_]] | None = None
        if counted is not None and counted.grid is not None and root.lo != root.hi:
            # the first count is done (``CellCounts``): the cells holding a wanted rank next
            if counted.n != self.n:
                raise RuntimeError("the data changed between passes (counts differ)")
            root.grid, root.counts = counted.grid, counted.counts
            root.vmin, root.vmax, root.seen = counted.vmin, counted.vmax, counted.n
            self._split(root)
        else:
            self._settle(root)
        self._start_pass()

    @property
    def done(self) -> bool:
        return not self._pending

    # -- passes ------------------------------------------------------------------------------
    def _start_pass(self) -> None:
        self._top = None
        for r in self._pending:
            r.values, r.vmin, r.vmax, r.seen = [], math.inf, -math.inf, 0
            r.grid, r.counts = None, None
            if r.count > min(self._gather_max, GATHER_MAX):
                width = r.hi - r.lo
                scale = CELLS / width if width > 0 else 0.0
                if math.isinf(width):  # the width overflows float64
                    scale = CELLS / (r.hi / 2 - r.lo / 2) / 2
                if math.isfinite(scale) and scale > 0:  # else (subnormal widths): gather
                    r.grid = (r.lo, scale)  # counts start with the second distinct value
            if r.path:
                lo, scale, cell = r.path[0]
                if self._top is None:
                    self._top = (lo, scale, np.zeros(CELLS, dtype=bool))
                self._top[2][cell] = True

    def add(self, x: NDArray[np.float64]) -> None:
        """Count or gather one batch for every pending region."""
        if not self._pending:
            return
        finite = np.isfinite(x)
        x = x if finite.all() else x[finite]
        top = self._top
        if top is not None:  # regions under the root's grid: select their cells once
            lo, scale, want = top
            idx = _cells(x, lo, scale)
            keep = want[idx]
            sub, sub_idx = x[keep], idx[keep]
            spans = self._cell_spans(sub, sub_idx)
        for r in self._pending:
            span_range = None
            if not r.path:
                xs = x
            else:
                xs, span_range = spans(r.path[0][2])
                for lo, scale, cell in r.path[1:]:
                    span_range = None
                    if xs.size == 0:
                        break
                    xs = xs[_cells(xs, lo, scale) == cell]
            if xs.size == 0:
                continue
            before, atom = r.seen, r.vmin
            r.seen += xs.size
            vmin, vmax = span_range or (float(xs.min()), float(xs.max()))
            r.vmin = min(r.vmin, vmin)
            r.vmax = max(r.vmax, vmax)
            if r.grid is None:
                r.values.append(xs.copy() if xs is x else xs)
                continue
            if r.counts is None:
                # A cell too full to gather often holds one repeated value (an atom of
                # integer or 0/1 data), resolved at the end of the pass without counts: count
                # only once a second value shows up, the earlier ones (all ``atom``) at once.
                if r.vmin == r.vmax:
                    continue
                r.counts = np.zeros(CELLS, dtype=np.int64)
                if before:
                    r.counts[_cells(np.array([atom]), *r.grid)[0]] += before
            r.counts += np.bincount(_cells(xs, *r.grid), minlength=CELLS)

    def _cell_spans(self, sub: NDArray[np.float64], sub_idx: NDArray[np.intp]) -> Any:
        """``cell -> (the values of sub in that cell, in their order; their (min, max) or
        None)``. With many regions (33 in each feature of a wide table) one stable sort by cell
        (a radix sort of 16-bit cells), one ``searchsorted`` and one ``reduceat`` each for the
        minima and maxima of all their cells replace a few numpy calls per region."""
        cells = sorted({r.path[0][2] for r in self._pending if r.path})
        if len(cells) <= 4:
            return lambda cell: (sub[sub_idx == cell], None)
        order = np.argsort(sub_idx.astype(np.uint16), kind="stable")  # CELLS <= 2**16
        by_cell = sub[order]
        bounds = np.searchsorted(sub_idx[order], [*cells, *(c + 1 for c in cells)]).tolist()
        span = {c: (bounds[i], bounds[i + len(cells)]) for i, c in enumerate(cells)}
        starts = [a for a, b in span.values() if b > a]
        ranges: dict[int, tuple[float, float]] = {}
        if starts:
            lows = np.minimum.reduceat(by_cell, starts).tolist()
            highs = np.maximum.reduceat(by_cell, starts).tolist()
            at = dict(zip(starts, zip(lows, highs, strict=True), strict=True))
            ranges = {c: at[a] for c, (a, b) in span.items() if b > a}

        def values(cell: int) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
            a, b = span[cell]
            return by_cell[a:b], ranges.get(cell)

        return values

    def end_pass(self) -> None:
        pending, self._pending = self._pending, []
        for r in pending:
            if r.seen != r.count:
                raise RuntimeError("the data changed between passes (counts differ)")
            if r.vmin == r.vmax:  # all equal
                for k in r.ranks:
                    self._found[k] = r.vmin
                self._resolved.append((r.vmin, r.vmin, r.below, None))
            elif r.grid is None:
                vals = np.concatenate(r.values)
                vals.sort()
                for k in r.ranks:
                    self._found[k] = float(vals[k - r.below])
                self._resolved.append((float(vals[0]), float(vals[-1]), r.below, vals))
            else:
                self._split(r)
        self._start_pass()

    def _split(self, r: _Region) -> None:
        assert r.counts is not None and r.grid is not None
        lo, scale = r.grid
        starts = np.concatenate(([0], np.cumsum(r.counts)))
        cells = np.searchsorted(starts, np.asarray(r.ranks) - r.below, side="right") - 1
        by_cell: dict[int, list[int]] = {}
        for k, c in zip(r.ranks, cells.tolist(), strict=True):
            by_cell.setdefault(c, []).append(k)
        for cell in sorted(by_cell):
            ranks = by_cell[cell]
            # the end cells also hold the values the (clipped) grid does not span
            clo = r.vmin if cell == 0 else max(r.vmin, lo + cell / scale)
            chi = r.vmax if cell == CELLS - 1 else min(r.vmax, lo + (cell + 1) / scale)
            child = _Region(
                (*r.path, (lo, scale, cell)),
                r.below + int(starts[cell]),
                int(r.counts[cell]),
                ranks,
                clo,
                max(clo, chi),
            )
            self._settle(child)

    def _settle(self, r: _Region) -> None:
        """A constant feature is resolved at once; any other region waits for the next pass."""
        if not r.path and r.lo == r.hi:
            for k in r.ranks:
                self._found[k] = r.lo
            self._resolved.append((r.lo, r.hi, r.below, None))
        else:
            self._pending.append(r)

    # -- results -----------------------------------------------------------------------------
    def values(self) -> dict[int, float]:
        """``{rank: value}`` of every wanted rank (after the last pass)."""
        if self._pending:
            raise RuntimeError("more passes are needed")
        return dict(self._found)

    def below(self, v: float) -> int:
        """How many values are smaller than ``v``, for ``v`` one of the values found."""
        # The resolved regions hold disjoint ranges of values (a lower cell's values are all
        # smaller): the only candidate is the last one starting at or below ``v``.
        if len(self._by_lo) != len(self._resolved):
            self._by_lo = sorted(self._resolved, key=lambda res: res[0])
            self._los = [res[0] for res in self._by_lo]
        i = bisect.bisect_right(self._los, v) - 1
        if i >= 0:
            lo, hi, before, vals = self._by_lo[i]
            if lo <= v <= hi:
                if vals is None:
                    return before
                return before + int(np.searchsorted(vals, v, side="left"))
        raise KeyError(f"{v!r} is not one of the order statistics found")
