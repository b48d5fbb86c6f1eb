"""What a check is: one frozen :class:`CheckJob` (reference, source, window, lateness, policy, MLE
state, output), built once by ``divmon check``, ``python -m pipelines.check_job`` or the Prefect
flow, and handed whole to :func:`pipelines.check_job.run_check` / ``run_streaming_check`` and the
directory watcher; and what it produced, a :class:`CheckResult` (with :func:`summarize`, its
per-feature summary), whichever engine ran it. Beam-free, so building and validating a job costs no
Beam import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import pyarrow as pa

from divtransforms.columns import parse_duration
from divtransforms.eventtime import DEFAULT_MAX_FUTURE, Horizon
from divtransforms.profile import ReferenceProfile
from divtransforms.records import SEVERITIES
from divtransforms.settings import BuildSettings, CheckSettings

__all__ = [
    "BuildJob",
    "CheckJob",
    "CheckJobError",
    "CheckResult",
    "Source",
    "categorical_kinds",
    "exact_from_flags",
    "load_reference",
    "parse_families",
    "split_names",
    "summarize",
]


class CheckJobError(ValueError):
    """A check job's settings do not go together (the message says how to fix them)."""


def load_reference(reference: ReferenceProfile | str) -> ReferenceProfile:
    """A profile as given, or read from a local path or a bucket URL."""
    if isinstance(reference, ReferenceProfile):
        return reference
    return ReferenceProfile.load(str(reference))


S = TypeVar("S", CheckSettings, BuildSettings)


def _settings_of(job: Any, cls: type[S], **given: Any) -> S:
    """The settings of a job: each field of ``cls`` the job has a field of that name for (the
    same meaning), the others as ``given`` or their defaults."""
    names = {f.name for f in fields(cls)} - set(given)
    return cls(**{n: getattr(job, n) for n in names if hasattr(job, n)}, **given)


@dataclass(frozen=True)
class Source:
    """Where the data comes from: files (batch), Pub/Sub JSON messages or a watched directory."""

    inputs: tuple[str, ...] = ()
    input_format: str | None = None
    pubsub_subscription: str | None = None
    pubsub_topic: str | None = None
    event_time_field: str | None = None
    watch_directory: str | None = None
    watch_interval: float = 5.0
    watch_stop_after: float | None = None
    csv: Any = None  # pipelines.io.CsvDialect of CSV inputs (None: the delimiter is sniffed)

    @property
    def pubsub(self) -> bool:
        return bool(self.pubsub_subscription or self.pubsub_topic)

    @property
    def streaming(self) -> bool:
        """A source without an end: Pub/Sub or a watched directory."""
        return self.pubsub or bool(self.watch_directory)

    @classmethod
    def from_options(cls, options: Any) -> Source:
        """From an argparse namespace or Beam ``InputOptions`` (the same attribute names)."""
        inputs = getattr(options, "inputs", None) or ()
        return cls(
            tuple([inputs] if isinstance(inputs, str) else (str(i) for i in inputs)),
            getattr(options, "input_format", None),
            getattr(options, "pubsub_subscription", None),
            getattr(options, "pubsub_topic", None),
            getattr(options, "event_time_field", None),
            getattr(options, "watch_directory", None),
            float(getattr(options, "watch_interval", None) or 5.0),
            getattr(options, "watch_stop_after", None),
            _csv_dialect(options),
        )


def _csv_dialect(options: Any) -> Any:
    from pipelines.io import CsvDialect, InputError

    try:
        return CsvDialect.from_options(options)
    except InputError as exc:
        raise CheckJobError(str(exc)) from None


