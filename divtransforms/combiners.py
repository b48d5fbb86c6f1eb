"""Beam CombineFns: thin adapters over the core histograms, bins and MLE accumulators.

Each ``add_input`` takes a whole batch (a ``pyarrow.RecordBatch``/``Table`` or a dict of numpy
arrays) and handles every feature of the reference at once, so the data is read once (as TFDV's
statistics generators do). Accumulators are small and merge exactly (integer counts, Chan et al.
moments), so any split of the data across bundles and workers gives the same result.

- :class:`FeatureStatsFn`: per-feature ``Histogram`` on the reference's bins + MLE accumulator.
- :class:`VocabularyFn`: value counts of categorical features (reference vocabularies).
- :class:`NumericSummaryFn`: range and family hints of numeric features (reference building).
- :class:`ExactValuesFn`: all finite values of one feature (exact quantile edges, small data).

Beam metrics (namespace ``divtransforms``): ``rows``, ``samples`` (binned), ``missing`` and
``invalid`` (summed over features), and ``missing/<feature>``, ``invalid/<feature>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from divtransforms.bins import to_float_array
from divtransforms.histogram import Histogram
from divtransforms.mle import CategoricalMLE, MLEAccumulator, MomentMLE
from divtransforms.moments import ValueSummary
from divtransforms.profile import FeatureProfile, ReferenceProfile

__all__ = [
    "ExactValuesFn",
    "FeatureStats",
    "FeatureStatsFn",
    "MissingFeatureError",
    "NumericSummaryFn",
    "VocabularyFn",
    "batch_columns",
    "column_of",
]

NAMESPACE = "divtransforms"


class MissingFeatureError(ValueError):
    """A batch lacks a feature column the reference needs."""


def batch_columns(batch: Any) -> list[str]:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return list(batch.schema.names)
    return [str(k) for k in batch]


def column_of(batch: Any, name: str) -> Any:
    """One column of a RecordBatch/Table/dict, or a clear error naming the feature."""
    if isinstance(batch, pa.RecordBatch | pa.Table):
        idx = batch.schema.get_field_index(name)
        if idx >= 0:
            return batch.column(idx)
    elif isinstance(batch, Mapping) and name in batch:
        return batch[name]
    raise MissingFeatureError(
        f"feature {name!r} is not a column of the input (columns: "
        f"{', '.join(batch_columns(batch))})"
    )


# Columns are processed in slices of this many rows: a slice's temporaries (8 bytes a row each)
# then stay in the CPU cache, which makes binning and the MLE passes several times faster than
# on slices of a million rows.
CHUNK_ROWS = 1 << 16


def _slices(batch: Any, size: int) -> Iterable[Any]:
    n = num_rows(batch)
    if n <= size:
        yield batch
        return
    for start in range(0, n, size):
        if isinstance(batch, pa.RecordBatch | pa.Table):
            yield batch.slice(start, size)
        else:
            yield {k: v[start : start + size] for k, v in batch.items()}


def num_rows(batch: Any) -> int:
    if isinstance(batch, pa.RecordBatch | pa.Table):
        return batch.num_rows
    return len(next(iter(batch.values()))) if batch else 0


# -- fast exact numeric binning -------------------------------------------------------------


# -- histograms + MLE on the reference's bins ------------------------------------------------------


@dataclass
class FeatureStats:
    """The accumulator: rows read and, per feature, a ``Histogram`` and an MLE accumulator."""

    rows: int = 0
    histograms: dict[str, Histogram] = field(default_factory=dict)
    mle: dict[str, MLEAccumulator | None] = field(default_factory=dict)

    @classmethod
    def empty(cls, features: Mapping[str, FeatureProfile]) -> FeatureStats:
        return cls(
            0,
            {n: Histogram.empty(fp.bins) for n, fp in features.items()},
            {n: fp.empty_mle() for n, fp in features.items()},
        )

    def merge(self, other: FeatureStats) -> FeatureStats:
        return FeatureStats(
            self.rows + other.rows,
            {n: h.merge(other.histograms[n]) for n, h in self.histograms.items()},
            {
                n: (m.merge(other.mle[n]) if m is not None else None)  # type: ignore[arg-type]
                for n, m in self.mle.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tests, debugging)."""
        return {
            "rows": self.rows,
            "histograms": {n: h.to_dict() for n, h in self.histograms.items()},
            "mle": {n: (m.to_dict() if m is not None else None) for n, m in self.mle.items()},
        }


def feature_stats_of_batch(
    features: Mapping[str, FeatureProfile],
    batch: Any,
) -> FeatureStats:
    """Histograms and MLE statistics of one batch, all features, each column converted once.

    Equal to ``Histogram.of(spec, column)`` and ``accumulator.add(column)`` (categorical MLE:
    ``add_counts`` of the histogram) on every feature, as the core does.
    """
    hists: dict[str, Histogram] = {}
    mles: dict[str, MLEAccumulator | None] = {}
    for name, fp in features.items():
        col = column_of(batch, name)
        spec = fp.bins
        if fp.kind == "numeric":
            x, n_bad = to_float_array(col, name)
            c = spec.count_floats(x, n_bad)  # type: ignore[union-attr]
            hists[name] = Histogram(spec, c.counts, c.n_missing, c.n_invalid)
            mle = fp.empty_mle()
            if isinstance(mle, MomentMLE):
                mle = mle.add(x, name)
                if n_bad:  # values of the wrong type are invalid for the family too
                    mle = replace(mle, n_invalid=mle.n_invalid + n_bad)
            mles[name] = mle
        else:
            hist = Histogram.of(spec, col, name)
            hists[name] = hist
            mle = fp.empty_mle()
            if isinstance(mle, CategoricalMLE):
                mle = mle.add_counts(hist.counts)
            mles[name] = mle
    return FeatureStats(num_rows(batch), hists, mles)


