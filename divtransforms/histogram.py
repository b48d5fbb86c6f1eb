"""Histograms: an integer count vector on a bin spec, plus what could not be binned.

Merging two histograms on the same spec adds counts: exact, associative and commutative, so a
histogram of a concatenation equals the merge of the histograms of its parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from divtransforms.bins import BinSpec, bin_spec_from_dict
from divtransforms.divergence import normalize

__all__ = ["Histogram"]


@dataclass(frozen=True, eq=False)
class Histogram:
    """Counts per bin (``spec.n_bins`` int64 entries), ``n_missing`` and ``n_invalid``."""

    spec: BinSpec
    counts: NDArray[np.int64]
    n_missing: int = 0
    n_invalid: int = 0

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.dtype.kind not in "iu":
            if not np.all(np.equal(np.mod(counts, 1), 0)):
                raise ValueError("histogram counts must be integers")
        counts = counts.astype(np.int64)
        if counts.shape != (self.spec.n_bins,):
            raise ValueError(
                f"histogram has {counts.shape} counts for a spec of {self.spec.n_bins} bins"
            )
        if np.any(counts < 0) or self.n_missing < 0 or self.n_invalid < 0:
            raise ValueError("histogram counts must be non-negative")
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "n_missing", int(self.n_missing))
        object.__setattr__(self, "n_invalid", int(self.n_invalid))

    @classmethod
    def empty(cls, spec: BinSpec) -> Histogram:
        return cls(spec, np.zeros(spec.n_bins, dtype=np.int64))

    @classmethod
    def of(cls, spec: BinSpec, values: Any, feature: str | None = None) -> Histogram:
        """Histogram of one batch of values on ``spec``."""
        c = spec.count(values, feature)
        return cls(spec, c.counts, c.n_missing, c.n_invalid)

    def add(self, values: Any, feature: str | None = None) -> Histogram:
        """A new histogram with one more batch of values counted."""
        return self.merge(Histogram.of(self.spec, values, feature))

    def merge(self, other: Histogram) -> Histogram:
        if other.spec != self.spec:
            raise ValueError("cannot merge histograms on different bin specs")
        return Histogram(
            self.spec,
            self.counts + other.counts,
            self.n_missing + other.n_missing,
            self.n_invalid + other.n_invalid,
        )

    @property
    def n(self) -> int:
        """Samples in bins (missing and invalid values are not samples)."""
        return int(self.counts.sum())

    @property
    def n_total(self) -> int:
        """Every value read: binned + missing + invalid."""
        return self.n + self.n_missing + self.n_invalid

    def probabilities(self, alpha: float = 0.0) -> NDArray[np.float64]:
        """Bin probabilities with ``alpha`` pseudo-counts per bin (raises if empty and alpha=0)."""
        return normalize(self.counts, alpha, name="histogram")

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.spec.to_dict(),
            "counts": [int(c) for c in self.counts.tolist()],
            "n_missing": self.n_missing,
            "n_invalid": self.n_invalid,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        return cls(
            bin_spec_from_dict(d["bins"]),
            np.asarray(d["counts"], dtype=np.int64),
            int(d.get("n_missing", 0)),
            int(d.get("n_invalid", 0)),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Histogram)
            and self.spec == other.spec
            and np.array_equal(self.counts, other.counts)
            and self.n_missing == other.n_missing
            and self.n_invalid == other.n_invalid
        )

    __hash__ = None  # type: ignore[assignment]
