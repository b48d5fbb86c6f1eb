"""Prometheus metrics of a monitor, read from its history, alert log and state at collection time.

``divmon serve`` exposes them on ``/metrics`` (:func:`start_metrics_server`); a cron-style
``divmon run`` writes them to a node-exporter textfile or pushes them to a Pushgateway after the
run (:func:`publish_metrics`). The collector reads the files each monitor run writes, so the
endpoint shows every run's result, whichever process ran it; it re-reads only when a file changed.

Labels are bounded: ``monitor`` (the config's name), ``feature`` (the reference's features),
``metric`` (one of the policy's metrics), ``test``, ``level`` and ``severity`` (fixed sets). No run
id, window or timestamp is ever a label. Names carry their unit (``_seconds``, ``_ratio``,
``_bits`` is not used because the judged metric may be PSI or Hellinger: ``divtransforms_drift_
value`` is in the metric's own unit, named by the ``metric`` label).

=====================================================  =======  ==================================
metric                                                  type     labels
=====================================================  =======  ==================================
``divtransforms_drift_value``                           gauge    monitor, feature, metric
``divtransforms_drift_threshold``                       gauge    monitor, feature, metric, level
``divtransforms_drift_p_value``                         gauge    monitor, feature, test
``divtransforms_drift_severity``                        gauge    monitor, feature (0 ok,
                                                                 1 insufficient, 2 warning,
                                                                 3 critical)
``divtransforms_window_samples``                        gauge    monitor, feature
``divtransforms_window_missing_ratio``                  gauge    monitor, feature
``divtransforms_window_invalid_ratio``                  gauge    monitor, feature
``divtransforms_window_unseen_ratio``                   gauge    monitor, feature (categorical:
                                                                 values not in the reference)
``divtransforms_quality_severity``                      gauge    monitor, feature (data-quality
                                                                 verdict, codes as above)
``divtransforms_window_end_timestamp_seconds``          gauge    monitor, feature
``divtransforms_cusum``                                 gauge    monitor, feature, detector
                                                                 (mean, histogram: the
                                                                 sequential detector's statistic)
``divtransforms_cusum_threshold``                       gauge    monitor, feature, detector
``divtransforms_last_success_timestamp_seconds``        gauge    monitor
``divtransforms_alerts_outstanding``                    gauge    monitor, feature
``divtransforms_alerts_total``                          counter  monitor, feature, severity
``divtransforms_history_readable``                      gauge    monitor (0 when a file failed)
=====================================================  =======  ==================================
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from divtransforms import storage
from divtransforms.policy import judged_values
from divtransforms.records import SEVERITY_RANK
from flows.config import MonitorConfig

log = logging.getLogger(__name__)

PREFIX = "divtransforms"

#: Every metric name this module exposes (the Grafana test checks its queries against it).
METRIC_NAMES = (
    "divtransforms_drift_value",
    "divtransforms_drift_threshold",
    "divtransforms_drift_p_value",
    "divtransforms_cusum",
    "divtransforms_cusum_threshold",
    "divtransforms_drift_severity",
    "divtransforms_window_samples",
    "divtransforms_window_missing_ratio",
    "divtransforms_window_invalid_ratio",
    "divtransforms_window_unseen_ratio",
    "divtransforms_quality_severity",
    "divtransforms_window_end_timestamp_seconds",
    "divtransforms_last_success_timestamp_seconds",
    "divtransforms_alerts_outstanding",
    "divtransforms_alerts_total",
    "divtransforms_history_readable",
)

_LATEST_COLUMNS = (
    "cusum",
    "cusum_threshold",
    "cusum_histogram",
    "cusum_histogram_threshold",
    "feature",
    "window_start",
    "window_end",
    "pane",
    "created_at",
    "n",
    "n_missing",
    "n_invalid",
    "missing_rate",
    "invalid_rate",
    "unseen_rate",
    "p_value",
    "mle_p_value",
    "severity",
    "quality_severity",
    "js_divergence",
    "js_corrected",
    "js_bias",
    "js_distance",
    "hellinger",
    "psi",
    "kl_divergence",
    "kl_reverse",
)


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return None


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Snapshot:
    """What the metrics show, computed from the monitor's files."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # feature -> record
    last_success: float | None = None
    outstanding: dict[str, int] = field(default_factory=dict)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    readable: bool = True


