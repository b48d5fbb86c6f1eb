"""A check's records: one feature's drift record for one window (:func:`drift_record`), the
records of one window (:func:`window_records`: every feature, and the columns the reference does
not know) and what identifies them (:class:`RecordStamp`, :func:`new_run_id`).

``drift_record`` is the single place where a window's histogram and MLE statistics become a drift
record (docs/concepts.md, "Drift records"). Every driver makes its records with
``window_records``: ``compare()`` and the in-process engine and the watcher (through
``compare.WindowDriver``) and the Beam transforms, so all paths give the same records.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from divtransforms.bins import NumericBins
from divtransforms.divergence import divergences, entropy
from divtransforms.histogram import Histogram
from divtransforms.mle import (
    CategoricalMLE,
    MLEAccumulator,
    MomentMLE,
    category_tests,
    mean_log_likelihood,
    model_kl,
)
from divtransforms.policy import UNPROFILED
from divtransforms.profile import FeatureProfile
from divtransforms.quality import quality_fields, quality_test_fields, quality_test_fields_of
from divtransforms.records import RECORD_FIELDS
from divtransforms.running import RunningEstimates
from divtransforms.sequential import RECORD_KEYS as SEQUENTIAL_KEYS
from divtransforms.settings import DEFAULT_ALPHA, CheckSettings
from divtransforms.significance import (
    homogeneity_test,
    js_bias,
    moment_columns,
    range_test,
    window_tests,
)
from divtransforms.variation import Judged, WindowJudge, histogram_between, location_between
from divtransforms.window import FeatureStats, when

__all__ = [
    "DEFAULT_ALPHA",
    "Assessor",
    "RecordStamp",
    "drift_record",
    "new_column_record",
    "new_run_id",
    "resolve_policy",
    "window_records",
]

# The decisive test (its kind) behind each parameter row of a record.
_TESTED_BY = {"mu": "location", "rate": "location", "p": "location", "sigma": "dispersion"}


class Assessor(Protocol):
    def assess(self, record: Mapping[str, Any]) -> str: ...

    def explain(self, record: Mapping[str, Any]) -> dict[str, Any]: ...


@functools.cache
def _default_policy() -> Assessor:
    from divtransforms.policy import Policy

    return Policy()


def resolve_policy(policy: Assessor | str | None) -> Assessor | None:
    """``"default"`` is the default :class:`divtransforms.policy.Policy`; ``None`` assesses
    nothing (records get ``severity = None``); anything else is used as given."""
    if isinstance(policy, str):
        if policy != "default":
            raise ValueError(f"policy must be a Policy, None or 'default', got {policy!r}")
        return _default_policy()
    return policy


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class RecordStamp:
    """What identifies a record besides its feature: the run, the reference, the window
    (``None`` bounds: the global window) and its pane, and when it was made (``None``: now)."""

    run_id: str = ""
    reference_id: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    pane: int = 0
    created_at: datetime | None = None


_DEFAULTS = CheckSettings()
_NO_STAMP = RecordStamp()


def _nan_divergences() -> dict[str, float]:
    keys = (
        "entropy_current",
        "cross_entropy",
        "kl_divergence",
        "kl_reverse",
        "js_divergence",
        "js_distance",
        "js_bias",
        "js_corrected",
        "psi",
        "hellinger",
        "g_statistic",
        "p_value",
    )
    return dict.fromkeys(keys, math.nan)


def drift_record(
    fp: FeatureProfile,
    hist: Histogram,
    mle_window: MLEAccumulator | None,
    mle_running: MLEAccumulator | None,
    *,
    settings: CheckSettings | None = None,
    stamp: RecordStamp | None = None,
    columns: Mapping[str, int] | None = None,
    quality: Sequence[Any] | None = None,
    divergence_values: Mapping[str, Any] | None = None,
    sequential: Mapping[str, Any] | None = None,
    judged: Judged | None = None,
) -> dict[str, Any]:
    """The drift record of one feature and window (see ``records.DRIFT_RECORD_SCHEMA``).

    ``settings``: the check's ``alpha``, ``base`` and ``policy`` (the rest is the drivers');
    ``stamp``: the record's run, reference, window, pane and creation time (None: defaults).

    ``sequential``: the feature's detector fields at this window
    (``RunningEstimates.sequential_fields``; null without).

    ``columns``: the window's rows per type label of the column (``FeatureStats.columns``), for
    the schema checks (``divtransforms.quality``). ``quality`` and ``divergence_values``: this
    feature's quality tests and divergences when the caller computed them for many features at
    once (``quality.quality_test_fields_of``, ``divergence.divergences`` on rows); by default
    they are computed here.

    Divergences compare the window (``current``) with the reference: ``kl_divergence`` is
    ``KL(current || reference)`` and ``kl_reverse`` is ``KL(reference || current)``, both with
    ``alpha`` pseudo-counts per bin; ``cross_entropy`` is ``H(current, reference)`` on the same
    smoothed distributions (so ``kl_divergence = cross_entropy - H(smoothed current)``); the
    entropies, JS and Hellinger use raw frequencies. An empty window (``n = 0``) has NaN
    divergences and p-value: nothing was observed.

    ``judged``: the window's reference and between-window variation from a windowed reference
    (``divtransforms.variation.WindowJudge``); its ``fp`` replaces ``fp`` (a season's part of
    the reference), and the tests account for the variation.
    """
    settings, stamp = settings or _DEFAULTS, stamp or _NO_STAMP
    if judged is not None:
        fp = judged.fp
    ref_counts = fp.histogram.counts
    counts = hist.counts
    n, n_ref = hist.n, fp.histogram.n
    n_total = hist.n_total
    alpha, base = settings.alpha, settings.base
    rec: dict[str, Any] = {
        "run_id": stamp.run_id,
        "reference_id": stamp.reference_id,
        "feature": fp.name,
        "kind": fp.kind,
        "window_start": stamp.window_start,
        "window_end": stamp.window_end,
        "pane": int(stamp.pane),
        "n": n,
        "n_missing": hist.n_missing,
        "n_invalid": hist.n_invalid,
        "missing_rate": hist.n_missing / n_total if n_total else math.nan,
        **quality_fields(fp, hist, columns or {}),
        "n_reference": n_ref,
        "base": float(base),
        "alpha": float(alpha),
        "entropy_reference": float(entropy(ref_counts, base)) if n_ref else math.nan,
        "counts": [int(c) for c in counts.tolist()],
        "reference_counts": [int(c) for c in ref_counts.tolist()],
        "bin_labels": fp.bins.labels,
        "dof": 0,
    }
    histogram_test = beyond = None
    if n == 0 or n_ref == 0:
        rec.update(_nan_divergences())
    else:
        fields, histogram_test = _divergence_fields(fp, counts, n, alpha, base, divergence_values)
        rec.update(fields)
        if isinstance(fp.bins, NumericBins):
            beyond = range_test(counts, ref_counts)
    if judged is not None:
        histogram_test = _variation_fields(rec, fp, judged, histogram_test, n)
    rec["tests"] = _test_fields(fp, histogram_test, mle_window, beyond, judged)
    rec.update(_mle_fields(fp, mle_window, mle_running, rec["tests"], alpha, base))
    if quality is None:
        quality = quality_test_fields(fp, hist)
    rec["tests"] += [_test_dict(t) for t in quality]
    rec.update(sequential or dict.fromkeys(SEQUENTIAL_KEYS))
    return _assessed(rec, settings.policy, stamp.created_at)


def _assessed(
    rec: dict[str, Any], policy: Assessor | str | None, created_at: datetime | None
) -> dict[str, Any]:
    assessor = resolve_policy(policy)
    if assessor is None:
        rec["severity"], rec["severity_reason"] = None, None
        rec["quality_severity"], rec["quality_reason"] = None, None
    else:
        verdict = assessor.explain(rec)
        rec["severity"], rec["severity_reason"] = verdict["severity"], verdict["reason"]
        rec["quality_severity"] = verdict.get("quality_severity")
        rec["quality_reason"] = verdict.get("quality_reason")
    rec["created_at"] = created_at or datetime.now(UTC)
    return rec


def _test_dict(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "kind": t.kind,
        "statistic": float(np.asarray(t.statistic).reshape(-1)[0]),
        "p_value": float(np.asarray(t.p_value).reshape(-1)[0]),
        "effect": float(np.asarray(t.effect).reshape(-1)[0]),
    }


def new_column_record(
    name: str,
    types: Mapping[str, int],
    *,
    stamp: RecordStamp | None = None,
    policy: Assessor | str | None = "default",
) -> dict[str, Any]:
    """The record of a column the reference does not know (kind ``unprofiled``): its rows and
    types, and a ``new_column`` schema issue (severity: the policy's ``new_column``)."""
    stamp = stamp or _NO_STAMP
    rows = int(sum(types.values()))
    seen = ", ".join(sorted(types))
    rec: dict[str, Any] = {
        **dict.fromkeys(RECORD_FIELDS),
        "run_id": stamp.run_id,
        "reference_id": stamp.reference_id,
        "feature": name,
        "kind": UNPROFILED,
        "window_start": stamp.window_start,
        "window_end": stamp.window_end,
        "pane": int(stamp.pane),
        "n": 0,
        "n_missing": 0,
        "n_invalid": 0,
        "n_reference": 0,
        "column_types": [{"type": t, "rows": int(c)} for t, c in sorted(types.items())],
        "schema_issues": [
            {
                "code": "new_column",
                "detail": f"new column ({rows} rows, {seen}): not in the reference",
            }
        ],
        "tests": [],
        **_nan_divergences(),
    }
    return _assessed(rec, policy, stamp.created_at)


def _divergence_fields(
    fp: FeatureProfile,
    counts: np.ndarray,
    n: int,
    alpha: float,
    base: float,
    d: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], tuple[float, float, float]]:
    """Divergences of a non-empty window from the reference (``d``: already computed), and its
    histogram test as ``(statistic, p_value, effect)`` for ``significance.window_tests``."""
    ref_counts = fp.histogram.counts
    if d is None:
        d = divergences(counts, ref_counts, base, alpha)
    js = float(d["js_divergence"])
    ordered = isinstance(fp.bins, NumericBins)
    gt = homogeneity_test(counts, ref_counts, cells=fp.bins.test_cells(ref_counts), ordered=ordered)
    bias = js_bias(n, fp.histogram.n, int(np.count_nonzero(counts + ref_counts)), base)
    js_corrected = max(js - bias, 0.0)
    fields = {
        "entropy_current": float(d["entropy_current"]),
        "cross_entropy": float(d["cross_entropy"]),
        "kl_divergence": float(d["kl_divergence"]),
        "kl_reverse": float(d["kl_reverse"]),
        "js_divergence": js,
        "js_distance": math.sqrt(js),
        "js_bias": bias,
        "js_corrected": js_corrected,
        "psi": float(d["psi"]),
        "hellinger": float(d["hellinger"]),
        "g_statistic": gt.g_statistic,
        "dof": gt.dof,
        "p_value": gt.p_value,
    }
    return fields, (gt.statistic, gt.p_value, js_corrected)


