"""Threshold policy: the severity of one window, from the tests its drift record carries.

Plain Python + numpy/scipy (no Beam, no Prefect), so ``divmon check``, notebooks and the Prefect
flows share one decision rule.

The decision for one window (``Policy.assess``) follows docs/policy.md. A window breaches when

* it has at least ``min_samples`` samples (otherwise it is ``"insufficient"``), and
* some test is significant after a weighted Bonferroni correction of the family-wise level
  ``significance`` over the tests available for the feature, and
* the effect size measured by *that* test is above a floor that does not depend on n.

The tests are the record's ``tests`` (computed once, by ``divtransforms.significance``, for
records, Beam and the benchmark alike), so an alert is explained by its record alone:

``histogram``
    The two-sample Cressie-Read test of homogeneity on the comparison table (the record's
    ``p_value``; ``divtransforms.significance.homogeneity_test``);
    used only when the window has at least ``min_expected`` samples per non-empty bin (the
    chi-square approximation is liberal on sparse tables). Effect: the policy ``metric``; for
    ``js_divergence`` the bias-corrected value ``js_corrected`` (plug-in JS minus its expectation
    under no drift), so the floor means the same thing at n = 300 and n = 100,000.
``location`` (the ``mean`` test, features with a numeric family)
    The mean of the family's value (``x``, or ``log x`` for the lognormal) against the
    reference's: a permutation-calibrated z with skewness and kurtosis corrections from the
    pooled moments, valid whatever the true distribution. Effect: the shift in reference standard
    deviations.
``dispersion`` (features with a numeric family other than bernoulli)
    The same test on the absolute deviations from the reference centre (a Levene-type scale
    test). Effect: the change of the mean absolute deviation in its reference standard
    deviations.

Weights (``weight_location``, ``weight_other_parameters``, ``weight_histogram``) split the level:
the first parameter (the location) is by far the most powerful test for the drift users mean by
"the values moved", so it gets most of it. Rejecting the global "no drift" hypothesis with Holm's
step-down procedure happens exactly when the weighted Bonferroni test rejects, so the per-window
decision is the Holm decision too.

``critical`` is the same rule with the critical floors (``critical`` for the metric,
``parameter_critical`` for the location and dispersion effects). The calibration of this rule on
realistic no-drift shapes is in ``docs/policy.md`` (``benchmarks/bench_policy.py``).

**Data quality and schema** (``divtransforms.quality``) have a severity of their own,
``quality_severity``, and the record's ``severity`` is the worse of the two:

* the record's ``quality`` tests (missing, invalid and unseen rates against the reference's,
  Fisher's exact test, one-sided) breach when significant at ``quality_significance`` (split
  evenly over them; a budget apart from ``significance``) with the rate up by at least
  ``quality_warn`` (``quality_critical``), a fraction: 0.1 is 10 rate points, whatever n
  (real feeds' missing rates wander by a few points from window to window: the floor keeps
  that quiet at large n);
* a window whose values are *all* missing or invalid (and whose reference had values) is
  ``critical``, never ``insufficient``;
* a schema issue takes the severity the policy gives its code: ``missing_column``
  (default ``critical``), ``type_change`` (``warning``) and ``new_column`` (``ok``: reported,
  not alerted, unless asked).

``divtransforms.alerting.AlertTracker`` turns the per-window severities of a stream into alerts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from divtransforms.records import SEVERITY_RANK
from divtransforms.significance import DriftTest, nan_to

SCHEMA_CODES = ("missing_column", "type_change", "new_column")
UNPROFILED = "unprofiled"  # a record's kind for a column the reference does not know
METRICS = ("js_divergence", "js_distance", "hellinger", "psi", "kl_divergence", "kl_reverse")


class PolicyError(ValueError):
    """A policy setting or a record handed to the policy is invalid."""


@dataclass(frozen=True)
class FeaturePolicy:
    """Thresholds and rules for one feature (or the default for all features).

    Attributes:
        metric: histogram effect-size metric (a record column); ``js_divergence`` is judged by its
            bias-corrected value ``js_corrected`` (bits in base 2).
        warn, critical: floors on that metric for a warning / critical breach.
        parameter_warn, parameter_critical: floors on the location and dispersion effects, in
            reference standard deviations of the tested value (mean: reference sigmas).
        min_samples: windows with fewer binned samples are ``"insufficient"`` (never a breach).
        significance: family-wise false-alarm level per window, split by the weights below.
        weight_location, weight_other_parameters, weight_histogram: relative shares of
            ``significance`` (renormalised over the tests that apply to the feature);
            ``weight_other_parameters`` goes to the dispersion test.
        min_expected: the histogram test needs ``n / non-empty bins`` at least this large.
        consecutive: breaching windows in a row before an alert.
        cooldown: windows after a warning/critical alert during which no new one is sent for the
            feature (an escalation to critical is still sent).
        recovery: windows back at ``ok`` before a single ``recovered`` alert.
        enabled: ``False`` silences the feature (severity is still computed).
        quality_warn, quality_critical: floors on a quality rate's rise (a fraction; 0.1 is
            10 rate points) for a warning / critical breach.
        quality_significance: false-alarm level per window of the quality tests together.
        missing_column, type_change, new_column: the severity (``ok``, ``warning`` or
            ``critical``) of each schema issue.
    """

    metric: str = "js_divergence"
    warn: float = 0.002
    critical: float = 0.03
    parameter_warn: float = 0.1
    parameter_critical: float = 0.4
    min_samples: int = 30
    significance: float = 0.009
    weight_location: float = 0.96
    weight_other_parameters: float = 0.02
    weight_histogram: float = 0.02
    min_expected: float = 5.0
    consecutive: int = 1
    cooldown: int = 4
    recovery: int = 1
    enabled: bool = True
    quality_warn: float = 0.1
    quality_critical: float = 0.3
    quality_significance: float = 0.001
    missing_column: str = "critical"
    type_change: str = "warning"
    new_column: str = "ok"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise PolicyError(f"metric must be one of {METRICS}, got {self.metric!r}")
        for name in ("warn", "critical", "parameter_warn", "parameter_critical", "min_expected"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PolicyError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("quality_warn", "quality_critical"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise PolicyError(f"{name} must be a rate in [0, 1], got {value!r}")
        for low, high in (
            ("warn", "critical"),
            ("parameter_warn", "parameter_critical"),
            ("quality_warn", "quality_critical"),
        ):
            if getattr(self, high) < getattr(self, low):
                raise PolicyError(
                    f"{high} ({getattr(self, high)}) must be >= {low} ({getattr(self, low)})"
                )
        if not 0 < self.significance < 1:
            raise PolicyError(f"significance must be in (0, 1), got {self.significance!r}")
        weights = (self.weight_location, self.weight_other_parameters, self.weight_histogram)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise PolicyError(f"weights must be >= 0 with a positive sum, got {weights}")
        for name in ("min_samples", "consecutive", "cooldown", "recovery"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PolicyError(f"{name} must be an integer >= 0, got {value!r}")
        if self.consecutive < 1 or self.recovery < 1:
            raise PolicyError("consecutive and recovery must be >= 1")
        if not 0 < self.quality_significance < 1:
            raise PolicyError(
                f"quality_significance must be in (0, 1), got {self.quality_significance!r}"
            )
        for name in SCHEMA_CODES:
            if getattr(self, name) not in ("ok", "warning", "critical"):
                raise PolicyError(
                    f"{name} must be ok, warning or critical, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FEATURE_POLICY_FIELDS = tuple(f.name for f in fields(FeaturePolicy))


@dataclass(frozen=True)
class Policy:
    """Default ``FeaturePolicy`` plus per-feature overrides."""

    default: FeaturePolicy = field(default_factory=FeaturePolicy)
    features: Mapping[str, FeaturePolicy] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """``{"default": {...}, "features": {name: {...}}}``; entries override the default."""
        unknown = set(data) - {"default", "features"}
        if unknown:
            raise PolicyError(f"unknown policy keys {sorted(unknown)}")
        default = _feature_policy(FeaturePolicy(), data.get("default") or {}, "default")
        features = {
            name: _feature_policy(default, over or {}, f"features.{name}")
            for name, over in (data.get("features") or {}).items()
        }
        return cls(default=default, features=features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.to_dict(),
            "features": {k: v.to_dict() for k, v in self.features.items()},
        }

    def for_feature(self, name: str) -> FeaturePolicy:
        return self.features.get(name, self.default)

    def assess(self, record: Mapping[str, Any]) -> str:
        """Severity of one window (one of ``records.SEVERITIES``); stateless."""
        return self.explain(record)["severity"]

    def explain(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Severity plus the tests behind it: ``{"severity", "tests": [{name, p_value, level,
        effect, floor}], "reason", "quality_severity", "quality_reason"}``."""
        fp = self.for_feature(_require(record, "feature"))
        quality, quality_reasons, quality_described = quality_verdict(record, fp)
        if record.get("kind") == UNPROFILED:
            severity, described, reason = "ok", [], ""
        else:
            evidence = record_evidence(record, fp)
            severity = str(decide(fp, evidence)[0])
            described, reason = evidence.describe(fp), evidence.reason(fp, severity)
        worst = max(severity, quality, key=SEVERITY_RANK.__getitem__)
        if quality != "ok":
            reason = "; ".join(quality_reasons) + (
                f"; distribution: {reason}" if severity in ("warning", "critical") else ""
            )
        return {
            "severity": worst,
            "tests": described + quality_described,
            "reason": reason,
            "quality_severity": quality,
            "quality_reason": "; ".join(quality_reasons) if quality_reasons else "no quality issue",
        }

    def assess_table(self, table: Any) -> list[str]:
        """Severities for every row of a records ``pyarrow.Table`` (or a list of record dicts)."""
        rows = table.to_pylist() if hasattr(table, "to_pylist") else list(table)
        return [self.assess(row) for row in rows]


