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

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from divtransforms.bins import to_float_array
from divtransforms.columns import column_of, num_rows
from divtransforms.moments import ValueSummary
from divtransforms.profile import FeatureProfile, ReferenceProfile
from divtransforms.window import FeatureStats, feature_stats_of_batch

__all__ = ["ExactValuesFn", "FeatureStatsFn", "NumericSummaryFn", "VocabularyFn"]

NAMESPACE = "divtransforms"


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


class FeatureStatsFn(beam.CombineFn):
    """Batches -> :class:`FeatureStats` (histograms + MLE statistics of every feature)."""

    def __init__(
        self,
        profile: ReferenceProfile | Mapping[str, FeatureProfile],
        known: Collection[str] | None = None,
    ) -> None:
        self._features = dict(
            profile.features if isinstance(profile, ReferenceProfile) else profile
        )
        self._known = frozenset(known) if known is not None else None
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
            stats = feature_stats_of_batch(self._features, part, self._known)
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
        from divtransforms.values import add_value_counts

        for name in self._features:
            add_value_counts(acc[name], column_of(batch, name), name)
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