class FeatureStatsFn(beam.CombineFn):
    """Batches -> :class:`FeatureStats` (histograms + MLE statistics of every feature)."""

    def __init__(self, profile: ReferenceProfile | Mapping[str, FeatureProfile]) -> None:
        self._features = dict(
            profile.features if isinstance(profile, ReferenceProfile) else profile
        )
        self._rows = Metrics.counter(NAMESPACE, "rows")
        self._samples = Metrics.counter(NAMESPACE, "samples")
        self._missing = Metrics.counter(NAMESPACE, "missing")
        self._invalid = Metrics.counter(NAMESPACE, "invalid")
        self._per_feature = {
            n: (
                Metrics.counter(NAMESPACE, f"missing/{n}"),
                Metrics.counter(NAMESPACE, f"invalid/{n}"),
            )
            for n in self._features
        }

    def create_accumulator(self) -> FeatureStats:
        return FeatureStats.empty(self._features)

    def add_input(self, accumulator: FeatureStats, batch: Any) -> FeatureStats:
        for part in _slices(batch, CHUNK_ROWS):
            stats = feature_stats_of_batch(self._features, part)
            self._count(stats)
            accumulator = accumulator.merge(stats)
        return accumulator

    def _count(self, stats: FeatureStats) -> None:
        self._rows.inc(stats.rows)
        for name, h in stats.histograms.items():
            self._samples.inc(h.n)
            if h.n_missing:
                self._missing.inc(h.n_missing)
                self._per_feature[name][0].inc(h.n_missing)
            if h.n_invalid:
                self._invalid.inc(h.n_invalid)
                self._per_feature[name][1].inc(h.n_invalid)

    def merge_accumulators(self, accumulators: Iterable[FeatureStats]) -> FeatureStats:
        it = iter(accumulators)
        out = next(it)
        for acc in it:
            out = out.merge(acc)
        return out

    def extract_output(self, accumulator: FeatureStats) -> FeatureStats:
        return accumulator


# -- reference building --


class VocabularyFn(beam.CombineFn):
    """Batches -> ``{feature: {value: count}}`` for categorical features (values as strings)."""

    def __init__(self, features: Sequence[str]) -> None:
        self._features = list(features)

    def create_accumulator(self) -> dict[str, dict[str, int]]:
        return {n: {} for n in self._features}

    def add_input(self, acc: dict[str, dict[str, int]], batch: Any) -> dict[str, dict[str, int]]:
        from divtransforms.bins import _to_string_array

        for name in self._features:
            arr = _to_string_array(column_of(batch, name), name).drop_null()
            if len(arr) == 0:
                continue
            vc = pc.value_counts(arr)
            counts = acc[name]
            for v, c in zip(
                vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
            ):
                counts[v] = counts.get(v, 0) + c
        return acc

    def merge_accumulators(self, accumulators):
        it = iter(accumulators)
        out = next(it)
        for acc in it:
            for name, counts in acc.items():
                target = out[name]
                for v, c in counts.items():
                    target[v] = target.get(v, 0) + c
        return out

    def extract_output(self, acc):
        return acc


class NumericSummaryFn(beam.CombineFn):
    """Batches -> ``{feature: ValueSummary}`` for numeric features (family inference, ranges)."""

    def __init__(self, features: Sequence[str]) -> None:
        self._features = list(features)

    def create_accumulator(self) -> dict[str, ValueSummary]:
        return {n: ValueSummary() for n in self._features}

    def add_input(self, acc, batch):
        for name in self._features:
            x, _ = to_float_array(column_of(batch, name), name)
            acc[name] = acc[name].merge(ValueSummary.of(x))
        return acc

    def merge_accumulators(self, accumulators):
        it = iter(accumulators)
        out = dict(next(it))
        for acc in it:
            out = {n: s.merge(acc[n]) for n, s in out.items()}
        return out

    def extract_output(self, acc):
        return acc


class ExactValuesFn(beam.CombineFn):
    """Values of one feature -> all its finite values in one array (small data only)."""

    def create_accumulator(self) -> list[np.ndarray]:
        return []

    def add_input(self, acc: list[np.ndarray], values: np.ndarray) -> list[np.ndarray]:
        acc.append(np.asarray(values, dtype=np.float64))
        return acc

    def merge_accumulators(self, accumulators):
        return [a for acc in accumulators for a in acc]

    def compact(self, acc):
        return [np.concatenate(acc)] if len(acc) > 1 else acc

    def extract_output(self, acc) -> np.ndarray:
        return np.concatenate(acc) if acc else np.empty(0, dtype=np.float64)