def _variation_fields(
    rec: dict[str, Any], fp: FeatureProfile, judged: Judged, histogram_test: tuple | None, n: int
) -> tuple | None:
    """The record's between-window fields; the histogram test's p-value against the reference's
    own variation (``variation.histogram_between``)."""
    v = judged.variation
    rec["season"], rec["variation"] = judged.season, judged.note
    rec["reference_windows"] = v.windows if v is not None else None
    rec["tau"] = v.tau if v is not None and v.estimated else None
    rec["dispersion"] = 1.0 if v is not None and v.estimated else None
    if histogram_test is None or v is None or not v.estimated:
        return histogram_test
    stat, _, effect = histogram_test
    adjusted = histogram_between(
        stat, rec["dof"], n, fp.histogram.counts, fp.bins.test_cells(fp.histogram.counts),
        v, judged.share, isinstance(fp.bins, NumericBins),
    )  # fmt: skip
    if adjusted is None:
        return histogram_test
    rec["dispersion"] = adjusted[1]
    rec["p_value"] = adjusted[0]
    return stat, adjusted[0], effect


def _test_fields(
    fp: FeatureProfile,
    histogram_test: tuple | None,
    mle_window: MLEAccumulator | None,
    beyond: tuple | None = None,
    judged: Judged | None = None,
) -> list[dict[str, Any]]:
    """The record's ``tests``: ``significance.window_tests`` on the window and the reference."""
    ref_mle = fp.mle if isinstance(fp.mle, MomentMLE) else None
    win_mle = mle_window if isinstance(mle_window, MomentMLE) else None
    pair = (win_mle, ref_mle) if win_mle is not None and ref_mle is not None else None
    between: tuple[Any, Any] = (None, None)
    if judged is not None:
        between = (
            location_between(judged.variation, judged.share),
            location_between(judged.variation, judged.share, dispersion=True),
        )
    dev = None
    if pair and pair[0].dev.n and pair[1].dev.n:
        dev = (moment_columns(pair[0].dev), moment_columns(pair[1].dev))
        if judged is not None and judged.scale is not None:
            # the window's own location moves |t - c|: judge its scale without it
            n, mean, *rest = dev[0]
            dev = ((n, judged.scale.adjust(pair[0].t.n, pair[0].t.mean, mean), *rest), dev[1])
    tests = window_tests(
        fp.family,
        histogram_test,
        (moment_columns(pair[0].t), moment_columns(pair[1].t)) if pair else None,
        dev,
        beyond=beyond,
        between=between,
    )
    return [_test_dict(t) for t in tests]


