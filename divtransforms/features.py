"""One feature of a reference profile (:class:`FeatureProfile`: its kind, bins and reference
counts, its MLE fit), and :class:`ProfileView`, what the modules that ``profile`` builds on
(``window``, ``quality``, ``variation``) read of a whole profile. They live here, below
``profile``, so that those modules import them without a cycle; ``divtransforms.profile`` exports
them as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from divtransforms.bins import BinSpec, CategoricalBins
from divtransforms.histogram import Histogram
from divtransforms.mle import MLEAccumulator, MomentMLE, accumulator_for, accumulator_from_dict

__all__ = ["FeatureProfile", "ProfileError", "ProfileView"]


class ProfileError(ValueError):
    """A reference profile file cannot be used (version, hash, truncation, contents)."""

    __module__ = "divtransforms.profile"  # where users catch it, and tracebacks name it


@dataclass(frozen=True)
class FeatureProfile:
    """One feature of the reference: its kind, bins and counts, and (optionally) its MLE fit."""

    name: str
    kind: str
    histogram: Histogram
    family: str | None = None
    mle: MLEAccumulator | None = None
    reason: str | None = None  # why this family (inferred) or "set by the user"
    fit: Mapping[str, Any] | None = None  # inference.family_fit of the reference
    column_type: str | None = None  # quality.type_label of the reference column
    n_singletons: int | None = None  # categorical: distinct values seen once (unseen-rate test)

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(
                f"feature {self.name!r}: kind must be numeric or categorical, got {self.kind!r}"
            )
        if (self.family is None) != (self.mle is None):
            raise ValueError(f"feature {self.name!r}: family and MLE statistics go together")

    @property
    def bins(self) -> BinSpec:
        return self.histogram.spec

    def empty_mle(self) -> MLEAccumulator | None:
        """An empty accumulator of this feature's family (None when it has none)."""
        if self.family is None:
            return None
        spec = self.bins if isinstance(self.bins, CategoricalBins) else None
        acc = accumulator_for(self.family, spec)
        if isinstance(acc, MomentMLE) and isinstance(self.mle, MomentMLE):
            acc = acc.with_center(self.mle.center)
        return acc

    def to_dict(self) -> dict[str, Any]:
        h = self.histogram
        return {
            "kind": self.kind,
            "bins": h.spec.to_dict(),
            "counts": [int(c) for c in h.counts.tolist()],
            "n": h.n,
            "n_missing": h.n_missing,
            "n_invalid": h.n_invalid,
            "family": self.family,
            "mle": self.mle.to_dict() if self.mle is not None else None,
            "family_reason": self.reason,
            "fit": dict(self.fit) if self.fit is not None else None,
            **({"column_type": self.column_type} if self.column_type is not None else {}),
            **({"n_singletons": self.n_singletons} if self.n_singletons is not None else {}),
        }

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> FeatureProfile:
        hist = Histogram.from_dict(
            {
                "bins": d["bins"],
                "counts": d["counts"],
                "n_missing": d.get("n_missing", 0),
                "n_invalid": d.get("n_invalid", 0),
            }
        )
        if "n" in d and int(d["n"]) != hist.n:
            raise ValueError(f"feature {name!r}: n = {d['n']} but the counts sum to {hist.n}")
        mle = accumulator_from_dict(d["mle"]) if d.get("mle") else None
        singletons = d.get("n_singletons")
        return cls(
            name,
            d["kind"],
            hist,
            d.get("family"),
            mle,
            d.get("family_reason"),
            d.get("fit"),
            d.get("column_type"),
            int(singletons) if singletons is not None else None,
        )


class ProfileView(Protocol):
    """What ``window``, ``quality`` and ``variation`` read of a
    :class:`~divtransforms.profile.ReferenceProfile` (which satisfies it)."""

    @property
    def features(self) -> Mapping[str, FeatureProfile]: ...

    @property
    def known_columns(self) -> frozenset[str]: ...

    @property
    def reference_id(self) -> str: ...

    @property
    def windows(self) -> Any: ...