def latest_records(history_dir: storage.Location) -> dict[str, dict[str, Any]]:
    """The newest record per feature (latest window end, then pane, then creation time)."""
    from flows.monitor.history import read_history

    table = read_history(history_dir)
    if table.num_rows == 0:
        return {}
    rows = table.select([c for c in _LATEST_COLUMNS if c in table.column_names]).to_pylist()
    latest: dict[str, dict[str, Any]] = {}

    def key(r: Mapping[str, Any]) -> tuple[float, int, float]:
        end = _ts(r.get("window_end")) or _ts(r.get("created_at")) or 0.0
        return (end, int(r.get("pane") or 0), _ts(r.get("created_at")) or 0.0)

    for r in rows:
        cur = latest.get(r["feature"])
        if cur is None or key(r) >= key(cur):
            latest[r["feature"]] = r
    return latest


SUCCESS_FILE = "last_success.json"


def record_success(config: MonitorConfig, when: datetime | None = None) -> None:
    """Note that a run finished without error (also a run that found no new data)."""
    from divtransforms.records import atomic_write_json

    when = when or datetime.now(UTC)
    atomic_write_json(
        storage.join(config.state_dir, SUCCESS_FILE),
        {"schema_version": 1, "finished_at": when.isoformat()},
    )


def _last_success(config: MonitorConfig, runs: list[dict[str, Any]]) -> float | None:
    import json

    stamps = [_ts(runs[-1].get("finished_at"))] if runs else []
    try:
        raw = storage.read_bytes(storage.join(config.state_dir, SUCCESS_FILE))
        stamps.append(_ts(json.loads(raw).get("finished_at")))
    except storage.StorageNotFound:
        pass
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


def read_snapshot(config: MonitorConfig) -> Snapshot:
    from flows.alerts.outbox import AlertLog
    from flows.monitor.state import StateStore

    snap = Snapshot()
    try:
        snap.latest = latest_records(config.history_dir)
    except Exception as exc:  # a scrape must answer; the gauge says the history is unreadable
        log.warning("metrics: cannot read the history under %s: %s", config.history_dir, exc)
        snap.readable = False
    try:
        state = StateStore.for_config(config).load()
        snap.last_success = _last_success(config, state.runs)
    except Exception as exc:
        log.warning("metrics: cannot read the monitor state: %s", exc)
        snap.readable = False
    try:
        entries = AlertLog.open(config.history_dir).entries
    except Exception as exc:
        log.warning("metrics: cannot read the alert log: %s", exc)
        snap.readable = False
        entries = []
    for e in entries:
        feature = str(e.get("feature"))
        key = (feature, str(e.get("severity")))
        snap.alerts[key] = snap.alerts.get(key, 0) + 1
        snap.outstanding.setdefault(feature, 0)
        if e.get("status") != "delivered":
            snap.outstanding[feature] += 1
    for feature in snap.latest:
        snap.outstanding.setdefault(feature, 0)
    return snap


def _fingerprint(config: MonitorConfig) -> tuple:
    parts: list[tuple[str, int, int]] = []
    for path in (
        storage.join(config.history_dir, "_alerts.json"),
        storage.join(config.state_dir, "state.json"),
        storage.join(config.state_dir, SUCCESS_FILE),
    ):
        try:
            info = storage.stat(path)
            parts.append((str(path), info.size, info.mtime_ns))
        except OSError:
            parts.append((str(path), -1, -1))
    for info in storage.glob(storage.join(config.history_dir, "date=*", "*.parquet")):
        parts.append((storage.name(info.path), info.size, info.mtime_ns))
    return tuple(parts)


