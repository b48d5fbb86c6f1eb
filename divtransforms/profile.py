"""The reference profile: bins, reference counts and MLE statistics per feature
(docs/concepts.md, "Reference profiles").

Saved as a versioned JSON document with a SHA-256 content hash over its canonical form; loading
checks the version and the hash and names the file and the problem when either is wrong. The
profile's ``reference_id`` (``ref-`` + 16 hex digits of the hash) identifies it in drift records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from divtransforms.bins import (
    BinSpec,
    CategoricalBins,
    NumericBins,
    to_float_array,
    value_counts,
)
from divtransforms.columns import as_columns, column_kind
from divtransforms.features import FeatureProfile, ProfileError
from divtransforms.histogram import Histogram
from divtransforms.inference import choose_family, family_center, family_fit
from divtransforms.kinds import feature_kinds
from divtransforms.mle import (
    FAMILIES,
    MLEAccumulator,
    MomentMLE,
    accumulator_for,
)
from divtransforms.moments import ValueSummary
from divtransforms.quality import column_role, type_label
from divtransforms.records import atomic_write_bytes
from divtransforms.settings import BuildSettings

__all__ = ["PROFILE_SCHEMA_VERSION", "FeatureProfile", "ProfileError", "ReferenceProfile"]

PROFILE_SCHEMA_VERSION = 3
# Versions this divtransforms reads. Version 3 adds, per feature, the column's type label and
# (categorical) the number of values seen once, a vocabulary's membership sketch, and the
# columns the reference left out; a version-2 profile reads as it was written (same hash, same
# reference_id), without those.
READABLE_VERSIONS = (2, 3, 4)
# Version 4 is version 3 plus the reference's own windows (``windows``: the windowed summary of
# ``divtransforms.variation``); a profile without them is still written as version 3.
WINDOWED_SCHEMA_VERSION = 4
_log = logging.getLogger(__name__)


def _canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature reference distributions, the yardstick every window is compared against."""

    features: dict[str, FeatureProfile]
    source: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # Columns of the reference data that are not features (event times, identifiers, excluded):
    # a check does not report them as new columns.
    ignored_columns: tuple[str, ...] = ()
    schema_version: int = PROFILE_SCHEMA_VERSION
    # The reference's own windows (``divtransforms.variation.WindowedSummary``): version 4.
    windows: Any = None

    def __post_init__(self) -> None:
        if self.windows is not None and self.schema_version < WINDOWED_SCHEMA_VERSION:
            object.__setattr__(self, "schema_version", WINDOWED_SCHEMA_VERSION)

    # -- identity --------------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        body = {
            "schema_version": self.schema_version,
            "kind": "divtransforms.reference_profile",
            "created_at": self.created_at,
            "source": self.source,
            "features": {name: fp.to_dict() for name, fp in sorted(self.features.items())},
        }
        if self.schema_version >= 3:
            body["ignored_columns"] = sorted(self.ignored_columns)
        if self.windows is not None:
            body["windows"] = self.windows.to_dict()
        return body

    @property
    def known_columns(self) -> frozenset[str]:
        """The columns a check expects: the features and the columns the reference ignored."""
        return frozenset({*self.features, *self.ignored_columns})

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON body, computed once per profile (a profile is not
        changed after it is made; a 1,000-feature body takes tens of milliseconds to encode,
        and every record carries the ``reference_id``)."""
        return "sha256:" + hashlib.sha256(_canonical_json(self._body())).hexdigest()

    @property
    def reference_id(self) -> str:
        return "ref-" + self.content_hash.split(":", 1)[1][:16]

    def to_dict(self) -> dict[str, Any]:
        doc = self._body()
        doc["content_hash"] = self.content_hash
        return doc

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path | str:
        """Write the profile as JSON atomically (a local path or a bucket URL)."""
        doc = self.to_dict()
        data = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode() + b"\n"
        return atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReferenceProfile:
        """Read and verify a profile: a wrong version, bad JSON or a hash mismatch is an error."""
        from divtransforms import storage

        p = storage.location(path)
        try:
            raw = storage.read_bytes(p)
        except storage.StorageNotFound:
            raise ProfileError(f"reference profile {p}: file not found") from None
        except storage.StorageError as exc:
            raise ProfileError(f"reference profile {p}: {exc}") from None
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(
                f"reference profile {p}: not valid JSON (truncated or corrupt?): {exc}"
            ) from None
        return cls.from_dict(doc, origin=str(p))

    @classmethod
    def from_dict(cls, doc: Any, origin: str = "<dict>") -> ReferenceProfile:
        if not isinstance(doc, dict) or doc.get("kind") != "divtransforms.reference_profile":
            raise ProfileError(f"reference profile {origin}: not a divtransforms reference profile")
        version = doc.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ProfileError(
                f"reference profile {origin}: schema version {version!r} is not "
                f"supported (this divtransforms reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}); rebuild it with `divmon reference "
                "build`"
            )
        stored = doc.get("content_hash")
        try:
            features = {
                name: FeatureProfile.from_dict(name, fd) for name, fd in doc["features"].items()
            }
            windows = None
            if doc.get("windows") is not None:
                from divtransforms.variation import WindowedSummary

                windows = WindowedSummary.from_dict(
                    doc["windows"], {n: fp.bins.n_bins for n, fp in features.items()}
                )
            profile = cls(
                features,
                source=str(doc.get("source", "")),
                created_at=str(doc["created_at"]),
                ignored_columns=tuple(doc.get("ignored_columns", ())),
                schema_version=int(version),
                windows=windows,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"reference profile {origin}: malformed contents: {exc}") from None
        if stored != profile.content_hash:
            raise ProfileError(
                f"reference profile {origin}: content hash mismatch (stored "
                f"{stored}, computed {profile.content_hash}): the file was "
                "modified or corrupted after it was written"
            )
        return profile

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReferenceProfile) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.content_hash)

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        data: Any,
        settings: BuildSettings | None = None,
        *,
        source: str = "",
        **options: Any,
    ) -> ReferenceProfile:
        """Build a profile from in-memory data (one process; use ``BuildReference`` on Beam).

        The build's settings are a :class:`divtransforms.settings.BuildSettings`: ``settings``,
        or its fields as keyword arguments (which win over ``settings``), e.g.
        ``ReferenceProfile.build(data, exclude=["ts"], n_bins=16)``; ``source`` describes the
        data in the profile.

        ``features`` defaults to every numeric or categorical column except ``exclude``;
        ``kinds`` overrides the kind inferred from the column type; ``families`` sets the MLE
        family per feature (inferred when absent; ``None`` disables it); ``edges`` gives explicit
        bin edges for numeric features.

        A windowed reference (``divtransforms.variation``): with ``timestamp_column`` and
        ``window`` (``"1h"``, seconds, a timedelta: the monitor's window), or ``chunk`` (rows, for
        data without time), the profile also keeps the reference's own windows, from which the
        tests learn how much windows vary when nothing changed.
        """
        st = BuildSettings.of(settings, "build", **options)
        features, n_bins, strategy, top_n = st.features, st.n_bins, st.strategy, st.top_n
        cols = as_columns(data)
        families, edges = dict(st.families or {}), dict(st.edges or {})
        kinds = feature_kinds(
            list(cols),
            lambda name: column_kind(cols[name]),
            features=features,
            kinds=st.kinds,
            exclude=st.exclude,
            role_of=lambda name: column_role(cols[name]),
        )
        out: dict[str, FeatureProfile] = {}
        for name, kind in kinds.items():
            nb = n_bins.get(name, 32) if isinstance(n_bins, Mapping) else n_bins
            out[name] = build_feature(
                name,
                cols[name],
                kind=kind,
                family=families.get(name, "auto"),
                n_bins=nb,
                strategy=strategy,
                edges=edges.get(name),
                top_n=top_n,
            )
        profile = cls(out, source=source, ignored_columns=tuple(n for n in cols if n not in out))
        if st.windowed:
            profile = profile.with_windows(
                cols,
                timestamp_column=st.timestamp_column,
                window=st.window,
                chunk=st.chunk,
                timestamp_format=st.timestamp_format,
            )
        return profile

    def with_windows(
        self,
        data: Any,
        *,
        timestamp_column: str | None = None,
        window: str | float | Any = None,
        chunk: int | None = None,
        timestamp_format: str | None = None,
    ) -> ReferenceProfile:
        """This profile with the windowed summary of ``data`` (the data it was built from, on
        its bins and families; see :meth:`build`)."""
        from dataclasses import replace

        from divtransforms.columns import parse_duration
        from divtransforms.variation import WindowedSummaryBuilder

        builder = WindowedSummaryBuilder(
            self,
            timestamp_column=timestamp_column,
            window=parse_duration(window) if window is not None else None,
            chunk=chunk,
            timestamp_format=timestamp_format,
        )
        builder.add(data)
        if builder.excluded:
            _log.warning(
                "reference windows: %d rows without a usable event time are left out",
                builder.excluded,
            )
        return replace(self, windows=builder.summary())


def build_feature(
    name: str,
    values: Any,
    *,
    kind: str,
    family: str | None = "auto",
    n_bins: int = 32,
    strategy: str = "quantile",
    edges: Any = None,
    top_n: int = 50,
) -> FeatureProfile:
    """Profile one feature from its reference values."""
    spec: BinSpec
    reason = None if family is None else "set by the user"
    summary = None
    singletons = None
    if kind == "numeric":
        if edges is not None:
            spec = NumericBins.from_edges(edges)
        else:
            spec = NumericBins.from_sample(values, strategy=strategy, n_bins=n_bins, feature=name)
        summary = ValueSummary.of(to_float_array(values, name)[0])
        if family == "auto":
            choice = choose_family(summary)
            family, reason = choice.family, choice.reason
    elif kind == "categorical":
        counts = value_counts(values, name)
        if not counts:
            raise ValueError(f"feature {name!r}: no non-missing values to build a vocabulary from")
        spec = CategoricalBins.from_value_counts(counts, top_n=top_n)
        singletons = sum(1 for c in counts.values() if c == 1)
        if family == "auto":
            family, reason = "categorical", "categorical feature"
    else:
        raise ValueError(f"feature {name!r}: unknown kind {kind!r}")
    check_family(name, kind, family)
    hist = Histogram.of(spec, values, name)
    mle = None
    if family == "categorical":
        assert isinstance(spec, CategoricalBins)
        mle = accumulator_for("categorical", spec).add_counts(hist.counts)  # type: ignore[union-attr]
    elif family is not None:
        assert summary is not None
        acc = accumulator_for(family)
        assert isinstance(acc, MomentMLE)
        mle = acc.with_center(family_center(family, summary)).add(values, name)
        if mle.n_invalid:
            _log.warning(
                "feature %r: %d reference values are invalid for the %s family and are "
                "not in its fit",
                name,
                mle.n_invalid,
                family,
            )
    return finish_feature(
        name,
        kind,
        hist,
        family,
        mle,
        reason,
        column_type=type_label(values),
        n_singletons=singletons,
    )


def check_family(name: str, kind: str, family: str | None) -> None:
    """A family fits the feature's kind (and exists)."""
    if family is not None and family not in FAMILIES:
        raise ValueError(
            f"feature {name!r}: unknown MLE family {family!r}; choose one of {', '.join(FAMILIES)}"
        )
    if family == "categorical" and kind != "categorical":
        raise ValueError(f"feature {name!r}: the categorical family needs a categorical feature")
    if kind == "categorical" and family not in (None, "categorical"):
        raise ValueError(f"feature {name!r}: a categorical feature takes the categorical family")


def finish_feature(
    name: str,
    kind: str,
    hist: Histogram,
    family: str | None,
    mle: MLEAccumulator | None,
    reason: str | None,
    *,
    column_type: str | None = None,
    n_singletons: int | None = None,
) -> FeatureProfile:
    """The feature's profile with the fit of its numeric family to the reference histogram."""
    fit = None
    if isinstance(mle, MomentMLE) and isinstance(hist.spec, NumericBins):
        fit = family_fit(hist.spec.edges, hist.counts, mle.estimate())
    return FeatureProfile(name, kind, hist, family, mle, reason, fit, column_type, n_singletons)