def _mle_fields(
    fp: FeatureProfile,
    win: MLEAccumulator | None,
    run: MLEAccumulator | None,
    tests: list[dict[str, Any]],
    alpha: float,
    base: float,
) -> dict[str, Any]:
    if fp.mle is None or win is None:
        return {
            "mle_family": None,
            "mle_n": None,
            "mle_n_invalid": None,
            "mle_params": None,
            "mle_mean_loglik": None,
            "mle_reference_loglik": None,
            "mle_kl": None,
            "mle_p_value": None,
            "mle_fit": None,
        }
    ref_est = fp.mle.estimate()
    win_est = win.estimate()
    run_est = (run if run is not None else win).estimate()
    # A parameter row shows the decisive test of what it measures (mu, rate, p: the mean test;
    # sigma: the dispersion test); categorical rows the two-proportion z-test of each category
    # (descriptive: categorical features are decided by the histogram); gamma's rows none.
    by_kind = {t["kind"]: t for t in tests}
    per_category = (
        category_tests(win, fp.mle)
        if isinstance(win, CategoricalMLE) and isinstance(fp.mle, CategoricalMLE)
        else {}
    )
    params = []
    for k in ref_est.params:
        test = by_kind.get(_TESTED_BY.get(k, ""))
        z, p = per_category.get(k, (math.nan, math.nan))
        if test is not None:
            z, p = test["statistic"], test["p_value"]
        params.append(
            {
                "name": k,
                "reference": ref_est.params[k],
                "reference_se": ref_est.se[k],
                "window": win_est.params[k],
                "window_se": win_est.se[k],
                "running": run_est.params[k],
                "running_se": run_est.se[k],
                "z": z,
                "p_value": p,
            }
        )
    pvals = [t["p_value"] for t in tests if t["kind"] in ("location", "dispersion")]
    pvals = [p for p in pvals if math.isfinite(p)]
    return {
        "mle_family": fp.family,
        "mle_n": win.n,
        "mle_n_invalid": win.n_invalid,
        "mle_params": params,
        "mle_mean_loglik": mean_log_likelihood(win, ref_est, alpha),
        "mle_reference_loglik": mean_log_likelihood(fp.mle, ref_est, alpha),
        "mle_kl": model_kl(fp.family or "", win_est.params, ref_est.params, base),
        "mle_p_value": min(1.0, len(pvals) * min(pvals)) if pvals else math.nan,
        "mle_fit": fp.fit.get("kl_bits") if fp.fit else None,
    }


