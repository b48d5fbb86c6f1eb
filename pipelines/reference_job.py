"""The reference job: data -> a ``ReferenceProfile`` JSON, built with Beam (``BuildReference``).

    python -m pipelines.reference_job --input 'ref/*.parquet' --output ref.json [--bins 32] \
        [--features a,b] [--categorical c] [--families a=lognormal] [--runner=...]

Its options are ``divmon reference build``'s (one table, :mod:`pipelines.arguments`).

Quantile edges: exact (``numpy.quantile`` on all values, gathered on one worker, identical to
``ReferenceProfile.build``) when the input has at most ``EXACT_MAX_ROWS`` rows known from the
Parquet footers, else Beam's ``ApproximateQuantiles``; ``exact=True/False`` forces either.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import pyarrow as pa

from divtransforms.profile import ReferenceProfile
from divtransforms.settings import BuildSettings
from pipelines.arguments import BUILD
from pipelines.spec import (
    BuildJob,
    CheckJobError,
    categorical_kinds,
    exact_from_flags,
    parse_families,
    split_names,
)

__all__ = [
    "EXACT_MAX_ROWS",
    "build_reference_pipeline",
    "categorical_kinds",
    "exact_from_flags",
    "input_schema",
    "main",
    "parse_families",
    "run_build_command",
    "run_build_job",
    "run_build_reference",
    "split_names",
]

_LOG = logging.getLogger(__name__)
EXACT_MAX_ROWS = 1_000_000


def input_sample(path: str, input_format: str | None = None, rows: int = 1 << 16) -> pa.Table:
    """The first ``rows`` rows of one input file, with its whole schema (Parquet: the footer's)."""
    from pipelines import io as pio

    fmt = pio.detect_format(path, input_format)
    if fmt == "parquet":
        pf = pio._parquet_file(path)
        for batch in pf.iter_batches(batch_size=rows):
            return pa.Table.from_batches([batch])
        return pf.schema_arrow.empty_table()
    task = pio.ReadTask(path, fmt, None, None, rows)
    for batch in pio.read_task(task):
        return pa.Table.from_batches([batch])
    raise pio.InputError(f"{path}: empty file, cannot tell its columns")


def input_schema(path: str, input_format: str | None = None) -> pa.Schema:
    """The Arrow schema of one input file (Parquet footer, or the first batch of CSV/JSONL)."""
    return input_sample(path, input_format).schema


def _known_rows(files: Sequence[str], input_format: str | None) -> int | None:
    from pipelines import io as pio

    total = 0
    for f in files:
        if pio.detect_format(f, input_format) != "parquet":
            return None
        total += pio._parquet_file(f).metadata.num_rows
    return total


def build_reference_pipeline(
    pipeline,
    inputs: Sequence[str],
    output: str,
    *,
    kinds: Mapping[str, str],
    settings: BuildSettings | None = None,
    input_format: str | None = None,
    source: str = "",
    ignored_columns: Sequence[str] = (),
):
    """Add read -> ``BuildReference`` of the features ``kinds`` -> save to ``output`` (JSON) to
    ``pipeline``. ``settings`` (``divtransforms.settings.BuildSettings``): families, bins,
    ``exact`` quantiles and the reference's windows."""
    import apache_beam as beam

    from divtransforms.beam.reference import BuildReference
    from pipelines.beam_io import ReadBatches
    from pipelines.sinks import write_bytes

    s = settings if settings is not None else BuildSettings()
    numeric = [n for n, k in kinds.items() if k == "numeric"]
    event_time = [s.timestamp_column] if s.window is not None and s.timestamp_column else []
    profile = (
        pipeline
        | "Read"
        >> ReadBatches(
            inputs,
            input_format=input_format,
            columns=[*kinds, *event_time],
            numeric=numeric,
        )
        | "BuildReference"
        >> BuildReference(kinds, s, source=source, ignored_columns=ignored_columns)
    )

    def save(p: ReferenceProfile) -> str:
        doc = p.to_dict()
        write_bytes(
            output, json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode() + b"\n"
        )
        return output

    return profile | "Save" >> beam.Map(save)


def run_build_reference(job: BuildJob, *, on_job=None) -> ReferenceProfile:
    """Build the reference profile of a ``pipelines.spec.BuildJob`` from files with Beam and
    save it to ``job.output`` (JSON); ``job.pipeline_args`` are the Beam pipeline options.

    On a remote runner the job writes the profile to a work folder under ``--temp_location``
    (``<temp_location>/divmon/<work_name>/<id>``, :func:`pipelines.remote.work_folder`) unless
    ``output`` is itself a bucket URL; the profile is then copied to ``output`` and the folder
    deleted. ``on_job`` gets the submitted Dataflow job before the run is waited for."""
    import apache_beam as beam

    from divtransforms.beam.reference import infer_kinds
    from divtransforms.drift import new_run_id
    from divtransforms.storage import is_remote
    from pipelines import io as pio
    from pipelines.options import make_pipeline_options
    from pipelines.remote import (
        is_remote_runner,
        remove_work_folder,
        require_remote_paths,
        submit,
        work_folder,
    )
    from pipelines.sinks import read_bytes, write_bytes

    settings, output, input_format = job.settings, job.output, job.input_format
    patterns = [str(i) for i in job.inputs]
    options = make_pipeline_options(list(job.pipeline_args))
    require_remote_paths(options, patterns, "--input")
    scratch = None
    if output is None or (is_remote_runner(options) and not is_remote(str(output))):
        scratch = work_folder(options, job.work_name, new_run_id())
    files = pio.expand_inputs(patterns)
    sample = input_sample(files[0], input_format)
    resolved = infer_kinds(
        sample.schema,
        settings.features,
        settings.kinds,
        settings.exclude,
        sample=sample,
        source=str(files[0]),
    )
    exact = settings.exact
    if exact is None:
        rows = _known_rows(files, input_format)
        exact = rows is not None and rows <= EXACT_MAX_ROWS
    tmp = tempfile.mkdtemp(prefix="divmon-ref-") if output is None and scratch is None else None
    build_out = (
        f"{scratch}/reference.json"
        if scratch
        else (f"{tmp}/reference.json" if tmp else str(output))
    )
    submitted = False
    try:
        pipeline = beam.Pipeline(options=options)
        build_reference_pipeline(
            pipeline,
            files,
            build_out,
            kinds=resolved,
            settings=replace(settings, exact=exact),
            input_format=input_format,
            source=", ".join(patterns),
            ignored_columns=[n for n in sample.schema.names if n not in resolved],
        )
        submit(pipeline, options, on_job=on_job, logger=_LOG)
        submitted = True
        data = read_bytes(build_out)
        profile = ReferenceProfile.from_dict(json.loads(data), origin=str(output or build_out))
        if scratch is not None and output is not None:
            write_bytes(str(output), data)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if scratch is not None and submitted:
            remove_work_folder(scratch)
    _LOG.info(
        "reference %s: %d features (%s quantiles) from %d file(s)",
        profile.reference_id,
        len(profile.features),
        "exact" if exact else "approximate",
        len(files),
    )
    return profile


def run_build_job(job: BuildJob, *, on_job=None) -> ReferenceProfile:
    """Build ``job`` with Beam (:func:`run_build_reference`; ``job.pipeline_args`` are its
    pipeline options). A reference of ``chunk`` windows (rows in reading order) only the
    in-process engine builds."""
    if job.chunk:
        raise CheckJobError(
            "a reference of chunk windows is built in process (rows in reading order): "
            "local inputs and no Beam runner options"
        )
    return run_build_reference(job, on_job=on_job)


def run_build_command(
    job: BuildJob, *, run: Callable[..., ReferenceProfile] = run_build_job
) -> int:
    """The build command of ``python -m pipelines.reference_job`` and ``divmon reference
    build``: ``run`` builds ``job`` (this module's Beam job, or for ``divmon`` the engine's
    choice, :func:`pipelines.engine.run_build`) and the profile's features are printed. A
    Dataflow job is printed when it is submitted; a ``--dry_run=True`` says what it did."""
    from pipelines.remote import NotRun, print_job

    try:
        profile = run(job, on_job=print_job)
    except NotRun as done:
        print(done.summary)
        return 0
    print(f"wrote {job.output}: {profile.reference_id}, {len(profile.features)} features")
    for name, fp in sorted(profile.features.items()):
        print(
            f"  {name:<24} {fp.kind:<12} bins={fp.bins.n_bins:<4} n={fp.histogram.n:<10} "
            f"missing={fp.histogram.n_missing:<8} family={fp.family or '-'}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.reference_job``: the Beam reference build. Its options are
    ``divmon reference build``'s (:mod:`pipelines.arguments`, in Beam's underscore spelling or
    with dashes) plus any Beam pipeline options. It always runs Beam, where ``divmon reference
    build`` builds local files in process (:mod:`pipelines.engine`)."""
    from pipelines.startup import freeze_heap, import_beam

    import_beam()
    freeze_heap()
    from pipelines.options import job_options

    argv = list(sys.argv[1:] if argv is None else argv)
    options, _ = job_options(BUILD, argv)
    try:
        return run_build_command(BuildJob.from_options(options, pipeline_args=argv))
    except CheckJobError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