def _feature_policy(base: FeaturePolicy, overrides: Mapping[str, Any], where: str) -> FeaturePolicy:
    unknown = set(overrides) - set(FEATURE_POLICY_FIELDS)
    if unknown:
        raise PolicyError(
            f"policy {where}: unknown keys {sorted(unknown)}; "
            f"allowed: {', '.join(FEATURE_POLICY_FIELDS)}"
        )
    try:
        return replace(base, **overrides)
    except PolicyError as exc:
        raise PolicyError(f"policy {where}: {exc}") from exc


# --------------------------------------------------------------------------- evidence (vectorised)


@dataclass
class Evidence:
    """Everything ``decide`` needs for a batch of windows of one feature."""

    n: np.ndarray
    tests: list[DriftTest]

    def describe(self, fp: FeaturePolicy) -> list[dict[str, Any]]:
        levels = _levels(fp, self.tests)
        out = []
        for test, level in zip(self.tests, levels, strict=True):
            warn, _ = _floors(fp, test)
            out.append(
                {
                    "name": test.name,
                    "p_value": float(test.p_value[0]),
                    "level": level,
                    "effect": float(test.effect[0]),
                    "floor": warn,
                }
            )
        return out

    def reason(self, fp: FeaturePolicy, severity: str) -> str:
        if severity == "insufficient":
            return f"n={int(self.n[0])} < min_samples={fp.min_samples}"
        parts = []
        for t in self.describe(fp):
            if t["p_value"] <= t["level"] and t["effect"] >= t["floor"]:
                parts.append(
                    f"{t['name']}: p={t['p_value']:.2g} <= {t['level']:.2g}, "
                    f"effect {t['effect']:.3g} >= {t['floor']:.3g}"
                )
        return "; ".join(parts) if parts else "no significant effect above the floor"