def window_records(
    features: Mapping[str, FeatureProfile],
    stats: FeatureStats,
    running: RunningEstimates,
    *,
    settings: CheckSettings | None = None,
    stamp: RecordStamp | None = None,
    judge: WindowJudge | None = None,
) -> list[dict[str, Any]]:
    """The records of one window (pane): one per feature, and one per column the reference does
    not know (``stats.columns`` beyond the features; see ``feature_stats_of_batch``'s ``known``).
    ``compare()``, the in-process engine and the watcher (``compare.WindowDriver``) and the Beam
    transforms all make records here. ``settings``: the check's ``alpha``, ``base`` and
    ``policy``; ``stamp``: the records' run, reference, window and pane.
    ``judge``: a windowed reference's judge (``divtransforms.variation``): each feature is
    judged against its season's part of the reference and the reference's own variation."""
    settings, stamp = settings or _DEFAULTS, stamp or _NO_STAMP
    judged: Mapping[str, Judged] = {}
    window_start = stamp.window_start
    if judge is not None:
        start = None
        if window_start is not None:
            start = (window_start - when(0)) // timedelta(microseconds=1)
        judged = judge.judged(start)
        features = {n: judged[n].fp if n in judged else fp for n, fp in features.items()}
    quality = quality_test_fields_of([(fp, stats.histograms[n]) for n, fp in features.items()])
    divs = _divergences_of(features, stats, settings.alpha, settings.base)
    out = [
        drift_record(
            fp,
            stats.histograms[name],
            stats.mle.get(name),
            running.get(name),
            settings=settings,
            stamp=stamp,
            columns=stats.columns.get(name),
            quality=tests,
            divergence_values=divs.get(name),
            sequential=running.sequential_fields(name, window_start),
            judged=judged.get(name),
        )
        for (name, fp), tests in zip(features.items(), quality, strict=True)
    ]
    out += [
        new_column_record(name, types, stamp=stamp, policy=settings.policy)
        for name, types in sorted(stats.columns.items())
        if name not in features
    ]
    return out


def _divergences_of(
    features: Mapping[str, FeatureProfile], stats: FeatureStats, alpha: float, base: float
) -> dict[str, dict[str, Any]]:
    """The divergences of every feature with data on both sides, the features with the same
    number of bins as rows of one array (the same values as one by one, row by row)."""
    groups: dict[int, list[str]] = {}
    for name, fp in features.items():
        hist = stats.histograms[name]
        if hist.n and fp.histogram.n:
            groups.setdefault(len(hist.counts), []).append(name)
    out: dict[str, dict[str, Any]] = {}
    for names in groups.values():
        rows = divergences(
            np.stack([stats.histograms[n].counts for n in names]),
            np.stack([features[n].histogram.counts for n in names]),
            base,
            alpha,
        )
        for i, name in enumerate(names):
            out[name] = {k: v[i] for k, v in rows.items()}
    return out
