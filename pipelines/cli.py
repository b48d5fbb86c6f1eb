"""``divmon reference build`` and ``divmon check``: the jobs on the command line.

Their options are declared once, in :mod:`pipelines.arguments`, which also gives the Beam jobs'
``PipelineOptions``. Arguments the parser does not know are Beam pipeline options
(``--runner=DataflowRunner --project=... --region=... --temp_location=gs://...``,
``--direct_num_workers=2`` ...). :mod:`pipelines.engine` runs local files without a Beam option in
this process; Beam is imported only when it runs the job.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.arguments import BUILD, CHECK, add_options, options_of

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    ref = subparsers.add_parser(
        "reference", help="reference profiles", description="Build reference profiles."
    )
    ref_sub = ref.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    build = ref_sub.add_parser(
        "build",
        help="build a reference profile from data (Parquet/CSV/JSONL)",
        description="Build a reference profile (bins, counts, MLE statistics): local files in "
        "this process, else with Beam. Unknown options are passed to Beam (e.g. "
        "--runner=DataflowRunner).",
    )
    add_options(build, "divmon", options_of(BUILD), BUILD)
    build.set_defaults(handler=_reference_build, accepts_pipeline_args=True)

    check = subparsers.add_parser(
        "check",
        help="check data against a reference profile (drift records)",
        description="Compare data with a reference profile: local files in this process, else "
        "with Beam; writes drift records and prints a per-feature summary. Unknown options go "
        "to Beam.",
    )
    add_options(check, "divmon", options_of(CHECK), CHECK)
    check.set_defaults(handler=_check, accepts_pipeline_args=True)


def _reference_build(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pipelines.startup import freeze_heap, import_beam, reuse_freed_memory

    reuse_freed_memory()
    freeze_heap()
    from pipelines import engine
    from pipelines.reference_job import run_build_command
    from pipelines.spec import BuildJob

    job = BuildJob.from_options(args, pipeline_args=extra)
    if not engine.build_in_process(job):  # a Beam option or a bucket path: the Beam job
        import_beam()
        freeze_heap()
    code = run_build_command(job, run=engine.run_build)
    freeze_heap()
    return code


def _check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pipelines.startup import freeze_heap, import_beam, reuse_freed_memory

    reuse_freed_memory()
    freeze_heap()
    from pipelines import engine
    from pipelines.check_job import check_job_of, run_check_command
    from pipelines.rolling_check import rolling_of

    job = check_job_of(args)
    rolling = rolling_of(args, job, streaming="--streaming" in extra)
    streaming = "--streaming" in extra
    if streaming or not engine.check_in_process(job, extra):
        import_beam()
        freeze_heap()
    code = run_check_command(
        job,
        extra,
        streaming=streaming,
        # on Dataflow the job keeps running after submission; locally, run until stopped
        wait=not any("DataflowRunner" in a for a in extra),
        require_inputs=True,
        fail_on=args.fail_on,
        run=engine.run_check,
        rolling=rolling,
    )
    freeze_heap()
    return code