def _floors(fp: FeaturePolicy, test: DriftTest) -> tuple[float, float]:
    if test.kind == "histogram":
        return fp.warn, fp.critical
    return fp.parameter_warn, fp.parameter_critical


def _levels(fp: FeaturePolicy, tests: Sequence[DriftTest]) -> list[float]:
    """Weighted Bonferroni split of ``fp.significance`` over the tests present."""
    weights = []
    n_other = sum(1 for t in tests if t.kind not in ("histogram", "location"))
    for t in tests:
        if t.kind == "histogram":
            weights.append(fp.weight_histogram)
        elif t.kind == "location":
            weights.append(fp.weight_location)
        else:
            weights.append(fp.weight_other_parameters / n_other)
    total = sum(weights)
    if total <= 0:
        return [0.0 for _ in tests]
    return [fp.significance * w / total for w in weights]


def decide(fp: FeaturePolicy, evidence: Evidence) -> np.ndarray:
    """Severities (array of str) for a batch of windows of one feature."""
    n = np.asarray(evidence.n, dtype=np.float64)
    warn = np.zeros(n.shape, dtype=bool)
    crit = np.zeros(n.shape, dtype=bool)
    for test, level in zip(evidence.tests, _levels(fp, evidence.tests), strict=True):
        p = nan_to(test.p_value, 1.0)
        effect = nan_to(test.effect, 0.0)
        w_floor, c_floor = _floors(fp, test)
        significant = p <= level
        warn |= significant & (effect >= w_floor)
        crit |= significant & (effect >= c_floor)
    out = np.where(crit, "critical", np.where(warn, "warning", "ok")).astype(object)
    out[~(n >= max(fp.min_samples, 1))] = "insufficient"
    return out