@dataclass(frozen=True)
class CheckJob:
    """One check: its data, its reference, how it windows and judges, and where results go.

    ``output`` is a directory (local or a Beam filesystem URL) for the records; ``None`` keeps
    them only in the returned result (batch). ``mle_state`` seeds the running estimates;
    ``mle_state_out`` is where the command writes the updated state. ``policy`` assesses every
    record once (``"default"``, a ``Policy``, or None for no severities).
    """

    reference: ReferenceProfile | str
    source: Source = field(default_factory=Source)
    output: str | None = None
    window: str | float | None = None
    timestamp_column: str | None = None
    allowed_lateness: str | float | None = None
    timestamp_format: str | None = None
    policy: Any = "default"
    mle_state: Mapping[str, Mapping[str, Any]] | None = None
    mle_state_out: str | None = None
    run_id: str | None = None
    jsonl: bool = False
    bigquery_table: str | None = None  # "project.dataset.table": records also go to BigQuery
    season: str | None = None  # a windowed reference's season (divtransforms.variation)
    # The plausible event times (divtransforms.eventtime.Horizon): at most max_future after the
    # run's wall clock ``now`` (epoch seconds, fixed when the job is made) and, with max_age, at
    # most that long before it; "off" (or None) lifts a bound.
    max_future: str | float | None = DEFAULT_MAX_FUTURE
    max_age: str | float | None = None
    now: float = field(default_factory=time.time, compare=False)
    # Also return the checked windows' statistics (``CheckResult.windows``, a rolling
    # reference's input: ``divtransforms.rolling``); needs event-time windows.
    keep_windows: bool = False

    def __post_init__(self) -> None:
        for name in ("window", "allowed_lateness"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_duration(value)
                except ValueError as exc:
                    raise CheckJobError(f"--{name.replace('_', '-')}: {exc}") from None
        try:
            self.horizon()
        except ValueError as exc:
            raise CheckJobError(f"--{str(exc).replace('_', '-')}") from None
        if self.source.watch_directory and (self.window is None or not self.timestamp_column):
            raise CheckJobError(
                "watching a directory needs --window and --timestamp-column (event-time windows)"
            )
        if self.source.pubsub and self.window is None:
            raise CheckJobError("a Pub/Sub check needs --window (event-time windows)")
        if self.bigquery_table is not None and self.bigquery_table.count(".") != 2:
            raise CheckJobError('--bigquery-table must be "project.dataset.table"')
        if self.window is not None and not (self.timestamp_column or self.source.pubsub):
            raise CheckJobError("--window needs --timestamp-column (the event time of each row)")
        if self.season is not None:
            from divtransforms.variation import SEASONS

            if self.season not in SEASONS:
                raise CheckJobError(f"--season must be one of {', '.join(SEASONS)}")
            if self.window is None:
                raise CheckJobError("--season needs --window (event-time windows)")
        if self.keep_windows and self.window is None:
            raise CheckJobError("keeping the checked windows needs --window (event-time windows)")
        if self.keep_windows and self.source.streaming:
            raise CheckJobError("keeping the checked windows is for batch checks, not streaming")

    @classmethod
    def from_options(
        cls,
        options: Any,
        *,
        policy: Any = "default",
        mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> CheckJob:
        """From an argparse namespace (``divmon check``) or Beam ``CheckOptions`` +
        ``InputOptions`` (``python -m pipelines.check_job``): both use these attribute names."""
        if not getattr(options, "reference", None):
            raise CheckJobError("--reference is required")
        return cls(
            reference=options.reference,
            source=Source.from_options(options),
            output=getattr(options, "output", None),
            window=getattr(options, "window", None),
            timestamp_column=getattr(options, "timestamp_column", None),
            allowed_lateness=getattr(options, "allowed_lateness", None),
            timestamp_format=getattr(options, "timestamp_format", None),
            policy=policy,
            mle_state=mle_state,
            mle_state_out=getattr(options, "mle_state_out", None),
            run_id=getattr(options, "run_id", None),
            jsonl=bool(getattr(options, "jsonl", False)),
            bigquery_table=getattr(options, "bigquery_table", None),
            season=getattr(options, "season", None),
            max_future=getattr(options, "max_future", None) or DEFAULT_MAX_FUTURE,
            max_age=getattr(options, "max_age", None),
        )

    def horizon(self) -> Horizon | None:
        """The plausible event times of this job (None: unbounded). A batch job's bounds are
        relative to ``now``; a streaming or watching job, which runs for days, reads the clock
        at each batch."""
        return self.settings.horizon()

    @property
    def settings(self) -> CheckSettings:
        """How this check windows and judges (``divtransforms.settings.CheckSettings``), as
        every driver takes it. ``run_id`` None: the driver makes one."""
        return _settings_of(self, CheckSettings, now=None if self.source.streaming else self.now)

    def columns(self, profile: ReferenceProfile) -> list[str]:
        """The columns a file source must read: the features and the event time."""
        cols = list(profile.features)
        if self.timestamp_column and self.timestamp_column not in cols:
            cols.append(self.timestamp_column)
        return cols


def parse_families(text: str | None) -> dict[str, str | None]:
    """``"a=lognormal,b=none"`` -> ``{"a": "lognormal", "b": None}``."""
    out: dict[str, str | None] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"--families expects feature=family pairs, got {item!r}")
        name, fam = (s.strip() for s in item.split("=", 1))
        out[name] = None if fam.lower() in ("none", "") else fam
    return out


def split_names(text: str | None) -> list[str] | None:
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    return names or None


def categorical_kinds(text: str | None) -> dict[str, str]:
    """``"c,d"`` (the ``--categorical`` option) -> ``{"c": "categorical", "d": "categorical"}``."""
    return {n: "categorical" for n in split_names(text) or []}


def exact_from_flags(exact_quantiles: bool, approximate_quantiles: bool) -> bool | None:
    """``exact`` for a :class:`BuildJob` from the two flags (None: decide by size)."""
    return True if exact_quantiles else (False if approximate_quantiles else None)


@dataclass(frozen=True)
class BuildJob:
    """One reference build: its data, how features are chosen and binned, and where it runs.

    ``output`` is the profile's path (local or a bucket URL; ``None``: not saved). ``window``
    (seconds or a duration) with ``timestamp_column``, or ``chunk`` (rows), also summarises the
    reference's own windows (``divtransforms.variation``); ``chunk`` windows are rows in reading
    order, so only the in-process engine builds them. ``exact`` None decides the Beam job's
    quantiles by size (the in-process engine's are always exact); False asks for Beam's
    ``ApproximateQuantiles``. ``pipeline_args`` are Beam pipeline options: any of them runs the
    Beam job (:mod:`pipelines.engine`). ``work_name`` names a remote run's work folder;
    ``cache_mb`` is the in-process engine's cache between passes.
    """

    inputs: tuple[str, ...]
    output: str | None = None
    features: tuple[str, ...] | None = None
    kinds: Mapping[str, str] | None = None
    exclude: tuple[str, ...] = ()
    families: Mapping[str, str | None] | None = None
    n_bins: int = 32
    strategy: str = "quantile"
    top_n: int = 50
    input_format: str | None = None
    exact: bool | None = None
    timestamp_column: str | None = None
    window: str | float | None = None
    chunk: int | None = None
    timestamp_format: str | None = None
    pipeline_args: tuple[str, ...] = ()
    work_name: str = "reference"
    cache_mb: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            object.__setattr__(self, "inputs", (self.inputs,))
        if not self.inputs:
            raise CheckJobError("no input given (--input PATH_OR_GLOB)")
        if self.window is not None:
            try:
                parse_duration(self.window)
            except ValueError as exc:
                raise CheckJobError(f"--window: {exc}") from None

    @property
    def window_seconds(self) -> float | None:
        return None if self.window is None else parse_duration(self.window)

    @property
    def settings(self) -> BuildSettings:
        """How this build chooses, bins and windows its features
        (``divtransforms.settings.BuildSettings``), as every builder takes it."""
        return _settings_of(self, BuildSettings)

    @classmethod
    def from_options(cls, options: Any, pipeline_args: Any = ()) -> BuildJob:
        """From ``divmon reference build``'s argparse namespace or Beam ``ReferenceOptions`` +
        ``InputOptions`` (``python -m pipelines.reference_job``): both use these names (the
        number of bins is ``bins`` or ``n_bins``)."""
        inputs = getattr(options, "inputs", None) or ()
        n_bins = getattr(options, "n_bins", None) or getattr(options, "bins", None) or 32
        features = split_names(getattr(options, "features", None))
        return cls(
            tuple([inputs] if isinstance(inputs, str) else (str(i) for i in inputs)),
            getattr(options, "output", None),
            features=tuple(features) if features else None,
            kinds=categorical_kinds(getattr(options, "categorical", None)),
            exclude=tuple(split_names(getattr(options, "exclude", None)) or ()),
            families=parse_families(getattr(options, "families", None)),
            n_bins=int(n_bins),
            strategy=getattr(options, "strategy", None) or "quantile",
            top_n=int(getattr(options, "top_n", None) or 50),
            input_format=getattr(options, "input_format", None),
            exact=exact_from_flags(
                bool(getattr(options, "exact_quantiles", False)),
                bool(getattr(options, "approximate_quantiles", False)),
            ),
            timestamp_column=getattr(options, "timestamp_column", None),
            window=getattr(options, "window", None) or None,
            chunk=getattr(options, "chunk", None),
            timestamp_format=getattr(options, "timestamp_format", None),
            pipeline_args=tuple(pipeline_args),
            cache_mb=getattr(options, "cache_mb", None),
        )


@dataclass
class CheckResult:
    """What a check produced. ``records`` has ``DRIFT_RECORD_SCHEMA``; ``mle_state`` is the
    cumulative ``{feature: accumulator dict}`` to pass as ``mle_state`` to the next run."""

    records: pa.Table
    mle_state: dict[str, dict[str, Any]]
    output_paths: list[str]
    n_rows_read: int
    per_feature: list[dict[str, Any]]
    run_id: str
    reference_id: str
    metrics: dict[str, int] = field(default_factory=dict)
    dataflow: Any = None  # pipelines.remote.DataflowJob when the job ran on Dataflow
    # ``CheckJob.keep_windows``: the checked windows' statistics on the reference's bins
    # (``divtransforms.variation.WindowedSummary``), the same whichever engine ran the check
    windows: Any = None


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def summarize(records: pa.Table) -> list[dict[str, Any]]:
    """Per feature: windows, samples (last pane per window), missing, invalid, worst JS,
    smallest p-value, worst severity, worst quality severity and the schema issues' codes."""
    rows = records.select(
        [
            "feature",
            "kind",
            "window_start",
            "pane",
            "n",
            "n_missing",
            "n_invalid",
            "js_divergence",
            "p_value",
            "severity",
            "quality_severity",
            "schema_issues",
        ]
    ).to_pylist()
    last: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in rows:
        window = (r["feature"], r["window_start"])
        if window not in last or r["pane"] > last[window]["pane"]:
            last[window] = r
    out: dict[str, dict[str, Any]] = {}
    for (feature, _), r in sorted(last.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        s = out.setdefault(
            feature,
            {
                "feature": feature,
                "windows": 0,
                "n": 0,
                "n_missing": 0,
                "n_invalid": 0,
                "max_js": math.nan,
                "min_p_value": math.nan,
                "severity": None,
                "quality": None,
                "issues": [],
                "kind": r["kind"],
            },
        )
        s["windows"] += 1
        s["n"] += r["n"]
        s["n_missing"] += r["n_missing"]
        s["n_invalid"] += r["n_invalid"]
        for key, value, better in (
            ("max_js", r["js_divergence"], max),
            ("min_p_value", r["p_value"], min),
        ):
            if value is not None and not math.isnan(value):
                s[key] = value if math.isnan(s[key]) else better(s[key], value)
        for key, sev in (("severity", r["severity"]), ("quality", r["quality_severity"])):
            if sev is not None and (s[key] is None or _RANK[sev] > _RANK[s[key]]):
                s[key] = sev
        for issue in r["schema_issues"] or []:
            if issue["code"] not in s["issues"]:
                s["issues"].append(issue["code"])
    return list(out.values())
