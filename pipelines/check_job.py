"""The check job: data (files; Pub/Sub or a watched directory when streaming) against a reference
profile -> drift records (Parquet, JSONL on request) and the running-MLE state.

    python -m pipelines.check_job --reference ref.json --input 'data/*.parquet' --output out/ \
        [--window 1h --timestamp_column ts] [--runner=FnApiRunner | DataflowRunner ...]

Python API: :func:`run_check` (batch, returns a :class:`CheckResult`) and
:func:`run_streaming_check` (Pub/Sub or a watched directory, runs until cancelled).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from divtransforms.compare import new_run_id
from divtransforms.profile import ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, SEVERITIES, sort_records
from divtransforms.window import mle_state_bytes, parse_mle_state

__all__ = [
    "CheckResult",
    "build_check_pipeline",
    "load_mle_state",
    "main",
    "run_check",
    "run_check_command",
    "run_streaming_check",
    "summarize",
]

_LOG = logging.getLogger(__name__)


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


def load_reference(reference: ReferenceProfile | str) -> ReferenceProfile:
    if isinstance(reference, ReferenceProfile):
        return reference
    path = str(reference)
    if "://" in path:
        from pipelines.sinks import read_bytes

        return ReferenceProfile.from_dict(json.loads(read_bytes(path)), origin=path)
    return ReferenceProfile.load(path)


def load_mle_state(path: str) -> dict[str, dict[str, Any]]:
    """An MLE state file (written by ``--mle-state-out``), or ``{}`` if it does not exist yet."""
    import os

    if "://" not in path and not os.path.exists(path):
        return {}
    from pipelines.sinks import read_bytes

    return parse_mle_state(read_bytes(path), path)


def _columns(profile: ReferenceProfile, timestamp_column: str | None) -> list[str]:
    cols = list(profile.features)
    if timestamp_column and timestamp_column not in cols:
        cols.append(timestamp_column)
    return cols


def build_check_pipeline(
    pipeline,
    profile: ReferenceProfile,
    inputs: Sequence[str] | None,
    output_dir: str,
    *,
    run_id: str,
    window=None,
    timestamp_column: str | None = None,
    input_format: str | None = None,
    mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    jsonl: bool = False,
    policy="default",
    allowed_lateness=None,
    streaming: bool = False,
    pubsub_subscription: str | None = None,
    pubsub_topic: str | None = None,
    event_time_field: str | None = None,
    state_path: str | None = None,
):
    """Add read -> DriftMonitor -> write to ``pipeline``; returns the records PCollection."""
    from divtransforms.transforms import DriftMonitor
    from pipelines import io as pio
    from pipelines.sinks import WriteRecords, WriteState, join

    numeric = [n for n, fp in profile.features.items() if fp.kind == "numeric"]
    if pubsub_subscription or pubsub_topic:
        if window is None:
            raise ValueError("a Pub/Sub check needs --window (event-time windows)")
        batches = pipeline | "ReadPubSub" >> pio.ReadPubSubBatches(
            subscription=pubsub_subscription,
            topic=pubsub_topic,
            event_time_field=event_time_field,
            columns=list(profile.features),
        )
        timestamp_column = pio.EVENT_TIME_COLUMN
    else:
        if not inputs:
            raise ValueError("no input given (--input PATH_OR_GLOB)")
        batches = pipeline | "Read" >> pio.ReadBatches(
            inputs,
            input_format=input_format,
            columns=_columns(profile, timestamp_column),
            numeric=numeric,
        )
    out = batches | "DriftMonitor" >> DriftMonitor(
        profile,
        window=window,
        timestamp_column=timestamp_column,
        allowed_lateness=allowed_lateness,
        initial_state=mle_state,
        run_id=run_id,
        policy=policy,
        streaming=streaming,
        with_mle_state=True,
    )
    out["records"] | "WriteRecords" >> WriteRecords(
        output_dir, run_id, jsonl=jsonl, streaming=streaming
    )
    state_path = state_path or join(output_dir, "_state", f"mle-{run_id}.json")
    out["mle_state"] | "WriteState" >> WriteState(state_path)
    return out["records"]


def _metric_totals(result) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    try:
        counters = result.metrics().query(MetricsFilter())["counters"]
    except Exception:  # a runner without metrics support
        return totals
    for c in counters:
        if not c.key.metric.namespace.startswith("divtransforms"):
            continue
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value or 0)
    return totals


def run_check(
    reference: ReferenceProfile | str,
    inputs: Sequence[str] | str,
    output_dir: str | None = None,
    *,
    window=None,
    timestamp_column: str | None = None,
    input_format: str | None = None,
    run_id: str | None = None,
    mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    pipeline_args: Sequence[str] | None = None,
    jsonl: bool = False,
    policy="default",
    allowed_lateness=None,
) -> CheckResult:
    """Check files against a reference with a batch Beam pipeline (see module docstring)."""
    import apache_beam as beam

    from pipelines.options import make_pipeline_options
    from pipelines.sinks import join, read_bytes

    profile = load_reference(reference)
    run_id = run_id or new_run_id()
    options = make_pipeline_options(pipeline_args)
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).streaming:
        raise ValueError("run_check is a batch job; use run_streaming_check for --streaming")
    tmp = None
    if output_dir is None:
        tmp = tempfile.mkdtemp(prefix="divmon-check-")
    work_dir = str(output_dir) if output_dir is not None else tmp
    inputs = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs]
    t0 = time.perf_counter()
    try:
        pipeline = beam.Pipeline(options=options)
        build_check_pipeline(
            pipeline,
            profile,
            inputs,
            work_dir,
            run_id=run_id,
            window=window,
            timestamp_column=timestamp_column,
            input_format=input_format,
            mle_state=mle_state,
            jsonl=jsonl,
            policy=policy,
            allowed_lateness=allowed_lateness,
        )
        result = pipeline.run()
        result.wait_until_finish()
        records_path = join(work_dir, f"records-{run_id}.parquet")
        import pyarrow.parquet as pq

        records = pq.read_table(pa.BufferReader(read_bytes(records_path)))
        records = sort_records(records.cast(DRIFT_RECORD_SCHEMA))
        state_doc = json.loads(read_bytes(join(work_dir, "_state", f"mle-{run_id}.json")))
        metrics = _metric_totals(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    outputs = (
        []
        if output_dir is None
        else [records_path] + ([records_path[: -len(".parquet")] + ".jsonl"] if jsonl else [])
    )
    n_rows = metrics.get("rows_read", 0)
    elapsed = time.perf_counter() - t0
    _LOG.info(
        "checked %d rows against %s in %.1f s (%.0f rows/s): %d records",
        n_rows,
        profile.reference_id,
        elapsed,
        n_rows / elapsed if elapsed else 0.0,
        records.num_rows,
    )
    return CheckResult(
        records,
        dict(state_doc["features"]),
        outputs,
        n_rows,
        summarize(records),
        run_id,
        profile.reference_id,
        metrics,
    )


def run_streaming_check(
    reference: ReferenceProfile | str,
    output_dir: str,
    *,
    window,
    run_id: str | None = None,
    timestamp_column: str | None = None,
    pubsub_subscription: str | None = None,
    pubsub_topic: str | None = None,
    event_time_field: str | None = None,
    watch_directory: str | None = None,
    watch_interval: float = 5.0,
    watch_stop_after: float | None = None,
    input_format: str | None = None,
    allowed_lateness=None,
    mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    jsonl: bool = False,
    policy="default",
    pipeline_args: Sequence[str] | None = None,
    wait: bool = True,
):
    """A streaming check; records go to one file per (feature, window, pane).

    Pub/Sub JSON messages: a streaming Beam pipeline (returns its ``PipelineResult``). A watched
    directory: the local watcher of :mod:`pipelines.watch` (returns the ``DirectoryWatcher``).
    """
    if watch_directory:
        from pipelines.watch import watch_directory as watch

        if window is None or timestamp_column is None:
            raise ValueError("watching a directory needs a window and a timestamp column")
        return watch(
            reference,
            watch_directory,
            str(output_dir),
            window=window,
            timestamp_column=timestamp_column,
            allowed_lateness=allowed_lateness,
            interval=watch_interval,
            stop_after=watch_stop_after,
            run_id=run_id,
            input_format=input_format,
            mle_state=mle_state,
            policy=policy,
        )
    import apache_beam as beam

    from pipelines.options import make_pipeline_options

    profile = load_reference(reference)
    run_id = run_id or new_run_id()
    options = make_pipeline_options(pipeline_args, streaming=True)
    pipeline = beam.Pipeline(options=options)
    build_check_pipeline(
        pipeline,
        profile,
        None,
        str(output_dir),
        run_id=run_id,
        window=window,
        timestamp_column=timestamp_column,
        input_format=input_format,
        mle_state=mle_state,
        jsonl=jsonl,
        policy=policy,
        allowed_lateness=allowed_lateness,
        streaming=True,
        pubsub_subscription=pubsub_subscription,
        pubsub_topic=pubsub_topic,
        event_time_field=event_time_field,
    )
    result = pipeline.run()
    if wait:
        result.wait_until_finish()
    return result


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def summarize(records: pa.Table) -> list[dict[str, Any]]:
    """Per feature: windows, samples (last pane per window), missing, invalid, worst JS,
    smallest p-value and worst severity."""
    rows = records.select(
        [
            "feature",
            "window_start",
            "pane",
            "n",
            "n_missing",
            "n_invalid",
            "js_divergence",
            "p_value",
            "severity",
        ]
    ).to_pylist()
    last: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in rows:
        key = (r["feature"], r["window_start"])
        if key not in last or r["pane"] > last[key]["pane"]:
            last[key] = r
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
        sev = r["severity"]
        if sev is not None and (s["severity"] is None or _RANK[sev] > _RANK[s["severity"]]):
            s["severity"] = sev
    return list(out.values())


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    header = ["feature", "windows", "n", "missing", "invalid", "max JS", "min p", "severity"]
    body = [
        [
            s["feature"],
            str(s["windows"]),
            str(s["n"]),
            str(s["n_missing"]),
            str(s["n_invalid"]),
            f"{s['max_js']:.4g}",
            f"{s['min_p_value']:.3g}",
            s["severity"] or "-",
        ]
        for s in summary
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.check_job``: options are :class:`pipelines.options.CheckOptions`
    plus any Beam pipeline options."""
    from pipelines.startup import freeze_heap, import_beam

    import_beam()
    freeze_heap()
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipelines.options import CheckOptions, InputOptions

    argv = list(sys.argv[1:] if argv is None else argv)
    opts = PipelineOptions(argv).view_as(CheckOptions)
    src = opts.view_as(InputOptions)
    if not opts.reference:
        raise SystemExit("--reference is required")
    streaming = PipelineOptions(argv).view_as(StandardOptions).streaming
    run_check_command(opts, src, argv, streaming=streaming, usage_error=SystemExit)
    return 0