class MonitorCollector:
    """A ``prometheus_client`` collector of one monitor (register it on a ``CollectorRegistry``)."""

    def __init__(self, config: MonitorConfig):
        self.config = config
        self.policy = config.build_policy()
        self._cache: tuple[tuple, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        fp = _fingerprint(self.config)
        if self._cache is None or self._cache[0] != fp:
            self._cache = (fp, read_snapshot(self.config))
        return self._cache[1]

    def describe(self) -> list:
        return []  # collected lazily: registering must not read the files

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.snapshot()
        mon = self.config.name

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["monitor", *labels])

        value = gauge(
            "drift_value",
            "The drift metric the policy judges (js_divergence: bias-corrected, bits), "
            "of the latest window",
            ["feature", "metric"],
        )
        threshold = gauge(
            "drift_threshold",
            "The policy's floor on the judged metric",
            ["feature", "metric", "level"],
        )
        p_value = gauge(
            "drift_p_value",
            "p-value of the latest window's test (histogram: G-test; mle: parameter test)",
            ["feature", "test"],
        )
        severity = gauge(
            "drift_severity",
            "Severity of the latest window: 0 ok, 1 insufficient, 2 warning, 3 critical",
            ["feature"],
        )
        samples = gauge("window_samples", "Binned samples in the latest window", ["feature"])
        missing = gauge(
            "window_missing_ratio", "Missing values / values read, latest window", ["feature"]
        )
        invalid = gauge(
            "window_invalid_ratio", "Invalid values / values read, latest window", ["feature"]
        )
        unseen = gauge(
            "window_unseen_ratio",
            "Values absent from the reference / values read, latest window (categorical)",
            ["feature"],
        )
        quality = gauge(
            "quality_severity",
            "Data-quality severity of the latest window (missing/invalid/unseen rates, schema): "
            "0 ok, 1 insufficient, 2 warning, 3 critical",
            ["feature"],
        )
        window_end = gauge(
            "window_end_timestamp_seconds",
            "End of the latest checked window (creation time for unwindowed checks)",
            ["feature"],
        )
        cusum = gauge(
            "cusum",
            "The sequential detector (CUSUM over windows) at the latest window, in score units; "
            "a persistent drift alert when above divtransforms_cusum_threshold",
            ["feature", "detector"],
        )
        cusum_threshold = gauge(
            "cusum_threshold", "The sequential detector's threshold", ["feature", "detector"]
        )
        for feature, r in sorted(snap.latest.items()):
            fp = self.policy.for_feature(feature)
            for detector, stat, limit in (
                ("mean", "cusum", "cusum_threshold"),
                ("histogram", "cusum_histogram", "cusum_histogram_threshold"),
            ):
                if r.get(stat) is not None and not math.isnan(_f(r.get(stat))):
                    cusum.add_metric([mon, feature, detector], _f(r[stat]))
                    cusum_threshold.add_metric([mon, feature, detector], _f(r.get(limit)))
            cols = {k: [_f(r.get(k))] for k in ("js_divergence", "js_bias", "js_corrected")}
            cols[fp.metric] = [_f(r.get(fp.metric))]
            value.add_metric([mon, feature, fp.metric], float(judged_values(cols, fp.metric)[0]))
            threshold.add_metric([mon, feature, fp.metric, "warning"], fp.warn)
            threshold.add_metric([mon, feature, fp.metric, "critical"], fp.critical)
            p_value.add_metric([mon, feature, "histogram"], _f(r.get("p_value")))
            if not math.isnan(_f(r.get("mle_p_value"))):  # features with a fitted family
                p_value.add_metric([mon, feature, "mle"], _f(r.get("mle_p_value")))
            severity.add_metric(
                [mon, feature], float(SEVERITY_RANK.get(str(r.get("severity")), math.nan))
            )
            n, n_missing, n_invalid = (int(r.get(k) or 0) for k in ("n", "n_missing", "n_invalid"))
            total = n + n_missing + n_invalid
            samples.add_metric([mon, feature], float(n))
            missing.add_metric(
                [mon, feature],
                _f(r["missing_rate"])
                if r.get("missing_rate") is not None
                else (n_missing / total if total else math.nan),
            )
            invalid.add_metric(
                [mon, feature],
                _f(r["invalid_rate"])
                if r.get("invalid_rate") is not None
                else (n_invalid / total if total else math.nan),
            )
            if not math.isnan(_f(r.get("unseen_rate"))):  # categorical features
                unseen.add_metric([mon, feature], _f(r["unseen_rate"]))
            if r.get("quality_severity") in SEVERITY_RANK:
                quality.add_metric([mon, feature], float(SEVERITY_RANK[r["quality_severity"]]))
            end = _ts(r.get("window_end")) or _ts(r.get("created_at"))
            if end is not None:
                window_end.add_metric([mon, feature], end)
        yield from (value, threshold, p_value, severity, samples, missing, invalid, unseen)
        yield from (quality, window_end, cusum, cusum_threshold)

        last = gauge("last_success_timestamp_seconds", "When the last run finished", [])
        if snap.last_success is not None:
            last.add_metric([mon], snap.last_success)
        yield last
        outstanding = gauge(
            "alerts_outstanding",
            "Alerts not yet delivered to every target (the outbox)",
            ["feature"],
        )
        for feature, count in sorted(snap.outstanding.items()):
            outstanding.add_metric([mon, feature], float(count))
        yield outstanding
        alerts = CounterMetricFamily(
            f"{PREFIX}_alerts",
            "Alerts logged (warning, critical, recovered)",
            labels=["monitor", "feature", "severity"],
        )
        for (feature, sev), count in sorted(snap.alerts.items()):
            alerts.add_metric([mon, feature, sev], float(count))
        yield alerts
        readable = gauge(
            "history_readable", "1 when the history, state and alert log were readable", []
        )
        readable.add_metric([mon], 1.0 if snap.readable else 0.0)
        yield readable


