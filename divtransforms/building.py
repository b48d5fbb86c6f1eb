"""Building a reference profile in passes over re-readable batches, in bounded memory (no Beam).

The same rules as Beam's ``BuildReference`` (``divtransforms.beam.reference``): vocabularies from
exact value counts, ranges and family hints from mergeable value summaries, the family from
``inference.choose_family``, histograms and MLE statistics as ``window.feature_stats_of_batch``
computes them, the family's fit by ``profile.finish_feature``. Quantile edges are exact (the
values ``numpy.quantile(x, q, method="inverted_cdf")`` gives on the whole column) and found by
``divtransforms.quantiles.ExactQuantiles`` from counts, so no column is ever held whole:

- pass 1: value summaries (numeric) and value counts (categorical), every column, and the first
  count of the quantile search (``quantiles.CellCounts``, on a grid set by the first batch);
- pass 2: histograms and MLE statistics of every feature whose bins are known (categorical,
  uniform or explicit edges), MLE statistics of the others and the values of the cells that
  hold a wanted rank;
- pass 3 (rarely, and more): only the columns whose quantiles are not resolved yet (a cell too
  full to gather is counted on a finer grid).

The caller owns the reading: ``for each pass: add(batch) for every batch; end_pass()`` while
``columns()`` is not empty, then ``profile()``. Memory is the summaries, counts and a few small
slices of values per feature, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from divtransforms import parallel
from divtransforms.bins import (
    BinSpec,
    CategoricalBins,
    NumericBins,
    to_float_array,
)
from divtransforms.columns import column_of, num_rows
from divtransforms.histogram import Histogram
from divtransforms.inference import choose_family, family_center
from divtransforms.mle import FAMILIES, MLEAccumulator, MomentMLE, accumulator_for
from divtransforms.moments import ValueSummary
from divtransforms.profile import FeatureProfile, ReferenceProfile, check_family, finish_feature
from divtransforms.quality import ABSENT, merge_type_counts, type_label
from divtransforms.quantiles import CellCounts, ExactQuantiles, inverted_cdf_ranks
from divtransforms.settings import BuildSettings
from divtransforms.values import add_value_counts
from divtransforms.window import feature_stats_of_batch

__all__ = ["GATHER_BYTES", "ProfileBuilder"]

GATHER_BYTES = 64 << 20


class ProfileBuilder:
    """A reference profile from passes over batches (see the module docstring).

    ``kinds``: ``{feature: numeric|categorical}`` (the features, chosen already); ``settings``
    (:class:`divtransforms.settings.BuildSettings`): ``families`` (``{feature: family|None}``,
    default inferred), the bins (``n_bins``, ``strategy``, ``top_n``, explicit numeric
    ``edges``) and the windows; ``source`` and ``ignored_columns`` go into the profile.

    A windowed reference (``divtransforms.variation``): with ``timestamp_column`` and ``window``
    (a duration), or ``chunk`` (rows), one more pass over every feature, once the bins are known,
    summarises the reference's own windows; the batches of that pass also need the
    :meth:`extra_columns` (the event time).
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        settings: BuildSettings | None = None,
        *,
        source: str = "",
        ignored_columns: Sequence[str] = (),
    ) -> None:
        s = settings if settings is not None else BuildSettings()
        if isinstance(s.n_bins, Mapping):
            raise ValueError("n_bins per feature is for ReferenceProfile.build; give one number")
        families, edges = s.families, s.edges
        n_bins, strategy, top_n = s.n_bins, s.strategy, s.top_n
        timestamp_column, window, chunk = s.timestamp_column, s.window_seconds, s.chunk
        timestamp_format = s.timestamp_format
        if window is not None and chunk is not None:
            raise ValueError("a windowed reference has a window or a chunk, not both")
        if window is not None and not timestamp_column:
            raise ValueError("a windowed reference needs the timestamp column of its event times")
        self._windowing: dict[str, Any] | None = (
            {
                "timestamp_column": timestamp_column,
                "window": window,
                "chunk": chunk,
                "timestamp_format": timestamp_format,
            }
            if window is not None or chunk is not None
            else None
        )
        self._windows: Any = None  # the WindowedSummaryBuilder of the last pass
        self._windows_done = False
        bad = {n: k for n, k in kinds.items() if k not in ("numeric", "categorical")}
        if bad:
            raise ValueError(f"unknown feature kinds {bad} (numeric or categorical)")
        if strategy not in ("quantile", "uniform"):
            raise ValueError(f"unknown bin strategy {strategy!r} (quantile or uniform)")
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        for name, fam in (families or {}).items():
            if fam not in (*FAMILIES, None, "auto"):
                raise ValueError(f"feature {name!r}: unknown MLE family {fam!r}")
        self._kinds = dict(kinds)
        self._families = dict(families or {})
        self._n_bins, self._strategy, self._top_n = n_bins, strategy, top_n
        self._edges = {k: list(v) for k, v in (edges or {}).items()}
        self._source = source
        self._ignored = tuple(ignored_columns)
        self._pass = 1
        self._numeric = [n for n, k in self._kinds.items() if k == "numeric"]
        self._categorical = [n for n, k in self._kinds.items() if k == "categorical"]
        self._summary = {n: ValueSummary() for n in self._numeric}
        # quantile edges: the first count runs with the summaries (pass 1), see CellCounts
        self._counting = {
            n: CellCounts()
            for n in self._numeric
            if n not in self._edges and self._strategy == "quantile"
        }
        self._vocab: dict[str, dict[str, int]] = {n: {} for n in self._categorical}
        self._known: dict[str, FeatureProfile] = {}  # features whose bins are known
        self._pending: dict[str, tuple[str | None, str | None, MLEAccumulator | None]] = {}
        self._quantiles: dict[str, ExactQuantiles] = {}
        self._hists: dict[str, Histogram] = {}
        self._mle: dict[str, MLEAccumulator | None] = {}
        self._missing: dict[str, tuple[int, int]] = {}
        self._types: dict[str, dict[str, int]] = {}  # {feature: {type label: rows}}

    # -- the caller's loop ---------------------------------------------------------------------
    def columns(self) -> list[str]:
        """The columns the next pass reads (empty: the profile is ready)."""
        if self._pass <= 2:
            return list(self._kinds)
        if self._windows is not None:
            return [] if self._windows_done else list(self._kinds)
        return [n for n, q in self._quantiles.items() if not q.done]

    def extra_columns(self) -> list[str]:
        """Columns the next pass's batches need besides :meth:`columns` (the event time of a
        windowed reference's last pass)."""
        if self._windows is not None and self._windowing and self._windowing["timestamp_column"]:
            return [self._windowing["timestamp_column"]]
        return []

    def add(self, batch: Any, columns: Collection[str] | None = None) -> None:
        """One batch of the current pass (an Arrow RecordBatch/Table or a dict of columns).

        ``columns``: the features this batch is for, when the caller reads the pass's columns
        in groups (each group over all the rows, in the same batches; memory then does not grow
        with the number of columns); default all of :meth:`columns`. Every feature's result is
        the same either way: each feature sees the same batches in the same order.
        """
        only = None if columns is None else set(columns)
        if self._windows is not None:
            self._windows.add(batch, columns)
        elif self._pass == 1:
            self._add_summaries(batch, only)
        elif self._pass == 2:
            self._add_stats(batch, only)  # the quantile searches of pending features too
        else:
            self._add_quantiles(batch, only)

    def end_pass(self) -> None:
        if self._windows is not None:
            self._windows_done = True
        elif self._pass == 1:
            self._plan()
            self._counting.clear()
        else:
            for q in self._quantiles.values():
                if not q.done:
                    q.end_pass()
        self._pass += 1
        if self._windowing and self._windows is None and self._pass >= 3 and not self.columns():
            from divtransforms.variation import WindowedSummaryBuilder

            self._windows = WindowedSummaryBuilder(self._profile(), **self._windowing)

    # -- pass 1 --------------------------------------------------------------------------------
    def _add_summaries(self, batch: Any, only: set[str] | None) -> None:
        def one(name: str) -> ValueSummary | None:
            """A numeric feature's summary of the batch (its first count kept in place), or
            a categorical one's value counts added to its own dict."""
            col = column_of(batch, name)
            if self._kinds[name] == "categorical":
                add_value_counts(self._vocab[name], col, name)
                return None
            x, _ = to_float_array(col, name)
            counting = self._counting.get(name)
            if counting is not None:
                counting.add(x)
            return ValueSummary.of(x)

        names = [n for n in (*self._numeric, *self._categorical) if only is None or n in only]
        for name, summary in zip(names, parallel.map_ordered(one, names), strict=True):
            if summary is not None:
                self._summary[name] = self._summary[name].merge(summary)

    def _plan(self) -> None:
        """Bins where the first pass decides them, families, and the quantile searches."""
        searches = sum(
            1
            for n in self._numeric
            if n not in self._edges and self._strategy == "quantile" and self._summary[n].n
        )
        # What all searches may gather at once stays under GATHER_BYTES (wide tables).
        self._gather_max = max(1024, GATHER_BYTES // (8 * (self._n_bins + 1) * max(searches, 1)))
        for name, kind in self._kinds.items():
            fam = self._families.get(name, "auto")
            reason = None if fam is None else "set by the user"
            spec: BinSpec | None = None
            if kind == "categorical":
                counts = self._vocab[name]
                if not counts:
                    raise ValueError(
                        f"feature {name!r}: no non-missing values to build a vocabulary from"
                    )
                spec = CategoricalBins.from_value_counts(counts, top_n=self._top_n)
                if fam == "auto":
                    fam, reason = "categorical", "categorical feature"
                check_family(name, kind, fam)
                acc = accumulator_for(fam, spec) if fam == "categorical" else None
            else:
                s = self._summary[name]
                if name in self._edges:
                    spec = NumericBins.from_edges(self._edges[name])
                elif s.n == 0:
                    raise ValueError(f"feature {name!r}: no finite values to place bin edges on")
                elif self._strategy == "uniform":
                    spec = NumericBins.from_range(s.lo, s.hi, self._n_bins)
                else:
                    q = np.linspace(0.0, 1.0, self._n_bins + 1)
                    ranks = inverted_cdf_ranks(s.n, q)
                    self._quantiles[name] = ExactQuantiles(
                        s.n, s.lo, s.hi, ranks, self._gather_max, self._counting.pop(name)
                    )
                if fam == "auto":
                    choice = choose_family(s)
                    fam, reason = choice.family, choice.reason
                check_family(name, kind, fam)
                acc = None
                if fam is not None:
                    acc = accumulator_for(fam).with_center(family_center(fam, s))  # type: ignore[union-attr]
            singletons = None
            if kind == "categorical":
                singletons = sum(1 for c in self._vocab[name].values() if c == 1)
            if spec is not None:
                self._known[name] = FeatureProfile(
                    name, kind, Histogram.empty(spec), fam, acc, reason, n_singletons=singletons
                )
            else:
                self._pending[name] = (fam, reason, acc)
                self._missing[name] = (0, 0)
                self._mle[name] = None

    # -- pass 2 and later ----------------------------------------------------------------------
    def _add_stats(self, batch: Any, only: set[str] | None) -> None:
        known = self._known
        if only is not None:
            known = {n: fp for n, fp in known.items() if n in only}
        stats = feature_stats_of_batch(known, batch)
        for name, types in stats.columns.items():
            self._types[name] = merge_type_counts(self._types.get(name, {}), types)
        for name, h in stats.histograms.items():
            prev = self._hists.get(name)
            self._hists[name] = h if prev is None else prev.merge(h)
            m, pm = stats.mle[name], self._mle.get(name)
            self._mle[name] = m if pm is None or m is None else pm.merge(m)  # type: ignore[arg-type]
        rows = num_rows(batch)

        def one(item: tuple[str, tuple[Any, Any, MLEAccumulator | None]]) -> tuple:
            """A pending feature's type, missing/invalid counts and MLE statistics of the
            batch (its quantile search fed in place)."""
            name, (_, _, empty) = item
            col = column_of(batch, name)
            label = type_label(col) if rows else None
            x, n_bad = to_float_array(col, name)
            nan = int(np.count_nonzero(np.isnan(x)))
            m = None
            if isinstance(empty, MomentMLE):
                m = empty.add(x, name)
                if n_bad:  # values of the wrong type are invalid for the family too
                    m = replace(m, n_invalid=m.n_invalid + n_bad)
            q = self._quantiles.get(name)
            if q is not None and not q.done:
                q.add(x)
            return label, nan, n_bad, m

        pending = [(n, p) for n, p in self._pending.items() if only is None or n in only]
        for (name, _), (label, nan, n_bad, m) in zip(
            pending, parallel.map_ordered(one, pending), strict=True
        ):
            if label is not None:
                self._types[name] = merge_type_counts(self._types.get(name, {}), {label: rows})
            miss, inv = self._missing[name]
            self._missing[name] = (miss + nan, inv + n_bad)
            if m is not None:
                pm = self._mle[name]
                self._mle[name] = m if pm is None else pm.merge(m)

    def _add_quantiles(self, batch: Any, only: set[str] | None) -> None:
        def one(item: tuple[str, ExactQuantiles]) -> None:
            name, q = item
            if not q.done:
                q.add(to_float_array(column_of(batch, name), name)[0])

        items = [(n, q) for n, q in self._quantiles.items() if only is None or n in only]
        parallel.map_ordered(one, items)

    # -- the result ----------------------------------------------------------------------------
    def profile(self) -> ReferenceProfile:
        if self._pass < 3 or self.columns():
            raise RuntimeError("the profile needs more passes over the data")
        if self._windows is not None:
            return replace(self._windows.profile, windows=self._windows.summary())
        return self._profile()

    def _profile(self) -> ReferenceProfile:
        out: dict[str, FeatureProfile] = {}
        for name in self._kinds:
            if name in self._known:
                fp = self._known[name]
                hist = self._hists.get(name) or Histogram.empty(fp.bins)
                mle = self._mle.get(name) or fp.mle
                out[name] = finish_feature(
                    name, fp.kind, hist, fp.family, mle, fp.reason,
                    column_type=self._column_type(name), n_singletons=fp.n_singletons,
                )  # fmt: skip
            else:
                fam, reason, empty = self._pending[name]
                hist = self._quantile_histogram(name)
                mle = self._mle.get(name) or empty
                out[name] = finish_feature(
                    name, "numeric", hist, fam, mle, reason, column_type=self._column_type(name)
                )
        return ReferenceProfile(out, source=self._source, ignored_columns=self._ignored)

    def _column_type(self, name: str) -> str | None:
        """The type label most rows of the feature had (as Beam's ``BuildReference``)."""
        types = {t: c for t, c in self._types.get(name, {}).items() if t != ABSENT}
        return max(types, key=types.__getitem__) if types else None

    def _quantile_histogram(self, name: str) -> Histogram:
        """The reference histogram on the exact quantile edges, from the searches' counts:
        nothing lies outside ``[min, max]``, bin ``j`` holds ``below(e_j+1) - below(e_j)``
        values, and the last bin (closed) the rest."""
        q = self._quantiles[name]
        found = q.values()
        spec = NumericBins.from_quantile_values([found[r] for r in sorted(found)])
        counts = np.zeros(spec.n_bins, dtype=np.int64)
        if found[min(found)] == found[max(found)]:  # constant: one bin [v, nextafter(v)]
            counts[1] = q.n
        else:
            below = [q.below(v) for v in spec.edges[:-1].tolist()]
            counts[1:-1] = np.diff(np.asarray([*below, q.n]))
        miss, inv = self._missing[name]
        return Histogram(spec, counts, miss, inv)