def run_check_command(
    job,
    source,
    pipeline_args: Sequence[str],
    *,
    streaming: bool = False,
    policy="default",
    wait: bool = True,
    usage_error: type[BaseException] = ValueError,
    require_inputs: bool = False,
) -> CheckResult | None:
    """The check command of ``python -m pipelines.check_job`` and ``divmon check``.

    ``job`` has the check's options as attributes (reference, window, timestamp_column,
    allowed_lateness, run_id, jsonl, mle_state_in, mle_state_out), ``source`` the input options
    (inputs, output, input_format, pubsub_*, event_time_field, watch_*); one argparse namespace
    can be both. With ``streaming`` or a streaming source, starts :func:`run_streaming_check` and
    returns None. Otherwise runs :func:`run_check`, writes the MLE state to ``mle_state_out``,
    prints the summary and returns the result. Usage errors are raised as ``usage_error``;
    ``require_inputs`` makes a batch check without ``--input`` one.
    """
    mle_state = load_mle_state(job.mle_state_in) if job.mle_state_in else None
    if streaming or source.pubsub_subscription or source.pubsub_topic or source.watch_directory:
        if not source.output:
            raise usage_error("a streaming check needs --output")
        run_streaming_check(
            job.reference,
            source.output,
            window=job.window,
            run_id=job.run_id,
            timestamp_column=job.timestamp_column,
            pubsub_subscription=source.pubsub_subscription,
            pubsub_topic=source.pubsub_topic,
            event_time_field=source.event_time_field,
            watch_directory=source.watch_directory,
            watch_interval=source.watch_interval,
            watch_stop_after=source.watch_stop_after,
            input_format=source.input_format,
            allowed_lateness=job.allowed_lateness,
            mle_state=mle_state,
            jsonl=job.jsonl,
            policy=policy,
            pipeline_args=list(pipeline_args),
            wait=wait,
        )
        return None
    if require_inputs and not source.inputs:
        raise usage_error("give --input PATH_OR_GLOB (or a streaming source)")
    result = run_check(
        job.reference,
        source.inputs or [],
        source.output,
        window=job.window,
        timestamp_column=job.timestamp_column,
        input_format=source.input_format,
        run_id=job.run_id,
        mle_state=mle_state,
        pipeline_args=list(pipeline_args),
        jsonl=job.jsonl,
        policy=policy,
        allowed_lateness=job.allowed_lateness,
    )
    if job.mle_state_out:
        write_state_file(job.mle_state_out, result.mle_state)
    print(format_summary(result.per_feature))
    return result


def write_state_file(path: str, state: Mapping[str, Any], write=None) -> None:
    from pipelines.sinks import write_bytes

    (write or write_bytes)(path, mle_state_bytes(state))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