def registry_for(config: MonitorConfig):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(config))
    return registry


def render_text(config: MonitorConfig) -> str:
    """The metrics in the Prometheus text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(config)).decode("utf-8")


def start_metrics_server(config: MonitorConfig, port: int, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` in a daemon thread; returns the bound port (``port=0``: a free one)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry_for(config))
    bound = int(server.server_address[1])
    log.info("metrics of monitor %s on http://%s:%d/metrics", config.name, host, bound)
    return bound


def publish_metrics(config: MonitorConfig, logger: logging.Logger | None = None) -> list[str]:
    """Write the node-exporter textfile and/or push to the Pushgateway, as configured.

    Returns where the metrics went. Failures are logged, never raised: metrics must not fail a run.
    """
    logger = logger or log
    cfg = config.metrics
    done: list[str] = []
    if cfg.textfile is None and cfg.pushgateway is None and cfg.pushgateway_env is None:
        return done
    registry = registry_for(config)
    if cfg.textfile is not None:
        from prometheus_client import write_to_textfile

        path = Path(config.resolve(cfg.textfile))  # a local file (MetricsConfig checks it)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), registry)  # temp file + rename: never half-read
            done.append(str(path))
        except OSError as exc:
            logger.warning("metrics: cannot write the textfile %s: %s", path, exc)
    url = cfg.pushgateway or (os.environ.get(cfg.pushgateway_env) if cfg.pushgateway_env else None)
    if url:
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(
                url,
                job=PREFIX,
                grouping_key={"monitor": config.name},
                registry=registry,
                timeout=10,
            )
            done.append("pushgateway")
        except OSError as exc:
            logger.warning("metrics: push to the Pushgateway failed: %s", type(exc).__name__)
    elif cfg.pushgateway_env:
        logger.warning("metrics: %s is not set; nothing pushed", cfg.pushgateway_env)
    return done
