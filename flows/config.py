"""The monitor configuration: one TOML file, validated with pydantic.

Example (every key is documented in docs/flows.md)::

    name = "orders"

    [source]
    paths = ["landing/*.parquet"]
    timestamp_column = "ts"

    [reference]
    path = "reference/reference.json"
    inputs = ["reference-data/*.parquet"]

    [features]
    amount = { kind = "numeric", family = "normal" }
    country = { kind = "categorical" }

    [window]
    size = "1h"

    [policy.default]
    consecutive = 2

    [[notify]]
    name = "ops"
    type = "webhook"
    url_env = "DIVMON_WEBHOOK_URL"

    [history]
    dir = "history"

Relative paths are resolved against the directory of the TOML file; ``gs://`` and ``s3://``
URLs stay URLs (docs/storage.md). Unknown keys and bad values
are errors that name the key (``ConfigError``, a ``ValueError``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from divtransforms import storage
from divtransforms.columns import parse_duration
from divtransforms.families import FAMILIES
from divtransforms.policy import Policy, PolicyError
from divtransforms.storage import Location


class ConfigError(ValueError):
    """The monitor configuration is invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvConfig(_Section):
    delimiter: str | None = Field(
        None, description="field delimiter; default: sniffed from each file's first KiB"
    )
    quote: str = Field('"', description='quote character ("" for none)')
    encoding: str = Field("utf-8", description="text encoding, e.g. latin-1")
    header: bool = Field(True, description="the first line names the columns")
    names: list[str] = Field(default_factory=list, description="column names when header = false")

    @model_validator(mode="after")
    def _check_dialect(self) -> CsvConfig:
        # the rules of pipelines.io.CsvDialect, which flows.monitor.run builds from this (not
        # imported here: the dashboard reads configurations without the readers)
        import codecs

        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}")
        if len(self.quote) > 1:
            raise ValueError(f"quote must be one character (or empty), got {self.quote!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None
        if self.names and self.header:
            raise ValueError("names are for files without a header line (header = false)")
        return self


class SourceConfig(_Section):
    paths: list[str] = Field(min_length=1, description="files or glob patterns of new data")
    format: Literal["parquet", "csv", "jsonl"] | None = None
    timestamp_column: str | None = None
    timestamp_format: str | None = Field(
        None, description="event-time layout: a strptime format or epoch_s/ms/us/ns"
    )
    quarantine_after: int = Field(
        3, ge=1, le=100, description="failed runs of a file before it is quarantined"
    )
    csv: CsvConfig | None = Field(
        None, description="CSV dialect: delimiter, quote, encoding, header (docs/reliability.md)"
    )
    max_future: str = Field(
        "1d",
        description="plausibility horizon: rows whose event time is later than this after the "
        'run\'s wall clock are in no window (counted, logged); "off" lifts it',
    )
    max_age: str = Field(
        "off",
        description='rows whose event time is earlier than this before the run ("off": no bound)',
    )

    @field_validator("max_future", "max_age")
    @classmethod
    def _check_horizon(cls, value: str) -> str:
        from divtransforms.window import horizon_of

        horizon_of(value, None)  # the parser the jobs use; "off" lifts the bound
        return value

    @property
    def max_future_seconds(self) -> float | None:
        """The horizon ahead of the wall clock, in seconds (None: off)."""
        from divtransforms.window import horizon_of

        horizon = horizon_of(self.max_future, None)
        return None if horizon is None else horizon.max_future


class ReferenceConfig(_Section):
    path: str = Field(description="the current reference profile (JSON); versions kept beside it")
    inputs: list[str] = Field(default_factory=list, description="data for build_reference")
    format: Literal["parquet", "csv", "jsonl"] | None = None
    n_bins: int = Field(32, ge=2, le=10_000)
    strategy: Literal["quantile", "uniform"] = "quantile"
    top_n: int = Field(50, ge=1)
    windows: bool = Field(
        False,
        description="keep the reference's own windows ([window] size, source.timestamp_column) "
        "and judge each window against their variation (docs/policy.md)",
    )
    chunk: int | None = Field(
        None, ge=2, description="windows of this many rows, for data without event times"
    )
    season: Literal["hour_of_day", "day_of_week", "hour_of_week"] | None = Field(
        None, description="judge each window against the same season of a windowed reference"
    )
    rolling: str | None = Field(
        None,
        description='trailing period, e.g. "28d": the reference rolls with the checked windows '
        "that did not breach (docs/policy.md, Rolling references)",
    )
    roll_every: str = Field(
        "1d", description="a rolling reference is rebuilt when event time crosses a multiple"
    )
    absorb_after: str | None = Field(
        None,
        description="a change that breached this long is the new normal (default: a quarter of "
        '"rolling"; "off": never)',
    )
    keep_versions: int | None = Field(
        None,
        ge=2,
        description="rolled references kept in versions/ (default: the rolls of two trailing "
        "periods); older ones are deleted",
    )

    @field_validator("rolling", "roll_every")
    @classmethod
    def _check_rolling(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("absorb_after")
    @classmethod
    def _check_absorb(cls, value: str | None) -> str | None:
        if value is not None and value != "off":
            parse_duration(value)
        return value


class FeatureConfig(_Section):
    kind: Literal["numeric", "categorical"] | None = None
    family: str | None = None

    @field_validator("family")
    @classmethod
    def _check_family(cls, value: str | None) -> str | None:
        if value is not None and value not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
        return value


class WindowConfig(_Section):
    size: str | None = Field(
        None, description='event-time window such as "15m", "1h"; omitted: one window per run'
    )

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # the same parser the jobs and compare() use
        return value


class NotifyConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["webhook", "slack", "email", "block", "pagerduty", "alertmanager"]
    url_env: str | None = Field(None, description="environment variable holding the URL")
    url_secret: str | None = Field(None, description="Prefect Secret block holding the URL")
    api_url: str | None = Field(
        None,
        description="pagerduty/email: API endpoint (default: the vendor's); alertmanager: "
        "its base URL (or url_env / url_secret)",
    )
    routing_key_env: str | None = Field(None, description="pagerduty: env var of the key")
    routing_key_secret: str | None = Field(None, description="pagerduty: Secret block of the key")
    labels: dict[str, str] = Field(
        default_factory=dict, description="alertmanager: extra labels (e.g. team, service)"
    )
    ttl_hours: float = Field(
        168.0, gt=0, description="alertmanager: a firing alert's endsAt, if never resolved"
    )
    block: str | None = Field(None, description='saved notification block, "type-slug/name"')
    api_key_env: str | None = None
    api_key_secret: str | None = None
    sender: str | None = None
    to: list[str] = Field(default_factory=list)
    timeout: float = Field(10.0, gt=0, le=300)
    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _check_fields(self) -> NotifyConfig:
        if self.type in ("webhook", "slack"):
            if (self.url_env is None) == (self.url_secret is None):
                raise ValueError(
                    f"notify {self.name!r} ({self.type}): set exactly one of url_env "
                    "or url_secret (URLs are secrets: never put them in the file)"
                )
        elif self.type == "email":
            if (self.api_key_env is None) == (self.api_key_secret is None):
                raise ValueError(
                    f"notify {self.name!r} (email): set exactly one of api_key_env "
                    "or api_key_secret"
                )
            if not self.sender or not self.to:
                raise ValueError(f"notify {self.name!r} (email): sender and to are required")
        elif self.type == "pagerduty":
            if (self.routing_key_env is None) == (self.routing_key_secret is None):
                raise ValueError(
                    f"notify {self.name!r} (pagerduty): set exactly one of routing_key_env "
                    "or routing_key_secret (the integration key is a secret)"
                )
        elif self.type == "alertmanager":
            if (self.api_url is None) + (self.url_env is None) + (self.url_secret is None) != 2:
                raise ValueError(
                    f"notify {self.name!r} (alertmanager): set one of api_url, url_env or "
                    "url_secret"
                )
        elif self.type == "block":
            if not self.block or "/" not in self.block:
                raise ValueError(
                    f'notify {self.name!r} (block): block = "type-slug/name" is '
                    'required, e.g. "slack-webhook/ops"'
                )
        return self


class DeliveryConfig(_Section):
    budget_seconds: float = Field(
        120.0, gt=0, le=3600, description="time one run may spend delivering alerts"
    )


class RunnerConfig(_Section):
    # Empty: local files are checked in this process (pipelines.local) and everything else on
    # Beam's FnApiRunner; any Beam option (e.g. --runner=DataflowRunner) selects the Beam job.
    pipeline_args: list[str] = Field(default_factory=list)


class HistoryConfig(_Section):
    dir: str = "history"


class StateConfig(_Section):
    dir: str | None = Field(None, description="default: <history>/_state")
    lease_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="state on a bucket: the run lease's length (renewed every third of it)",
    )


class DashboardConfig(_Section):
    path: str | None = Field(None, description="HTML file rendered after each run")
    title: str = "Drift dashboard"
    base_url: str | None = Field(
        None,
        description="where users open the dashboard (http/https), for links in alert messages",
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL another machine opens")
        return value


class MetricsConfig(_Section):
    """Prometheus metrics: ``/metrics`` of ``divmon serve``; textfile / Pushgateway after a run."""

    port: int | None = Field(
        None, ge=0, le=65535, description="divmon serve: /metrics port (None: no endpoint)"
    )
    host: str = Field("127.0.0.1", description="divmon serve: address /metrics listens on")
    textfile: str | None = Field(
        None, description="after each run: node-exporter textfile (*.prom), written atomically"
    )
    pushgateway: str | None = Field(None, description="after each run: Pushgateway URL")
    pushgateway_env: str | None = Field(None, description="env var holding the Pushgateway URL")

    @field_validator("textfile")
    @classmethod
    def _check_textfile(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("the node-exporter textfile collector reads only *.prom files")
        if value is not None and "://" in value:
            raise ValueError("the node-exporter textfile is a local file (no bucket URL)")
        return value


class ExportConfig(_Section):
    """A copy of the drift history in a database: ``kind = "sql"`` or ``"bigquery"``."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["sql", "bigquery"]
    url: str | None = Field(None, description='sql: SQLAlchemy URL, e.g. "sqlite:///drift.db"')
    url_env: str | None = Field(None, description="sql: env var holding the URL (passwords)")
    url_secret: str | None = Field(None, description="sql: Secret block holding the URL")
    table: str = Field("drift_records", description='sql: table; bigquery: "project.dataset.t"')
    db_schema: str | None = Field(None, description="sql: database schema (Postgres)")
    location: str | None = Field(None, description="bigquery: dataset location")

    @model_validator(mode="after")
    def _check(self) -> ExportConfig:
        if self.kind == "sql":
            if (self.url is None) + (self.url_env is None) + (self.url_secret is None) != 2:
                raise ValueError("export (sql): set one of url, url_env or url_secret")
        elif self.table.count(".") != 2:
            raise ValueError('export (bigquery): table = "project.dataset.table" is required')
        return self

    @property
    def key(self) -> str:
        return self.name or f"{self.kind}-{self.table}"


class ScheduleConfig(_Section):
    cron: str | None = None
    interval_seconds: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ScheduleConfig:
        if self.cron is not None and self.interval_seconds is not None:
            raise ValueError("schedule: set cron or interval_seconds, not both")
        return self


class FreshnessConfig(_Section):
    stale_after_runs: int = Field(
        3, ge=1, description="runs in a row without new data before a stale alert"
    )
    stale_after: str | None = Field(
        None, description='also stale after this long without new data, e.g. "6h"'
    )

    @field_validator("stale_after")
    @classmethod
    def _check_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class MonitorConfig(_Section):
    name: str = Field("divtransforms", pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceConfig
    reference: ReferenceConfig
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    window: WindowConfig = Field(default_factory=WindowConfig)
    policy: dict[str, Any] = Field(default_factory=dict)
    notify: list[NotifyConfig] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    export: list[ExportConfig] = Field(default_factory=list)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)
    base_dir: str = Field(".", description="set by load_config: the TOML file's directory")

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Policy.from_dict(value)
        except PolicyError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _known_schemes(self) -> MonitorConfig:
        paths = {
            "source.paths": self.source.paths,
            "reference.path": [self.reference.path],
            "reference.inputs": self.reference.inputs,
            "history.dir": [self.history.dir],
            "state.dir": [self.state.dir] if self.state.dir else [],
            "dashboard.path": [self.dashboard.path] if self.dashboard.path else [],
        }
        for key, values in paths.items():
            for value in values:
                try:
                    storage.location(value)
                except storage.StorageError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _windowed_reference(self) -> MonitorConfig:
        ref = self.reference
        if ref.windows and ref.chunk is not None:
            raise ValueError("reference: windows (event time) and chunk exclude each other")
        if ref.windows and not (self.window.size and self.source.timestamp_column):
            raise ValueError(
                "reference.windows needs [window] size and source.timestamp_column: the "
                "reference's windows are the monitor's"
            )
        if ref.season is not None and not ref.windows:
            raise ValueError("reference.season needs reference.windows = true")
        if ref.rolling is None:
            if ref.absorb_after is not None or ref.keep_versions is not None:
                raise ValueError("reference.absorb_after and keep_versions need reference.rolling")
            return self
        if not ref.windows:
            raise ValueError(
                "reference.rolling needs reference.windows = true (a rolling reference is made "
                "of windows: the seed's and the checked ones)"
            )
        self.rolling_micros()
        return self

    @model_validator(mode="after")
    def _unique_targets(self) -> MonitorConfig:
        names = [n.name for n in self.notify]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"notify: target names must be unique, repeated: {dupes}")
        keys = [e.key for e in self.export]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"export: names must be unique (set name =), repeated: {dupes}")
        return self

    # ----------------------------------------------------------------- resolved helpers

    def resolve_uri(self, path: str) -> str:
        """:meth:`resolve` as a string."""
        return str(self.resolve(path))

    def resolve(self, path: str) -> Location:
        """A bucket URL (``gs://``, ``s3://``) as it is; a local path as a ``Path``, relative
        ones against the config file's folder (``divtransforms.storage.location``)."""
        loc = storage.location(path)
        if isinstance(loc, str):  # a bucket URL (storage.location makes anything else a Path)
            return loc
        return loc if loc.is_absolute() else (Path(self.base_dir) / loc)

    @property
    def history_dir(self) -> Location:
        return self.resolve(self.history.dir)

    @property
    def state_dir(self) -> Location:
        if self.state.dir:
            return self.resolve(self.state.dir)
        return storage.join(self.history_dir, "_state")

    @property
    def reference_path(self) -> Location:
        return self.resolve(self.reference.path)

    @property
    def dashboard_path(self) -> Location | None:
        return self.resolve(self.dashboard.path) if self.dashboard.path else None

    def source_patterns(self) -> list[str]:
        return [self.resolve_uri(p) for p in self.source.paths]

    def reference_patterns(self) -> list[str]:
        return [self.resolve_uri(p) for p in self.reference.inputs]

    def rolling_micros(self) -> tuple[int, int, int | None] | None:
        """``(rolling, roll_every, absorb_after)`` of ``[reference]`` in microseconds, checked
        against the window (``divtransforms.rolling_store.rolling_spans``; absorb None: never); None
        without a rolling reference."""
        ref = self.reference
        if ref.rolling is None:
            return None
        from divtransforms.rolling_store import rolling_spans

        return rolling_spans(
            self.window.size, ref.rolling, ref.roll_every, ref.absorb_after, "reference."
        )

    def build_policy(self) -> Policy:
        return Policy.from_dict(self.policy)

    def families(self) -> dict[str, str]:
        return {k: v.family for k, v in self.features.items() if v.family}

    def kinds(self) -> dict[str, str]:
        return {k: v.kind for k, v in self.features.items() if v.kind}

    def thresholds(self) -> dict[str, tuple[str, float, float]]:
        """``{feature: (metric, warn, critical)}`` with ``"*"`` for the default (dashboard API)."""
        policy = self.build_policy()
        out = {"*": (policy.default.metric, policy.default.warn, policy.default.critical)}
        for name, fp in policy.features.items():
            out[name] = (fp.metric, fp.warn, fp.critical)
        return out


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(value, dict)
            else f" (got {value!r})"
        )
        parts.append(f"{loc}: {msg}{shown}")
    return "; ".join(parts)


def parse_config(
    data: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".", origin: str = "<config>"
) -> MonitorConfig:
    """Validate a config mapping (as read from TOML)."""
    if "base_dir" in data:
        raise ConfigError(f"{origin}: base_dir: unknown key")
    try:
        return MonitorConfig.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_format_errors(exc)}") from None


def load_config(path: str | os.PathLike[str]) -> MonitorConfig:
    """Read and validate a monitor TOML file; relative paths resolve against its directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.resolve().parent, origin=str(path))


def config_of(
    config_path: str | os.PathLike[str] | None = None,
    config: MonitorConfig | dict[str, Any] | None = None,
) -> MonitorConfig:
    """The monitor configuration a flow was given: a TOML file path, or the configuration itself
    (a deployment's parameter, validated; its relative paths resolve against ``base_dir``).
    Exactly one of the two."""
    if (config_path is None) == (config is None):
        raise ConfigError("give the monitor configuration as config_path or as config (not both)")
    if config is None:
        assert config_path is not None  # (exactly one of the two, checked above)
        return load_config(config_path)
    if isinstance(config, MonitorConfig):
        return config
    data = dict(config)
    base_dir = data.pop("base_dir", ".")
    return parse_config(data, base_dir=base_dir, origin="config parameter")


def window_seconds(size: str | None) -> float | None:
    """Seconds of a window size (``divtransforms.columns.parse_duration``); None: no window."""
    if size is None:
        return None
    try:
        return parse_duration(size)
    except ValueError as exc:
        raise ConfigError(f"bad window size {size!r}: {exc}") from None
