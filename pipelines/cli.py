"""``divmon reference build`` and ``divmon check``: the Beam jobs on the command line.

Arguments the parser does not know are Beam pipeline options (``--runner=DataflowRunner
--project=... --region=... --temp_location=gs://...``, ``--direct_num_workers=2`` ...). Beam is
imported only when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    ref = subparsers.add_parser(
        "reference", help="reference profiles", description="Build reference profiles with Beam."
    )
    ref_sub = ref.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    build = ref_sub.add_parser(
        "build",
        help="build a reference profile from data (Parquet/CSV/JSONL)",
        description="Build a reference profile (bins, counts, MLE statistics) with Beam. "
        "Unknown options are passed to Beam (e.g. --runner=DataflowRunner).",
    )
    build.add_argument(
        "--input",
        "-i",
        dest="inputs",
        action="append",
        required=True,
        help="path or glob (repeatable)",
    )
    build.add_argument("--output", "-o", required=True, help="reference profile JSON to write")
    build.add_argument("--features", help="comma-separated features (default: all columns)")
    build.add_argument("--exclude", help="comma-separated columns to leave out")
    build.add_argument("--categorical", help="comma-separated features to treat as categorical")
    build.add_argument("--families", help="MLE families, e.g. amount=lognormal,flag=none")
    build.add_argument("--bins", type=int, default=32, help="numeric bins (default 32)")
    build.add_argument("--strategy", choices=["quantile", "uniform"], default="quantile")
    build.add_argument("--top-n", type=int, default=50, help="categorical vocabulary size")
    build.add_argument("--input-format", choices=["parquet", "csv", "jsonl"])
    build.add_argument(
        "--window",
        help="windowed reference: also summarise the reference's own windows of this size "
        "(the monitor's window, e.g. 1h; needs --timestamp-column)",
    )
    build.add_argument("--timestamp-column", help="windowed reference: the event-time column")
    build.add_argument(
        "--chunk", type=int, help="windowed reference without time: windows of this many rows"
    )
    q = build.add_mutually_exclusive_group()
    q.add_argument(
        "--exact-quantiles",
        action="store_true",
        help="exact edges (all values on one worker; small data)",
    )
    q.add_argument(
        "--approximate-quantiles",
        action="store_true",
        help="Beam ApproximateQuantiles even for small inputs",
    )
    build.add_argument(
        "--cache-mb",
        type=int,
        default=None,
        help="in-process build: MiB of batches kept between passes (default 4, what one "
        "read decodes at once)",
    )
    build.set_defaults(handler=_reference_build, accepts_pipeline_args=True)

    check = subparsers.add_parser(
        "check",
        help="check data against a reference profile (drift records)",
        description="Compare data with a reference profile using Beam; writes drift records "
        "and prints a per-feature summary. Unknown options go to Beam.",
    )
    check.add_argument("--reference", "-r", required=True, help="reference profile JSON")
    check.add_argument(
        "--input", "-i", dest="inputs", action="append", help="path or glob (repeatable)"
    )
    check.add_argument("--output", "-o", help="directory for records-<run_id>.parquet")
    check.add_argument("--window", help="event-time window, e.g. 15m, 1h, 1d")
    check.add_argument(
        "--season",
        choices=["hour_of_day", "day_of_week", "hour_of_week"],
        help="judge each window against the same season of a windowed reference",
    )
    check.add_argument(
        "--rolling",
        help="a rolling reference: the trailing period, e.g. 28d (needs --rolling-state; "
        "docs/policy.md, Rolling references)",
    )
    check.add_argument(
        "--rolling-state",
        help="--rolling: folder of its state (rolling.json) and rolled profiles (versions/)",
    )
    check.add_argument("--roll-every", default="1d", help="--rolling: roll at multiples of this")
    check.add_argument(
        "--absorb-after",
        help="--rolling: a change that breached this long is the new normal (default: a "
        "quarter of --rolling; off: never)",
    )
    check.add_argument("--timestamp-column", help="column with the event time")
    check.add_argument(
        "--timestamp-format",
        help="event-time layout when not ISO 8601, YYYY/MM/DD or epoch numbers: a strptime "
        "format such as '%%d/%%m/%%Y %%H:%%M', or epoch_s, epoch_ms, epoch_us, epoch_ns",
    )
    check.add_argument(
        "--max-future",
        help="plausibility horizon: rows whose event time is later than this after now (default "
        "1d) are in no window, counted and logged; a file with only such rows fails; 'off' "
        "lifts it",
    )
    check.add_argument(
        "--max-age",
        help="rows whose event time is earlier than this before now are in no window either "
        "(default off), e.g. 3650d against the epoch 0 of a null written as 0",
    )
    check.add_argument(
        "--fail-on",
        choices=["warning", "critical"],
        help="exit 1 when a window's severity is at least this (gate CI jobs and scripts)",
    )
    check.add_argument("--allowed-lateness", help="streaming: how late data may still count")
    check.add_argument("--input-format", choices=["parquet", "csv", "jsonl"])
    check.add_argument(
        "--csv-delimiter",
        help="CSV field delimiter, e.g. ';' or '\\t' (default: sniffed from each file's first "
        "KiB, and logged)",
    )
    check.add_argument("--csv-quote", help="CSV quote character (default '\"'; '' for none)")
    check.add_argument("--csv-encoding", help="CSV text encoding (default utf-8), e.g. latin-1")
    check.add_argument(
        "--csv-no-header",
        action="store_true",
        help="CSV files have no header line (columns f0, f1, ...)",
    )
    check.add_argument("--run-id")
    check.add_argument("--jsonl", action="store_true", help="also write JSON Lines")
    check.add_argument(
        "--bigquery-table",
        help='also write the records to BigQuery, "project.dataset.table" (the flat history '
        "table of docs/monitoring-stack.md; streaming inserts when streaming, load jobs in batch)",
    )
    check.add_argument("--policy", help="policy JSON ({'default': {...}, 'features': {...}})")
    check.add_argument("--mle-state-in", help="running-MLE state from an earlier run (JSON)")
    check.add_argument("--mle-state-out", help="where to write the updated running-MLE state")
    check.add_argument("--pubsub-subscription", help="streaming: read JSON messages")
    check.add_argument("--pubsub-topic", help="streaming: read JSON messages from a topic")
    check.add_argument(
        "--event-time-field", help="Pub/Sub: JSON field with the event time (default: publish time)"
    )
    check.add_argument("--watch-directory", help="local streaming: poll a directory for files")
    check.add_argument("--watch-interval", type=float, default=5.0)
    check.add_argument(
        "--watch-stop-after", type=float, help="stop watching after this many seconds"
    )
    check.set_defaults(handler=_check, accepts_pipeline_args=True)


def _reference_build(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pipelines.startup import freeze_heap, import_beam, reuse_freed_memory

    reuse_freed_memory()
    freeze_heap()
    from pipelines import engine
    from pipelines.spec import BuildJob

    job = BuildJob.from_options(args, pipeline_args=extra)
    if not engine.build_in_process(job):  # a Beam option or a bucket path: the Beam job
        import_beam()
        freeze_heap()
    from pipelines.remote import NotRun, print_job

    try:
        profile = engine.run_build(job, on_job=print_job)
    except NotRun as done:
        print(f"dry run: translated into a job of {done.n_steps} steps; nothing was submitted")
        return 0
    print(f"wrote {args.output}: {profile.reference_id}, {len(profile.features)} features")
    for name, fp in sorted(profile.features.items()):
        print(
            f"  {name:<24} {fp.kind:<12} bins={fp.bins.n_bins:<4} n={fp.histogram.n:<10} "
            f"missing={fp.histogram.n_missing:<8} family={fp.family or '-'}"
        )
    freeze_heap()
    return 0


def _load_policy(path: str | None):
    import json

    from divtransforms.policy import Policy

    if not path:
        return Policy()
    with open(path, encoding="utf-8") as fh:
        try:
            return Policy.from_dict(json.load(fh))
        except json.JSONDecodeError as exc:
            raise ValueError(f"policy {path}: not valid JSON ({exc})") from None


def _check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pipelines.startup import freeze_heap, import_beam, reuse_freed_memory

    reuse_freed_memory()
    freeze_heap()
    from pipelines import engine
    from pipelines.check_job import CheckJob, job_with_state, run_check_command

    job = job_with_state(CheckJob.from_options(args, policy=_load_policy(args.policy)), args)
    if "--streaming" in extra or not engine.check_in_process(job, extra):
        import_beam()
        freeze_heap()
    if args.rolling or args.rolling_state:
        return _rolling_check(job, args, extra)
    result = run_check_command(
        job,
        extra,
        streaming="--streaming" in extra,
        # on Dataflow the job keeps running after submission; locally, run until stopped
        wait=not any("DataflowRunner" in a for a in extra),
        require_inputs=True,
    )
    if result is None:
        return 0
    print(
        f"run {result.run_id}: {result.n_rows_read} rows, {result.records.num_rows} records"
        + (f" -> {', '.join(result.output_paths)}" if result.output_paths else "")
    )
    freeze_heap()
    return _exit_code(result.records, args.fail_on)


def _rolling_check(job: Any, args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``divmon check --rolling``: ``pipelines.rolling_check`` (a batch check)."""
    from pipelines.check_job import write_state_file
    from pipelines.remote import print_job
    from pipelines.rolling_check import rolling_store, run_rolling_check
    from pipelines.spec import CheckJobError

    if not (args.rolling and args.rolling_state):
        raise CheckJobError("--rolling and --rolling-state go together")
    if "--streaming" in extra or job.source.streaming or not job.source.inputs:
        raise CheckJobError("--rolling is for batch checks of files (--input)")
    store = rolling_store(
        args.rolling_state, job.window, args.rolling, args.roll_every, args.absorb_after
    )
    result, roll = run_rolling_check(job, extra, store, on_job=print_job)
    if job.mle_state_out:
        write_state_file(job.mle_state_out, result.mle_state)
    print(
        f"run {result.run_id}: {result.n_rows_read} rows, {result.records.num_rows} records "
        f"judged by {result.reference_id}"
        + (f" -> {', '.join(result.output_paths)}" if result.output_paths else "")
    )
    if roll is not None:
        print(
            f"rolled: {roll['reference_id']} (windows ending in ({roll['from']}, "
            f"{roll['anchor']}]; parent {roll['parent']}, seed {roll['seed']}"
            + (f"; the seed's for {', '.join(roll['fallback'])}" if roll["fallback"] else "")
            + ")"
        )
    return _exit_code(result.records, args.fail_on)


def _exit_code(records, fail_on: str | None) -> int:
    """1 when a record's severity reaches ``fail_on`` (``--fail-on``), else 0."""
    from divtransforms.records import SEVERITY_RANK

    if not fail_on:
        return 0
    worst = [s for s in records.column("severity").to_pylist() if s is not None]
    breached = [s for s in worst if SEVERITY_RANK[s] >= SEVERITY_RANK[fail_on]]
    if breached:
        print(f"--fail-on {fail_on}: {len(breached)} window record(s) at or above {fail_on}")
        return 1
    return 0
