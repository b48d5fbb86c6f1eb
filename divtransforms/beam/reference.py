"""Building a reference profile on Beam: ``BuildReference`` and its steps.

The same rules as ``ReferenceProfile.build`` (one process): bins from the reference values
(quantile edges exact or from Beam's ``ApproximateQuantiles``), vocabularies from exact value
counts, the family from ``divtransforms.inference.choose_family`` on mergeable value summaries, and
the profile's histograms and MLE statistics from the core's ``feature_stats_of_batch``, finished
by ``profile.finish_feature`` (the family's fit to the reference).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from divtransforms.beam.combiners import ExactValuesFn, NumericSummaryFn, VocabularyFn
from divtransforms.bins import CategoricalBins, NumericBins, to_float_array
from divtransforms.columns import column_of
from divtransforms.histogram import Histogram
from divtransforms.inference import choose_family, family_center
from divtransforms.kinds import infer_kinds
from divtransforms.mle import FAMILIES, accumulator_for
from divtransforms.moments import ValueSummary
from divtransforms.profile import FeatureProfile, ReferenceProfile, finish_feature
from divtransforms.quality import ABSENT
from divtransforms.settings import BuildSettings
from divtransforms.window import FeatureStats, feature_stats_of_batch

__all__ = ["BuildReference", "infer_kinds"]

_LOG = logging.getLogger(__name__)


def _numeric_values(batch: Any, names: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    for name in names:
        x, _ = to_float_array(column_of(batch, name), name)
        x = x[np.isfinite(x)]
        if x.size:
            yield name, x


def _make_specs(_, *, kinds, n_bins, strategy, top_n, edges, exact, approx, vocab, summary):
    specs: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind == "categorical":
            counts = vocab.get(name) or {}
            if not counts:
                raise ValueError(
                    f"feature {name!r}: no non-missing values to build a vocabulary from"
                )
            specs[name] = CategoricalBins.from_value_counts(counts, top_n=top_n)
        elif name in edges:
            specs[name] = NumericBins.from_edges(edges[name])
        elif name in exact:
            specs[name] = NumericBins.from_finite(
                exact[name], strategy=strategy, n_bins=n_bins, feature=name
            )
        elif strategy == "uniform":
            s = summary.get(name)
            if s is None or s.n == 0:
                raise ValueError(f"feature {name!r}: no finite values to place bin edges on")
            specs[name] = NumericBins.from_range(s.lo, s.hi, n_bins)  # as from_finite
        else:
            if name not in approx:
                raise ValueError(f"feature {name!r}: no finite values to place bin edges on")
            specs[name] = NumericBins.from_quantile_values(approx[name])  # as from_finite
    return specs


def _make_profile(stats_list, *, specs, kinds, families, summary, exact, source, vocab):
    features: dict[str, FeatureProfile] = {}
    for name, kind in kinds.items():
        fam = families.get(name, "auto")
        reason = None if fam is None else "set by the user"
        s = None
        if kind == "numeric":
            s = ValueSummary.of(exact[name]) if name in exact else summary.get(name)
            s = s if s is not None else ValueSummary()
        if fam == "auto":
            if kind == "categorical":
                fam, reason = "categorical", "categorical feature"
            else:
                choice = choose_family(s)
                fam, reason = choice.family, choice.reason
        acc = None
        if fam == "categorical":
            acc = accumulator_for(fam, specs[name])
        elif fam is not None:
            acc = accumulator_for(fam).with_center(family_center(fam, s))
        singletons = None
        if kind == "categorical":
            singletons = sum(1 for c in (vocab.get(name) or {}).values() if c == 1)
        features[name] = FeatureProfile(
            name, kind, Histogram.empty(specs[name]), fam, acc, reason, n_singletons=singletons
        )
    return features


class _StatsWithSpecsFn(beam.DoFn):
    """Per batch: histograms + MLE statistics on the specs (a side input) -> FeatureStats."""

    def process(self, batch, features):
        yield feature_stats_of_batch(features, batch)


def _finish_profile(
    stats: FeatureStats, features, source: str, ignored: Sequence[str] = ()
) -> ReferenceProfile:
    out = {}
    for name, fp in features.items():
        types = {t: c for t, c in stats.columns.get(name, {}).items() if t != ABSENT}
        out[name] = finish_feature(
            name,
            fp.kind,
            stats.histograms[name],
            fp.family,
            stats.mle.get(name),
            fp.reason,
            column_type=max(types, key=types.__getitem__) if types else None,
            n_singletons=fp.n_singletons,
        )
    return ReferenceProfile(out, source=source, ignored_columns=tuple(ignored))


class _WindowStatsFn(beam.DoFn):
    """Per batch: ``(window start, FeatureStats)`` of each reference window it has rows of (a
    windowed reference, ``divtransforms.variation``)."""

    def __init__(self, timestamp_column: str, size_micros: int, fmt: str | None) -> None:
        self._ts, self._size, self._fmt = timestamp_column, size_micros, fmt

    def process(self, batch, features):
        from divtransforms.window import split_by_window

        parts, _ = split_by_window(batch, self._ts, self._size, self._fmt)
        for start, part in parts:
            yield start, feature_stats_of_batch(features, part)


def _with_windows(
    profile: ReferenceProfile, windows: list[tuple[int, FeatureStats]], size_micros: int
) -> ReferenceProfile:
    from dataclasses import replace

    from divtransforms.variation import _summary_of

    feats = profile.features
    summary = _summary_of(
        profile,
        size_micros,
        None,
        ((s, {n: (st.histograms[n], st.mle.get(n)) for n in feats}) for s, st in windows),
    )
    return replace(profile, windows=summary)


class _MergeStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, stats):
        return stats if acc is None else acc.merge(stats)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            if a is not None:
                out = a if out is None else out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


@beam.typehints.with_output_types(ReferenceProfile)
class BuildReference(beam.PTransform):
    """Batches -> a PCollection holding one :class:`ReferenceProfile`.

    Two passes over the data: (1) numeric bin edges from Beam's ``ApproximateQuantiles``
    (``exact=True``: all finite values of a feature gathered on one worker and
    ``numpy.quantile``, as ``ReferenceProfile.build``; for small data), vocabularies from exact
    value counts, ranges and family hints from mergeable moments; (2) histograms and MLE
    statistics on those bins. ``kinds``: ``{feature: numeric|categorical}`` (the features);
    the rest is a :class:`divtransforms.settings.BuildSettings`, ``settings`` or its fields as
    keyword arguments (which win): ``families`` (``{feature: family|None}``, default inferred),
    ``n_bins``, ``strategy``, ``top_n``, ``edges``, ``exact``. With ``timestamp_column`` and
    ``window`` (a duration), the profile also keeps the reference's own windows
    (``divtransforms.variation``), from the same statistics per window.
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        settings: BuildSettings | None = None,
        *,
        source: str = "",
        ignored_columns: Sequence[str] = (),
        **options: Any,
    ) -> None:
        super().__init__()
        s = BuildSettings.of(settings, "BuildReference", **options)
        if isinstance(s.n_bins, Mapping):
            raise ValueError("n_bins per feature is for ReferenceProfile.build; give one number")
        families, edges, exact = s.families, s.edges, bool(s.exact)
        n_bins, strategy, top_n = s.n_bins, s.strategy, s.top_n
        timestamp_column, window, timestamp_format = (
            s.timestamp_column,
            s.window_seconds,
            s.timestamp_format,
        )
        if s.chunk is not None:
            raise ValueError("a reference of chunk windows is built in process (rows in order)")
        if window is not None and not timestamp_column:
            raise ValueError("a windowed reference needs the timestamp column of its event times")
        self._window = (
            (timestamp_column, round(window * 1e6), timestamp_format)
            if window is not None
            else None
        )
        bad = {n: k for n, k in kinds.items() if k not in ("numeric", "categorical")}
        if bad:
            raise ValueError(f"unknown feature kinds {bad} (numeric or categorical)")
        if strategy not in ("quantile", "uniform"):
            raise ValueError(f"unknown bin strategy {strategy!r} (quantile or uniform)")
        for name, fam in (families or {}).items():
            if fam not in (*FAMILIES, None, "auto"):
                raise ValueError(f"feature {name!r}: unknown MLE family {fam!r}")
        self._kinds = dict(kinds)
        self._families = dict(families or {})
        self._n_bins, self._strategy, self._top_n = n_bins, strategy, top_n
        self._edges = {k: list(v) for k, v in (edges or {}).items()}
        self._exact, self._source = exact, source
        self._ignored = tuple(ignored_columns)

    def display_data(self) -> dict[str, Any]:
        return {
            "features": ", ".join(self._kinds),
            "n_bins": self._n_bins,
            "strategy": self._strategy,
            "exact_quantiles": self._exact,
            "source": self._source,
        }

    def expand(self, batches):
        numeric = [n for n, k in self._kinds.items() if k == "numeric"]
        categorical = [n for n, k in self._kinds.items() if k == "categorical"]
        need_edges = [n for n in numeric if n not in self._edges]
        values = batches | "NumericValues" >> beam.FlatMap(_numeric_values, need_edges)
        if self._exact:
            exact = beam.pvalue.AsDict(
                values | "ExactValues" >> beam.CombinePerKey(ExactValuesFn())
            )
            approx = beam.pvalue.AsDict(batches.pipeline | "NoApprox" >> beam.Create([]))
        else:
            exact = beam.pvalue.AsDict(batches.pipeline | "NoExact" >> beam.Create([]))
            approx = beam.pvalue.AsDict(
                values
                | "AsLists" >> beam.MapTuple(lambda k, x: (k, x.tolist()))
                | "Quantiles"
                >> beam.ApproximateQuantiles.PerKey(self._n_bins + 1, input_batched=True)
            )
        vocab = beam.pvalue.AsSingleton(
            batches | "Vocabulary" >> beam.CombineGlobally(VocabularyFn(categorical))
        )
        summary = beam.pvalue.AsSingleton(
            batches | "Summary" >> beam.CombineGlobally(NumericSummaryFn(numeric))
        )
        start = batches.pipeline | "Start" >> beam.Create([None])
        specs = beam.pvalue.AsSingleton(
            start
            | "Specs"
            >> beam.Map(
                _make_specs,
                kinds=self._kinds,
                n_bins=self._n_bins,
                strategy=self._strategy,
                top_n=self._top_n,
                edges=self._edges,
                exact=exact,
                approx=approx,
                vocab=vocab,
                summary=summary,
            )
        )
        features = beam.pvalue.AsSingleton(
            start
            | "Features"
            >> beam.Map(
                _make_profile,
                specs=specs,
                kinds=self._kinds,
                families=self._families,
                summary=summary,
                exact=exact,
                source=self._source,
                vocab=vocab,
            )
        )
        profile = (
            batches
            | "Stats" >> beam.ParDo(_StatsWithSpecsFn(), features)
            | "Merge" >> beam.CombineGlobally(_MergeStatsFn())
            | "Profile" >> beam.Map(_empty_if_none, features, self._source, self._ignored)
        )
        if self._window is None:
            return profile
        ts, size, fmt = self._window
        windows = (
            batches
            | "WindowStats" >> beam.ParDo(_WindowStatsFn(ts, size, fmt), features)
            | "MergeWindows" >> beam.CombinePerKey(_MergeStatsFn())
            | "AllWindows" >> beam.combiners.ToList()
        )
        return profile | "WithWindows" >> beam.Map(
            _with_windows, beam.pvalue.AsSingleton(windows), size
        )


def _empty_if_none(
    stats: FeatureStats | None, features, source: str, ignored: Sequence[str] = ()
) -> ReferenceProfile:
    if stats is None:
        stats = FeatureStats.empty(features)
    return _finish_profile(stats, features, source, ignored)
