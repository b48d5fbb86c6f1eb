"""The check job: data (files; Pub/Sub or a watched directory when streaming) against a reference
profile -> drift records (Parquet, JSONL on request) and the running-MLE state.

    python -m pipelines.check_job --reference ref.json --input 'data/*.parquet' --output out/ \
        [--window 1h --timestamp_column ts] [--runner=FnApiRunner | DataflowRunner ...]

Its options are ``divmon check``'s (one table, :mod:`pipelines.arguments`).

Python API: a :class:`~pipelines.spec.CheckJob` says what to check; :func:`run_check` runs it in
batch (returns a :class:`CheckResult`) and :func:`run_streaming_check` on Pub/Sub or a watched
directory (runs until cancelled).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from divtransforms.drift import new_run_id
from divtransforms.policy import Policy, PolicyError
from divtransforms.profile import ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, SEVERITY_RANK, sort_records
from divtransforms.rolling_store import RollingStore
from divtransforms.running import mle_state_bytes, parse_mle_state
from pipelines.arguments import CHECK
from pipelines.rolling_check import rolling_of, run_rolling_check
from pipelines.spec import (
    CheckJob,
    CheckJobError,
    CheckResult,
    Source,
    load_reference,
    summarize,
)

__all__ = [
    "CheckJob",
    "CheckJobError",
    "CheckResult",
    "Source",
    "build_check_pipeline",
    "check_job_of",
    "exit_code",
    "load_mle_state",
    "load_policy",
    "main",
    "run_check",
    "run_check_command",
    "run_streaming_check",
    "summarize",
]

_LOG = logging.getLogger(__name__)


def load_mle_state(path: str) -> dict[str, dict[str, Any]]:
    """An MLE state file (written by ``--mle-state-out``), or ``{}`` if it does not exist yet."""
    import os

    if "://" not in path and not os.path.exists(path):
        return {}
    from pipelines.sinks import read_bytes

    return parse_mle_state(read_bytes(path), path)


def build_check_pipeline(
    pipeline,
    job: CheckJob,
    profile: ReferenceProfile,
    output_dir: str,
    run_id: str,
    *,
    streaming: bool = False,
):
    """Add read -> DriftMonitor -> write to ``pipeline``; returns the records PCollection."""
    from divtransforms.beam.transforms import DriftMonitor
    from divtransforms.eventtime import EVENT_TIME_COLUMN
    from pipelines.beam_io import ReadBatches, ReadPubSubBatches
    from pipelines.sinks import WriteRecords, WriteState, WriteWindows, join

    source = job.source
    timestamp_column = job.timestamp_column
    if source.pubsub:
        batches = pipeline | "ReadPubSub" >> ReadPubSubBatches(
            subscription=source.pubsub_subscription,
            topic=source.pubsub_topic,
            event_time_field=source.event_time_field,
            columns=list(profile.features),
        )
        timestamp_column = EVENT_TIME_COLUMN
    else:
        if not source.inputs:
            raise CheckJobError("no input given (--input PATH_OR_GLOB)")
        batches = pipeline | "Read" >> ReadBatches(
            list(source.inputs),
            input_format=source.input_format,
            csv=source.csv,
            columns=job.columns(profile),
            numeric=[n for n, fp in profile.features.items() if fp.kind == "numeric"],
            require_columns=False,
        )
    out = batches | "DriftMonitor" >> DriftMonitor(
        profile,
        replace(job.settings, timestamp_column=timestamp_column, run_id=run_id),
        initial_state=job.mle_state,
        streaming=streaming,
        with_mle_state=True,
    )
    out["records"] | "WriteRecords" >> WriteRecords(
        output_dir, run_id, jsonl=job.jsonl, streaming=streaming
    )
    if job.bigquery_table:
        from pipelines.sinks import WriteRecordsToBigQuery

        out["records"] | "WriteToBigQuery" >> WriteRecordsToBigQuery(
            job.bigquery_table, streaming=streaming
        )
    state_path = join(output_dir, "_state", f"mle-{run_id}.json")
    out["mle_state"] | "WriteState" >> WriteState(state_path)
    if job.keep_windows:
        out["window_stats"] | "KeepWindows" >> WriteWindows(
            profile, job.window, windows_path(output_dir, run_id)
        )
    return out["records"]


def windows_path(output_dir: str, run_id: str) -> str:
    """Where a check job that keeps its windows (``CheckJob.keep_windows``) writes them."""
    from pipelines.sinks import join

    return join(output_dir, "_state", f"windows-{run_id}.json")


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
    job: CheckJob,
    pipeline_args: Sequence[str] | None = None,
    *,
    work_name: str = "check",
    on_job=None,
) -> CheckResult:
    """Run a batch check (files) with Beam and return its records, state and summary.

    Without ``job.output`` the job writes to a work folder that is read back and deleted: a
    local temp folder, or on a remote runner ``<temp_location>/divmon/<work_name>/<run id>``
    (:func:`pipelines.remote.work_folder`). ``on_job`` gets the submitted Dataflow job
    (:class:`pipelines.remote.DataflowJob`) before the run is waited for."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines.options import make_pipeline_options
    from pipelines.remote import (
        remove_work_folder,
        require_remote_paths,
        submit,
        work_folder,
    )
    from pipelines.sinks import join, read_bytes

    if job.source.streaming:
        raise CheckJobError("run_check is a batch job; use run_streaming_check for this source")
    options = make_pipeline_options(pipeline_args)
    if options.view_as(StandardOptions).streaming:
        raise CheckJobError("run_check is a batch job; use run_streaming_check for --streaming")
    run_id = job.run_id or new_run_id()
    scratch = work_folder(options, work_name, run_id) if job.output is None else None
    require_remote_paths(options, job.source.inputs, "--input")
    require_remote_paths(options, [job.output], "--output")
    profile = load_reference(job.reference)
    tmp = tempfile.mkdtemp(prefix="divmon-check-") if job.output is None and not scratch else None
    work_dir = str(job.output) if job.output is not None else str(scratch or tmp)
    t0 = time.perf_counter()
    submitted = False
    try:
        pipeline = beam.Pipeline(options=options)
        build_check_pipeline(pipeline, job, profile, work_dir, run_id)
        result, dataflow = submit(pipeline, options, on_job=on_job, logger=_LOG)
        submitted = True
        records_path = join(work_dir, f"records-{run_id}.parquet")
        records = pq.read_table(pa.BufferReader(read_bytes(records_path)))
        records = sort_records(records.cast(DRIFT_RECORD_SCHEMA))
        state_path = join(work_dir, "_state", f"mle-{run_id}.json")
        state = parse_mle_state(read_bytes(state_path), state_path)
        windows = None
        if job.keep_windows:
            from divtransforms.variation import WindowedSummary

            raw = json.loads(read_bytes(windows_path(work_dir, run_id)))
            windows = WindowedSummary.from_dict(
                raw, {n: fp.bins.n_bins for n, fp in profile.features.items()}
            )
        metrics = _metric_totals(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if scratch is not None and submitted:
            remove_work_folder(scratch)
    outputs = (
        []
        if job.output is None
        else [records_path] + ([records_path[: -len(".parquet")] + ".jsonl"] if job.jsonl else [])
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
        state,
        outputs,
        n_rows,
        summarize(records),
        run_id,
        profile.reference_id,
        metrics,
        dataflow,
        windows,
    )


def run_streaming_check(
    job: CheckJob, pipeline_args: Sequence[str] | None = None, *, wait: bool = True, on_job=None
):
    """A streaming check; records go to one file per (feature, window, pane) in ``job.output``.

    Pub/Sub JSON messages: a streaming Beam pipeline (returns its ``PipelineResult``; ``on_job``
    gets the Dataflow job as soon as it is submitted). A watched directory: the local watcher
    of :mod:`pipelines.watch` (returns the ``DirectoryWatcher``).
    """
    if not job.output:
        raise CheckJobError("a streaming check needs --output")
    if job.source.watch_directory:
        from pipelines.watch import watch_directory

        return watch_directory(job)
    import apache_beam as beam

    from pipelines.options import make_pipeline_options
    from pipelines.remote import require_remote_paths, submit

    options = make_pipeline_options(pipeline_args, streaming=True)
    require_remote_paths(options, [job.output], "--output")
    profile = load_reference(job.reference)
    run_id = job.run_id or new_run_id()
    pipeline = beam.Pipeline(options=options)
    build_check_pipeline(pipeline, job, profile, str(job.output), run_id, streaming=True)
    result, _ = submit(pipeline, options, wait=wait, on_job=on_job, logger=_LOG)
    return result


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    header = [
        "feature",
        "windows",
        "n",
        "missing",
        "invalid",
        "max JS",
        "min p",
        "quality",
        "schema",
        "severity",
    ]
    body = [
        [
            s["feature"] + (" (new)" if s.get("kind") == "unprofiled" else ""),
            str(s["windows"]),
            str(s["n"]),
            str(s["n_missing"]),
            str(s["n_invalid"]),
            f"{s['max_js']:.4g}",
            f"{s['min_p_value']:.3g}",
            s.get("quality") or "-",
            ",".join(s.get("issues") or []) or "-",
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
    """``python -m pipelines.check_job``: the Beam check job. Its options are ``divmon
    check``'s (:mod:`pipelines.arguments`, in Beam's underscore spelling or with dashes) plus any
    Beam pipeline options. It always runs Beam, where ``divmon check`` runs local files in
    process (:mod:`pipelines.engine`); the records are the same."""
    from pipelines.startup import freeze_heap, import_beam

    import_beam()
    freeze_heap()
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines.options import job_options

    argv = list(sys.argv[1:] if argv is None else argv)
    options, beam = job_options(CHECK, argv)
    try:
        job = check_job_of(options)
        streaming = bool(beam.view_as(StandardOptions).streaming)
        rolling = rolling_of(options, job, streaming=streaming)
        return run_check_command(
            job, argv, streaming=streaming, fail_on=options.fail_on, rolling=rolling
        )
    except (CheckJobError, PolicyError) as exc:
        raise SystemExit(str(exc)) from None


def check_job_of(options: Any) -> CheckJob:
    """The :class:`CheckJob` of a command line's options (``divmon check``'s namespace or the
    Beam job's): its policy read from ``--policy``, its MLE state from ``--mle-state-in``."""
    return job_with_state(
        CheckJob.from_options(options, policy=load_policy(getattr(options, "policy", None))),
        options,
    )


def load_policy(path: str | None) -> Policy:
    """The policy in the JSON file ``path`` (``Policy.from_dict``); the default without one."""
    if not path:
        return Policy()
    with open(path, encoding="utf-8") as fh:
        try:
            return Policy.from_dict(json.load(fh))
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy {path}: not valid JSON ({exc})") from None


def job_with_state(job: CheckJob, options: Any) -> CheckJob:
    """``job`` seeded from ``--mle-state-in`` (when given)."""
    from dataclasses import replace

    path = getattr(options, "mle_state_in", None)
    return replace(job, mle_state=load_mle_state(path)) if path else job


def run_check_command(
    job: CheckJob,
    pipeline_args: Sequence[str],
    *,
    streaming: bool = False,
    wait: bool = True,
    require_inputs: bool = False,
    fail_on: str | None = None,
    run: Callable[..., CheckResult] = run_check,
    rolling: RollingStore | None = None,
) -> int:
    """The check command of ``python -m pipelines.check_job`` and ``divmon check``; its exit
    code (:func:`exit_code`).

    With ``streaming`` or a streaming source, starts :func:`run_streaming_check`. Otherwise
    ``run`` runs the batch check: this module's Beam job, or for ``divmon check`` the engine's
    choice (:func:`pipelines.engine.run_check`: local files and no Beam option in this process,
    else Beam; the same records). Then writes the MLE state to ``job.mle_state_out`` and prints
    the summary. ``require_inputs`` makes a batch check without ``--input`` a usage error
    (:class:`CheckJobError`). A Dataflow job is printed when it is submitted (id, console URL;
    how to stop a streaming one); a ``--dry_run=True`` translates the job and says so.
    ``rolling`` (``--rolling``, :func:`pipelines.rolling_check.rolling_of`): the check is judged
    by, and folded into, that rolling reference (:func:`pipelines.rolling_check.run_rolling_check`).
    """
    from pipelines.remote import NotRun, print_job

    try:
        if streaming or job.source.streaming:
            run_streaming_check(job, list(pipeline_args), wait=wait, on_job=print_job)
            return 0
        if require_inputs and not job.source.inputs:
            raise CheckJobError("give --input PATH_OR_GLOB (or a streaming source)")
        roll = None
        if rolling is not None:
            result, roll = run_rolling_check(job, pipeline_args, rolling, run=run, on_job=print_job)
        else:
            result = run(job, pipeline_args, on_job=print_job)
    except NotRun as done:
        print(done.summary)
        return 0
    if job.mle_state_out:
        write_state_file(job.mle_state_out, result.mle_state)
    print(format_summary(result.per_feature))
    excluded = result.metrics.get("no_event_time", 0)
    implausible = result.metrics.get("implausible_event_time", 0)
    if excluded - implausible:
        print(
            f"{excluded - implausible} row(s) had no usable event time in "
            f"{job.timestamp_column!r} and are in no window (the log names the first per file; "
            "see --timestamp-format)"
        )
    if implausible:
        print(
            f"{implausible} row(s) had an event time outside the plausibility horizon and are "
            "in no window (the log names the first per file; see --max-future, --max-age)"
        )
    judged = f" judged by {result.reference_id}" if rolling is not None else ""
    print(
        f"run {result.run_id}: {result.n_rows_read} rows, {result.records.num_rows} records"
        + judged
        + (f" -> {', '.join(result.output_paths)}" if result.output_paths else "")
    )
    if roll is not None:
        print(
            f"rolled: {roll['reference_id']} (windows ending in ({roll['from']}, "
            f"{roll['anchor']}]; parent {roll['parent']}, seed {roll['seed']}"
            + (f"; the seed's for {', '.join(roll['fallback'])}" if roll["fallback"] else "")
            + ")"
        )
    return exit_code(result.records, fail_on)


def exit_code(records: pa.Table, fail_on: str | None) -> int:
    """1 when a record's severity reaches ``fail_on`` (``--fail-on``), else 0."""
    if not fail_on:
        return 0
    worst = [s for s in records.column("severity").to_pylist() if s is not None]
    breached = [s for s in worst if SEVERITY_RANK[s] >= SEVERITY_RANK[fail_on]]
    if breached:
        print(f"--fail-on {fail_on}: {len(breached)} window record(s) at or above {fail_on}")
        return 1
    return 0


def write_state_file(path: str, state: Mapping[str, Any], write=None) -> None:
    from pipelines.sinks import write_bytes

    (write or write_bytes)(path, mle_state_bytes(state))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
