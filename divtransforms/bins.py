"""Bin specifications fixed by the reference, so that every window is comparable
(docs/concepts.md, "Bins").

Numeric bins (``NumericBins``) follow ``numpy.histogram``: K regular bins ``[e_i, e_i+1)`` with the
last one closed ``[e_K-1, e_K]``, plus an underflow bin (``x < e_0``) and an overflow bin
(``x > e_K``); ``-inf``/``+inf`` land in the tails. The count vector's layout is
``[underflow, b_0 .. b_K-1, overflow]`` (K + 2 entries).

Categorical bins (``CategoricalBins``) hold the reference's top-N values; the reference's other
values are pooled in ``__other__`` and values the reference never had go to ``__unseen__``. Layout:
``[v_0 .. v_N-1, __other__, __unseen__]``. Values are compared as strings (``str(v)``; booleans as
``true``/``false``, as Arrow casts them).

Missing values (None/null, NaN) are not samples: they are counted as ``n_missing``. A value of the
wrong type (text in a numeric column) is counted as ``n_invalid``. Every input value ends up in
exactly one bin or in one of those two counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from divtransforms.grid import Grid
from divtransforms.sketch import DEFAULT_FPR, BloomFilter
from divtransforms.values import (  # noqa: F401  (re-exported: the bins' value conversions)
    _canonical,
    _to_string_array,
    _where,
    dictionary_counts,
    to_float_array,
    value_counts,
)

__all__ = [
    "OTHER_LABEL",
    "UNSEEN_LABEL",
    "BinCounts",
    "BinSpec",
    "CategoricalBins",
    "NumericBins",
    "bin_spec_from_dict",
    "to_float_array",
]

OTHER_LABEL = "__other__"
UNSEEN_LABEL = "__unseen__"


class BinCounts(NamedTuple):
    """The result of binning one batch: integer counts per bin plus what was not binned."""

    counts: NDArray[np.int64]
    n_missing: int
    n_invalid: int


@dataclass(frozen=True, eq=False)
class NumericBins:
    """K regular bins from K + 1 strictly increasing finite edges, plus two tail bins."""

    edges: NDArray[np.float64]
    kind: str = field(default="numeric", init=False)

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.ndim != 1 or edges.shape[0] < 2:
            raise ValueError(f"numeric bins need at least 2 edges, got {edges.tolist()}")
        if not np.all(np.isfinite(edges)):
            raise ValueError("bin edges must be finite")
        if np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be strictly increasing")
        edges.setflags(write=False)
        object.__setattr__(self, "edges", edges)

    @classmethod
    def from_sample(
        cls, values: Any, strategy: str = "quantile", n_bins: int = 32, feature: str | None = None
    ) -> NumericBins:
        """Edges from a reference sample: ``quantile`` (sample values at equally spaced ranks,
        ``numpy.quantile(method="inverted_cdf")``; ties collapsed) or ``uniform``.

        Only finite values count; a sample with none raises ``ValueError``. A constant sample
        gets one bin ``[v, nextafter(v, +inf)]``.
        """
        x, _ = to_float_array(values, feature)
        x = x[np.isfinite(x)]
        return cls.from_finite(x, strategy=strategy, n_bins=n_bins, feature=feature)

    @classmethod
    def from_finite(
        cls,
        x: NDArray[np.float64],
        strategy: str = "quantile",
        n_bins: int = 32,
        feature: str | None = None,
    ) -> NumericBins:
        if n_bins < 1:
            raise ValueError(f"{_where(feature)}n_bins must be >= 1, got {n_bins}")
        if x.size == 0:
            raise ValueError(f"{_where(feature)}no finite values to place bin edges on")
        if strategy == "quantile":
            q = np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf")
            return cls.from_quantile_values(q)
        if strategy == "uniform":
            return cls.from_range(float(x.min()), float(x.max()), n_bins)
        raise ValueError(
            f"{_where(feature)}unknown bin strategy {strategy!r} "
            "(use 'quantile', 'uniform' or explicit edges)"
        )

    @classmethod
    def from_range(cls, lo: float, hi: float, n_bins: int) -> NumericBins:
        """``n_bins`` equal bins from ``lo`` to ``hi``; a constant sample (``lo == hi``) gets one
        bin ``[v, nextafter(v, +inf)]``."""
        if lo == hi:
            return cls(np.array([lo, np.nextafter(lo, math.inf)]))
        return cls.from_edges(np.linspace(lo, hi, n_bins + 1))

    @classmethod
    def from_quantile_values(cls, quantiles: Sequence[float] | NDArray[np.float64]) -> NumericBins:
        """Edges at a sample's quantiles (exact or approximate, from its minimum to its maximum;
        ties collapse); a constant sample gets one bin, as :meth:`from_range`."""
        q = np.asarray(quantiles, dtype=np.float64)
        if q.size and q[0] == q[-1]:
            return cls.from_range(float(q[0]), float(q[0]), 1)
        return cls.from_edges(q)

    @classmethod
    def from_edges(cls, edges: Sequence[float] | NDArray[np.float64]) -> NumericBins:
        """Explicit edges; duplicates (ties from quantiles) are collapsed."""
        e = np.unique(np.asarray(edges, dtype=np.float64))
        if e.shape[0] == 1:
            e = np.array([e[0], np.nextafter(e[0], math.inf)])
        return cls(e)

    @property
    def n_bins(self) -> int:
        return int(self.edges.shape[0]) + 1

    @property
    def labels(self) -> list[str]:
        e = [f"{v:.6g}" for v in self.edges.tolist()]
        inner = [f"[{a}, {b})" for a, b in itertools.pairwise(e)]
        inner[-1] = inner[-1][:-1] + "]"
        return [f"< {e[0]}", *inner, f"> {e[-1]}"]

    def count(self, values: Any, feature: str | None = None) -> BinCounts:
        """Histogram one batch: ``[underflow, regular bins, overflow]`` counts, missing, invalid."""
        x, n_invalid = to_float_array(values, feature)
        return self.count_floats(x, n_invalid)

    def count_floats(self, x: NDArray[np.float64], n_invalid: int = 0) -> BinCounts:
        """Histogram float64 values (NaN = missing) exactly as ``numpy.histogram`` would.

        Every count comes from comparisons of the values with the edges alone, as
        ``numpy.histogram``'s own sorting path does. Batches of at least ``GRID_MIN`` values take
        :func:`_grid_counts` (a lookup on a uniform grid, then a few exact comparisons; about
        6x faster); smaller ones, and edges whose range a grid cannot span, :meth:`_sort_counts`.
        Both give the same counts.
        """
        n = int(x.shape[0])
        grid = Grid.of(self.edges) if n >= self.GRID_MIN else None
        if grid is None:
            return self._sort_counts(x, n_invalid)
        counts, n_missing = grid.counts(x)
        return BinCounts(counts, n_missing, n_invalid)

    def _sort_counts(self, x: NDArray[np.float64], n_invalid: int = 0) -> BinCounts:
        """Blocks of ``BLOCK`` values are sorted (numpy's SIMD sort; a block stays in the CPU
        cache) and the edges are placed in each sorted block with one ``searchsorted``: bin
        ``j`` holds the values in ``[e_j, e_j+1)`` (the last bin is closed), the tails those
        below ``e_0`` and above ``e_K`` (``-inf``/``+inf`` included), and the NaN values sort
        last, so they are counted as missing without a separate pass.
        """
        e = self.edges
        k = e.shape[0]
        n = int(x.shape[0])
        # probes: the edges (side=left: values < e_j), then e_K (side=right) and NaN
        pos = np.empty(k + 2, dtype=np.intp)
        counts = np.zeros(k + 1, dtype=np.int64)
        block = np.empty(min(n, self.BLOCK), dtype=np.float64)
        n_missing = 0
        for lo in range(0, n, self.BLOCK):
            part = block[: min(self.BLOCK, n - lo)]
            np.copyto(part, x[lo : lo + part.shape[0]])
            part.sort()
            pos[:k] = np.searchsorted(part, e, side="left")
            pos[k] = np.searchsorted(part, e[-1], side="right")
            pos[k + 1] = np.searchsorted(part, np.nan, side="left")  # NaN sorts last
            counts[0] += pos[0]
            counts[1:k] += np.diff(pos[:k])
            counts[k - 1] += pos[k] - pos[k - 1]  # the last bin is closed: x == e_K
            counts[k] += pos[k + 1] - pos[k]
            n_missing += part.shape[0] - int(pos[k + 1])
        return BinCounts(counts, n_missing, n_invalid)

    # Values sorted at a time: 64k float64 (512 KiB) sort within the L2 cache.
    BLOCK: ClassVar[int] = 1 << 16
    # Batches this small are sorted: building the grid would cost more than it saves.
    GRID_MIN: ClassVar[int] = 2048

    def test_cells(self, reference_counts: Any) -> NDArray[np.int64]:
        """The cell of each bin in the homogeneity test: the tail bins merge into their
        neighbours. Quantile edges start and end at the reference's minimum and maximum, so its
        tail bins are empty by construction although values beyond them occur (about 1 in
        ``n_ref`` on each side); a cell with a reference count of 0 but a real probability would
        make any window with such a value look like drift."""
        k = self.n_bins - 2
        if k <= 0:
            return np.zeros(self.n_bins, dtype=np.int64)
        return np.clip(np.arange(self.n_bins) - 1, 0, k - 1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "numeric", "edges": [float(v) for v in self.edges.tolist()]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericBins) and np.array_equal(self.edges, other.edges)

    def __hash__(self) -> int:
        return hash(("numeric", self.edges.tobytes()))


@dataclass(frozen=True, eq=True)
class CategoricalBins:
    """Top-N reference vocabulary + pooled rest (``__other__``) + never-seen (``__unseen__``).

    ``other_values`` are the reference's values beyond the top N (kept up to ``max_other``
    distinct values); when the reference had more, ``track_unseen`` is False and a ``membership``
    sketch (:class:`divtransforms.sketch.BloomFilter`) of every reference value tells new values
    from the untracked rest (without one, from an old profile, new values pool in ``__other__``).
    """

    vocabulary: tuple[str, ...]
    other_values: tuple[str, ...] = ()
    track_unseen: bool = True
    # Every distinct reference value, when there were too many to keep by name: values outside
    # it count as ``__unseen__`` (a new value is taken for a reference one with its ``fpr``).
    membership: BloomFilter | None = None
    kind: str = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
        object.__setattr__(self, "other_values", tuple(str(v) for v in self.other_values))
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("categorical vocabulary has duplicates")
        if set(self.vocabulary) & set(self.other_values):
            raise ValueError("a value cannot be both in the vocabulary and pooled")

    @classmethod
    def from_sample(
        cls, values: Any, top_n: int = 50, max_other: int = 10_000, feature: str | None = None
    ) -> CategoricalBins:
        """Vocabulary = the ``top_n`` most frequent values (ties broken by value)."""
        counts = value_counts(values, feature)
        if not counts:
            raise ValueError(f"{_where(feature)}no non-missing values to build a vocabulary from")
        return cls.from_value_counts(counts, top_n=top_n, max_other=max_other)

    @classmethod
    def from_value_counts(
        cls,
        counts: Mapping[str, int],
        top_n: int = 50,
        max_other: int = 10_000,
        sketch_fpr: float = DEFAULT_FPR,
    ) -> CategoricalBins:
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {top_n}")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = tuple(k for k, _ in ranked[:top_n])
        rest = sorted(k for k, _ in ranked[top_n:])
        if len(rest) > max_other:
            sketch = BloomFilter.of(pa.array(list(counts), type=pa.string()), sketch_fpr)
            return cls(vocab, (), track_unseen=False, membership=sketch)
        return cls(vocab, tuple(rest), track_unseen=True)

    @property
    def n_bins(self) -> int:
        return len(self.vocabulary) + 2

    @property
    def labels(self) -> list[str]:
        return [*self.vocabulary, OTHER_LABEL, UNSEEN_LABEL]

    def count(self, values: Any, feature: str | None = None) -> BinCounts:
        coded = dictionary_counts(values)
        if coded is not None:
            return self._count_coded(*coded)
        arr = _to_string_array(values, feature)
        n_missing = arr.null_count
        counts = np.zeros(self.n_bins, dtype=np.int64)
        if len(arr) == n_missing:
            return BinCounts(counts, int(n_missing), 0)
        idx = pc.index_in(arr, value_set=pa.array(self.vocabulary, type=pa.string()))
        valid = pc.is_valid(arr)
        known = pc.is_valid(idx)
        idx_np = pc.drop_null(idx).to_numpy(zero_copy_only=False)
        counts[: len(self.vocabulary)] = np.bincount(idx_np, minlength=len(self.vocabulary))
        unknown = pc.filter(arr, pc.and_(valid, pc.invert(known)))
        n_unknown = len(unknown)
        if n_unknown:
            if self.track_unseen:
                pooled = int(
                    pc.sum(
                        pc.is_in(unknown, value_set=pa.array(self.other_values, type=pa.string()))
                    ).as_py()
                    or 0
                )
                counts[-2] = pooled
                counts[-1] = n_unknown - pooled
            elif self.membership is not None:
                pooled = int(np.count_nonzero(self.membership.contains(unknown)))
                counts[-2] = pooled
                counts[-1] = n_unknown - pooled
            else:
                counts[-2] = n_unknown
        return BinCounts(counts, int(n_missing), 0)

    def _count_coded(self, words: pa.Array, per: NDArray[np.int64], missing: int) -> BinCounts:
        """``count`` of a dictionary-encoded column: each distinct word is placed once and
        carries its number of rows (``values.dictionary_counts``)."""
        counts = np.zeros(self.n_bins, dtype=np.int64)
        k = len(self.vocabulary)
        idx = pc.index_in(words, value_set=pa.array(self.vocabulary, type=pa.string()))
        known = idx.is_valid().to_numpy(zero_copy_only=False)
        np.add.at(counts, pc.fill_null(idx, k).to_numpy()[known], per[known])
        unknown = ~known & (per > 0)
        n_unknown = int(per[unknown].sum())
        if n_unknown:
            rest = words.filter(pa.array(unknown))
            if self.track_unseen:
                other = pa.array(self.other_values, type=pa.string())
                pooled_words = pc.is_in(rest, value_set=other).to_numpy(zero_copy_only=False)
            elif self.membership is not None:
                pooled_words = np.asarray(self.membership.contains(rest), dtype=bool)
            else:
                pooled_words = np.ones(len(rest), dtype=bool)
            pooled = int(per[unknown][pooled_words].sum())
            counts[-2] = pooled
            counts[-1] = n_unknown - pooled
        return BinCounts(counts, missing, 0)

    @property
    def truncated(self) -> bool:
        """The reference had more values than the vocabulary holds."""
        return bool(self.other_values) or not self.track_unseen

    def test_cells(self, reference_counts: Any) -> NDArray[np.int64]:
        """The cell of each bin in the homogeneity test.

        A truncated vocabulary keeps the values that came out most frequent in the reference
        sample, so the reference overstates the share of those that only just made the cut (and
        understates ``__other__``), and ``__unseen__`` (0 in the reference by definition) has a
        real probability: values the reference sample missed. So the vocabulary values whose
        reference count is within 3 standard deviations (``sqrt(cut)``) of the smallest one kept
        share one cell with ``__other__`` and ``__unseen__``; every other value is a cell of its
        own. With a complete vocabulary every bin is its own cell.
        """
        counts = np.asarray(reference_counts, dtype=np.float64)
        k = len(self.vocabulary)
        cells = np.arange(self.n_bins, dtype=np.int64)
        if not self.truncated or k == 0:
            return cells
        cut = float(counts[:k].min())
        pooled = np.zeros(self.n_bins, dtype=bool)
        pooled[:k] = counts[:k] < cut + 3.0 * math.sqrt(cut) + 1.0
        pooled[k:] = True
        kept = np.flatnonzero(~pooled)
        cells[kept] = np.arange(kept.size)
        cells[pooled] = kept.size
        return cells

    def to_dict(self) -> dict[str, Any]:
        d = {
            "type": "categorical",
            "vocabulary": list(self.vocabulary),
            "other_values": list(self.other_values),
            "track_unseen": self.track_unseen,
        }
        if self.membership is not None:
            d["membership"] = self.membership.to_dict()
        return d


BinSpec = NumericBins | CategoricalBins


def bin_spec_from_dict(d: Mapping[str, Any]) -> BinSpec:
    """Rebuild a bin spec from :meth:`to_dict` output."""
    kind = d.get("type")
    if kind == "numeric":
        return NumericBins(np.asarray(d["edges"], dtype=np.float64))
    if kind == "categorical":
        sketch = d.get("membership")
        return CategoricalBins(
            tuple(d["vocabulary"]),
            tuple(d.get("other_values", ())),
            bool(d.get("track_unseen", True)),
            BloomFilter.from_dict(sketch) if sketch else None,
        )
    raise ValueError(f"unknown bin spec type {kind!r}")
