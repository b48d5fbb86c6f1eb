"""Threshold policy: turn drift records into severities, and severities into alerts.

Plain Python + numpy/scipy (no Beam, no Prefect), so ``divmon check``, notebooks and the Prefect
flows share one decision rule.

The decision for one window (``Policy.assess``) follows DESIGN.md section 3. A window breaches when

* it has at least ``min_samples`` samples (otherwise it is ``"insufficient"``), and
* some test is significant after a weighted Bonferroni correction of the family-wise level
  ``significance`` over the tests available for the feature, and
* the effect size measured by *that* test is above a floor that does not depend on n.

The tests and their effect sizes:

``histogram``
    The two-sample G-test of homogeneity (record ``g_statistic``, ``dof``) with Williams'
    correction computed from the record's counts; used only when the window has at least
    ``min_expected`` samples per non-empty bin (the chi-square approximation is liberal on sparse
    tables). Effect: the policy ``metric``; for ``js_divergence`` the bias-corrected value
    ``js_corrected`` (plug-in JS minus its expectation under no drift), so the floor means the same
    thing at n = 300 and n = 100,000.
``parameters`` (features with an MLE family)
    One test per fitted parameter of the window against the reference. For ``normal`` and
    ``lognormal`` the exact small-sample tests are used (Welch's t for the mean, the F test for the
    variance) from the record's window and reference estimates; for the other families the record's
    Wald test (``mle_params[*].p_value``). Effect: the parameter shift in units of one
    observation's reference standard deviation, ``|theta_w - theta_r| / (se_r * sqrt(n_ref))``,
    which for the normal mean is exactly the shift in reference sigmas.

Weights (``weight_location``, ``weight_other_parameters``, ``weight_histogram``) split the level:
the first parameter (the location) is by far the most powerful test for the drift users mean by
"the values moved", so it gets most of it. Rejecting the global "no drift" hypothesis with Holm's
step-down procedure happens exactly when the weighted Bonferroni test rejects, so the per-window
decision is the Holm decision too.

``critical`` is the same rule with the critical floors (``critical`` for the metric,
``parameter_critical`` for parameter shifts).

``AlertTracker`` turns the per-window severities of a stream into alerts: ``consecutive`` breaching
windows before an alert, no repeated alert while a breach lasts (an escalation from warning to
critical is sent), ``cooldown`` windows after an alert before a new one, and one ``recovered`` alert
after ``recovery`` windows back under the threshold. Its state is a JSON document with a schema
version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
from scipy import special

from divtransforms.records import SEVERITIES

POLICY_STATE_VERSION = 1

METRICS = ("js_divergence", "js_distance", "hellinger", "psi", "kl_divergence", "kl_reverse")
LOCATION_SCALE_FAMILIES = ("normal", "lognormal")
_SEVERITY_RANK = {"ok": 0, "insufficient": 0, "warning": 1, "critical": 2}


class PolicyError(ValueError):
    """A policy setting or a record handed to the policy is invalid."""


@dataclass(frozen=True)
class FeaturePolicy:
    """Thresholds and rules for one feature (or the default for all features).

    Attributes:
        metric: histogram effect-size metric (a record column); ``js_divergence`` is judged by its
            bias-corrected value ``js_corrected`` (bits in base 2).
        warn, critical: floors on that metric for a warning / critical breach.
        parameter_warn, parameter_critical: floors on the parameter shift, in reference standard
            deviations of one observation (normal mean: reference sigmas).
        min_samples: windows with fewer binned samples are ``"insufficient"`` (never a breach).
        significance: family-wise false-alarm level per window, split by the weights below.
        weight_location, weight_other_parameters, weight_histogram: relative shares of
            ``significance`` (renormalised over the tests that apply to the feature).
        min_expected: the histogram test needs ``n / non-empty bins`` at least this large.
        consecutive: breaching windows in a row before an alert.
        cooldown: windows after a warning/critical alert during which no new one is sent for the
            feature (an escalation to critical is still sent).
        recovery: windows back at ``ok`` before a single ``recovered`` alert.
        enabled: ``False`` silences the feature (severity is still computed).
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

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise PolicyError(f"metric must be one of {METRICS}, got {self.metric!r}")
        for name in ("warn", "critical", "parameter_warn", "parameter_critical", "min_expected"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PolicyError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.critical < self.warn:
            raise PolicyError(f"critical ({self.critical}) must be >= warn ({self.warn})")
        if self.parameter_critical < self.parameter_warn:
            raise PolicyError(
                f"parameter_critical ({self.parameter_critical}) must be >= "
                f"parameter_warn ({self.parameter_warn})"
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
        effect, floor}], "reason"}``."""
        fp = self.for_feature(_require(record, "feature"))
        evidence = record_evidence(record, fp)
        severity = decide(fp, evidence)[0]
        return {
            "severity": str(severity),
            "tests": evidence.describe(fp),
            "reason": evidence.reason(fp, str(severity)),
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
class DriftTest:
    """One test over a batch of windows: p-values and effect sizes (NaN = not applicable)."""

    name: str
    kind: str  # "histogram" | "location" | "parameter"
    p_value: np.ndarray
    effect: np.ndarray


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
    n_other = sum(1 for t in tests if t.kind == "parameter")
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
        p = np.nan_to_num(np.asarray(test.p_value, dtype=np.float64), nan=1.0)
        effect = np.nan_to_num(np.asarray(test.effect, dtype=np.float64), nan=0.0)
        w_floor, c_floor = _floors(fp, test)
        significant = p <= level
        warn |= significant & (effect >= w_floor)
        crit |= significant & (effect >= c_floor)
    out = np.where(crit, "critical", np.where(warn, "warning", "ok")).astype(object)
    out[~(n >= max(fp.min_samples, 1))] = "insufficient"
    return out


def williams_q(n_cur: np.ndarray, n_ref: np.ndarray, col_totals: np.ndarray) -> np.ndarray:
    """Williams' correction factor for the 2 x K G-test (Williams 1976; Sokal & Rohlf, Biometry).

    ``q = 1 + (N (1/n_cur + 1/n_ref) - 1) (N sum_j 1/C_j - 1) / (6 N (K' - 1))`` with ``C_j`` the
    non-zero bin totals and ``K'`` their number; ``G / q`` follows chi-square more closely.
    ``col_totals`` is 2-D (windows x bins).
    """
    n_cur = np.asarray(n_cur, dtype=np.float64)
    n_ref = np.asarray(n_ref, dtype=np.float64)
    cols = np.asarray(col_totals, dtype=np.float64)
    total = n_cur + n_ref
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(cols > 0, 1.0 / np.where(cols > 0, cols, 1.0), 0.0).sum(axis=-1)
        k = (cols > 0).sum(axis=-1)
        q = 1.0 + (total * (1.0 / n_cur + 1.0 / n_ref) - 1.0) * (total * inv - 1.0) / (
            6.0 * total * np.maximum(k - 1, 1)
        )
    return np.where(np.isfinite(q) & (q > 0), q, 1.0)


def histogram_test(
    g_statistic, dof, n, n_ref, counts, reference_counts, effect, min_expected: float
) -> DriftTest:
    """The G-test as a ``DriftTest``: Williams-corrected p-value, NaN where too sparse."""
    g = np.asarray(g_statistic, dtype=np.float64)
    dof = np.asarray(dof, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    reference_counts = np.asarray(reference_counts, dtype=np.float64)
    q = williams_q(n, n_ref, counts + reference_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = special.chdtrc(np.maximum(dof, 1), g / q)
        dense = (dof >= 1) & (n / (dof + 1) >= min_expected)
    p = np.where(dense & np.isfinite(g), p, np.nan)
    return DriftTest("histogram", "histogram", p, np.asarray(effect, dtype=np.float64))


def normal_tests(mu_w, sigma_w, n, mu_r, sigma_r, n_ref) -> list[DriftTest]:
    """Exact small-sample tests for a normal window against a normal reference (MLE inputs).

    Location: Welch's t test (unbiased variances, Welch-Satterthwaite dof). Scale: the two-sided F
    test of the variance ratio with (n - 1, n_ref - 1) dof. Effects: ``|mu_w - mu_r| / sigma_r`` and
    ``|sigma_w - sigma_r| / (sigma_r / sqrt 2)`` (per-observation standard deviations of the MLEs).
    """
    mu_w, sigma_w, n, mu_r, sigma_r, n_ref = (
        np.asarray(a, dtype=np.float64) for a in (mu_w, sigma_w, n, mu_r, sigma_r, n_ref)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        var_w = sigma_w**2 * n / (n - 1)
        var_r = sigma_r**2 * n_ref / (n_ref - 1)
        a, b = var_w / n, var_r / n_ref
        se = np.sqrt(a + b)
        t = (mu_w - mu_r) / se
        df = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (n_ref - 1))
        p_loc = 2.0 * special.stdtr(df, -np.abs(t))
        ratio = var_w / var_r
        p_scale = 2.0 * np.minimum(
            special.fdtrc(n - 1, n_ref - 1, ratio), special.fdtr(n - 1, n_ref - 1, ratio)
        )
        effect_loc = np.abs(mu_w - mu_r) / sigma_r
        effect_scale = np.abs(sigma_w - sigma_r) / (sigma_r / math.sqrt(2.0))
    # A constant window against a constant reference: t is 0/0. No evidence either way.
    p_loc = np.where(np.isfinite(p_loc), p_loc, np.where(mu_w == mu_r, 1.0, 0.0))
    p_scale = np.where(np.isfinite(p_scale), np.minimum(p_scale, 1.0), 1.0)
    return [
        DriftTest("mu", "location", p_loc, effect_loc),
        DriftTest("sigma", "parameter", p_scale, np.nan_to_num(effect_scale, nan=0.0)),
    ]


def record_evidence(record: Mapping[str, Any], fp: FeaturePolicy) -> Evidence:
    """Build the evidence of one record (``DRIFT_RECORD_SCHEMA`` dict)."""
    n = _num(record.get("n"), 0.0)
    n_ref = _num(record.get("n_reference"), 0.0)
    tests: list[DriftTest] = []
    counts = record.get("counts")
    ref_counts = record.get("reference_counts")
    g = record.get("g_statistic")
    if g is not None and counts is not None and ref_counts is not None and n_ref > 0 and n > 0:
        if len(counts) != len(ref_counts):
            raise PolicyError(
                f"feature {record.get('feature')!r}: counts and reference_counts "
                f"differ in length ({len(counts)} vs {len(ref_counts)})"
            )
        effect = _histogram_effect(record, fp)
        tests.append(
            histogram_test(
                [_num(g, math.nan)],
                [_num(record.get("dof"), 0.0)],
                [n],
                [n_ref],
                [counts],
                [ref_counts],
                [effect],
                fp.min_expected,
            )
        )
    family = record.get("mle_family")
    params = record.get("mle_params") or []
    if family and family != "categorical" and params:
        tests.extend(_parameter_tests(record, family, params))
    return Evidence(n=np.array([n]), tests=tests)


def _histogram_effect(record: Mapping[str, Any], fp: FeaturePolicy) -> float:
    if fp.metric == "js_divergence":
        value = record.get("js_corrected")
        if value is None:
            value = _num(record.get("js_divergence"), 0.0) - _num(record.get("js_bias"), 0.0)
        return max(_num(value, 0.0), 0.0)
    return _num(record.get(fp.metric), 0.0)


def _parameter_tests(
    record: Mapping[str, Any], family: str, params: Sequence[Mapping[str, Any]]
) -> list[DriftTest]:
    by_name = {p.get("name"): p for p in params}
    n_mle = _num(record.get("mle_n"), _num(record.get("n"), 0.0))
    n_ref = _num(record.get("n_reference"), 0.0)
    if family in LOCATION_SCALE_FAMILIES and {"mu", "sigma"} <= set(by_name):
        mu, sigma = by_name["mu"], by_name["sigma"]
        values = [
            _num(mu.get("window"), math.nan),
            _num(sigma.get("window"), math.nan),
            _num(mu.get("reference"), math.nan),
            _num(sigma.get("reference"), math.nan),
        ]
        if all(math.isfinite(v) for v in values) and n_mle >= 2 and n_ref >= 2:
            return normal_tests(
                [values[0]], [values[1]], [n_mle], [values[2]], [values[3]], [n_ref]
            )
    tests = []
    for i, p in enumerate(params):
        p_value = _num(p.get("p_value"), math.nan)
        ref_se = _num(p.get("reference_se"), math.nan)
        shift = abs(_num(p.get("window"), math.nan) - _num(p.get("reference"), math.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = ref_se * math.sqrt(n_ref) if n_ref > 0 else math.nan
            effect = shift / unit if unit and math.isfinite(unit) and unit > 0 else math.nan
        tests.append(
            DriftTest(
                str(p.get("name")),
                "location" if i == 0 else "parameter",
                np.array([p_value]),
                np.array([effect]),
            )
        )
    return tests


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


# --------------------------------------------------------------------------- alert tracking


ALERT_SEVERITIES = ("warning", "critical", "recovered")


@dataclass(frozen=True)
class AlertDecision:
    """An alert the tracker decided to send for one window of one feature."""

    feature: str
    severity: str  # warning | critical | recovered
    window_start: Any
    window_end: Any
    record: Mapping[str, Any]


@dataclass
class _FeatureState:
    streak: int = 0  # breaching windows in a row
    ok_streak: int = 0  # ok windows in a row while alerted
    active: str | None = None  # severity of the open alert
    since_alert: int | None = None  # windows since the last warning/critical alert


class AlertTracker:
    """Consecutive-window, cooldown and recovery rules over a stream of per-window severities.

    Feed records in window order per feature with :meth:`update`; it returns the alert to send (or
    ``None``). ``"insufficient"`` windows are neutral: they neither extend nor break a streak.
    ``to_dict()`` / ``from_dict()`` persist the state (JSON, ``POLICY_STATE_VERSION``).
    """

    def __init__(self, policy: Policy | None = None, state: Mapping[str, Any] | None = None):
        self.policy = policy or Policy()
        self._features: dict[str, _FeatureState] = {}
        if state is not None:
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        version = state.get("schema_version")
        if version != POLICY_STATE_VERSION:
            raise PolicyError(
                f"alert tracker state has schema_version {version!r}; "
                f"this version reads {POLICY_STATE_VERSION}"
            )
        for name, fs in (state.get("features") or {}).items():
            self._features[name] = _FeatureState(
                streak=int(fs.get("streak", 0)),
                ok_streak=int(fs.get("ok_streak", 0)),
                active=fs.get("active"),
                since_alert=fs.get("since_alert"),
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": POLICY_STATE_VERSION,
            "features": {k: asdict(v) for k, v in sorted(self._features.items())},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], policy: Policy | None = None) -> AlertTracker:
        return cls(policy, state)

    def active(self, feature: str) -> str | None:
        fs = self._features.get(feature)
        return fs.active if fs else None

    def update(
        self, record: Mapping[str, Any], severity: str | None = None
    ) -> AlertDecision | None:
        """Advance the feature's state by one window; return the alert to send, if any."""
        feature = _require(record, "feature")
        fp = self.policy.for_feature(feature)
        if severity is None:
            # The tracker's own policy decides: a record's stored severity may come from another
            # policy (compare() and the jobs assess with the default one unless told otherwise).
            severity = self.policy.assess(record)
        if severity not in SEVERITIES:
            raise PolicyError(f"feature {feature!r}: unknown severity {severity!r}")
        fs = self._features.setdefault(feature, _FeatureState())
        if severity == "insufficient":
            return None
        if fs.since_alert is not None:
            fs.since_alert += 1

        def alert(kind: str) -> AlertDecision:
            return AlertDecision(
                feature, kind, record.get("window_start"), record.get("window_end"), record
            )

        if severity == "ok":
            fs.streak = 0
            if fs.active is None:
                return None
            fs.ok_streak += 1
            if fs.ok_streak >= fp.recovery:
                fs.active, fs.ok_streak = None, 0
                return alert("recovered") if fp.enabled else None
            return None
        fs.ok_streak = 0
        fs.streak += 1
        if fs.streak < fp.consecutive or not fp.enabled:
            return None
        if fs.active is None:
            if fs.since_alert is not None and fs.since_alert <= fp.cooldown:
                return None
            fs.active, fs.since_alert = severity, 0
            return alert(severity)
        if _SEVERITY_RANK[severity] > _SEVERITY_RANK[fs.active]:
            fs.active, fs.since_alert = severity, 0
            return alert(severity)
        return None

    def run(self, records: Iterable[Mapping[str, Any]]) -> list[AlertDecision]:
        """Update with every record (sorted by feature, window end) and collect the alerts."""
        ordered = sorted(
            records,
            key=lambda r: (
                str(r.get("feature")),
                _sort_key(r.get("window_end")),
                _num(r.get("pane"), 0.0),
            ),
        )
        out = []
        for rec in ordered:
            decision = self.update(rec)
            if decision is not None:
                out.append(decision)
        return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    return (1, value.isoformat() if hasattr(value, "isoformat") else str(value))