def dense_enough(n: Any, dof: Any, min_expected: float) -> np.ndarray:
    """Whether the histogram test applies: at least ``min_expected`` samples per non-empty bin
    (the chi-square approximation of G is liberal on sparser tables)."""
    n = np.asarray(n, dtype=np.float64)
    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (dof >= 1) & (n / (dof + 1) >= min_expected)


def quality_verdict(
    record: Mapping[str, Any], fp: FeaturePolicy
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """``(severity, reasons, tests described)`` of a record's data quality and schema."""
    severity, reasons, described = "ok", [], []

    def worsen(level: str, why: str) -> None:
        nonlocal severity
        if level != "ok":
            reasons.append(why)
        severity = max(severity, level, key=SEVERITY_RANK.__getitem__)

    tests = [t for t in record.get("tests") or [] if t.get("kind") == "quality"]
    for t in tests:
        level = fp.quality_significance / len(tests)
        p, effect = _num(t.get("p_value"), math.nan), _num(t.get("effect"), math.nan)
        described.append(
            {
                "name": t.get("name"),
                "p_value": p,
                "level": level,
                "effect": effect,
                "floor": fp.quality_warn,
            }
        )
        if p <= level and effect >= fp.quality_warn:
            worsen(
                "critical" if effect >= fp.quality_critical else "warning",
                f"{t.get('name')} up {effect * 100:.3g} points: p={p:.2g} <= {level:.2g}",
            )
    n = _num(record.get("n"), 0.0)
    missing, invalid = _num(record.get("n_missing"), 0.0), _num(record.get("n_invalid"), 0.0)
    if record.get("kind") != UNPROFILED and n == 0 and missing + invalid > 0:
        if _num(record.get("n_reference"), 0.0) > 0:
            worsen(
                "critical",
                f"all {int(missing + invalid)} values missing ({int(missing)}) or invalid "
                f"({int(invalid)})",
            )
    for issue in record.get("schema_issues") or []:
        code = str(issue.get("code"))
        if code in SCHEMA_CODES:
            worsen(getattr(fp, code), f"{code}: {issue.get('detail')}")
    return severity, reasons, described


def record_evidence(record: Mapping[str, Any], fp: FeaturePolicy) -> Evidence:
    """The evidence of one record (``DRIFT_RECORD_SCHEMA`` dict): its ``tests``, as computed by
    ``divtransforms.significance``; the policy only adds the histogram's density rule and its
    choice of histogram metric."""
    n = _num(record.get("n"), 0.0)
    tests: list[DriftTest] = []
    for t in record.get("tests") or []:
        kind = str(t.get("kind"))
        if kind == "quality":
            continue
        p_value = _num(t.get("p_value"), math.nan)
        effect = _num(t.get("effect"), math.nan)
        if kind == "histogram":
            if not dense_enough(n, _num(record.get("dof"), 0.0), fp.min_expected):
                p_value = math.nan
            effect = _histogram_effect(record, fp)
        tests.append(
            DriftTest(
                str(t.get("name")),
                kind,
                np.array([_num(t.get("statistic"), math.nan)]),
                np.array([p_value]),
                np.array([effect]),
            )
        )
    return Evidence(n=np.array([n]), tests=tests)


def judged_values(columns: Mapping[str, Any], metric: str) -> np.ndarray:
    """The value of the histogram ``metric`` the policy compares with ``warn``/``critical``, for
    arrays of record columns (the dashboard plots the same values).

    ``js_divergence`` is judged by its bias-corrected value ``js_corrected`` (falling back to
    ``js_divergence - js_bias``), clipped at 0; every other metric by the record column itself.
    """
    if metric != "js_divergence":
        return np.asarray(columns[metric], dtype=np.float64)
    js = np.asarray(columns["js_divergence"], dtype=np.float64)
    bias = nan_to(columns["js_bias"], 0.0)
    corrected = np.asarray(columns["js_corrected"], dtype=np.float64)
    corrected = np.where(np.isnan(corrected), js - bias, corrected)
    return np.where(np.isnan(corrected), np.nan, np.maximum(corrected, 0.0))


def _histogram_effect(record: Mapping[str, Any], fp: FeaturePolicy) -> float:
    keys = {fp.metric, "js_divergence", "js_corrected", "js_bias"}
    columns = {k: [_num(record.get(k), math.nan)] for k in keys}
    return float(judged_values(columns, fp.metric)[0])


def _num(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out


def _require(record: Mapping[str, Any], key: str) -> Any:
    if key not in record or record[key] is None:
        raise PolicyError(f"drift record has no {key!r}")
    return record[key]
