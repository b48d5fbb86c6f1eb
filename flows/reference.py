"""The ``build_reference`` Prefect flow: a new reference profile, previous ones kept (versioned).

Every build is written to ``<reference dir>/versions/<created>-<reference_id>.json`` and then copied
atomically to ``reference.path`` (the one checks use). Records name the reference id they were
checked against, so any old record can be traced to its reference version.
"""

# No ``from __future__ import annotations`` here: ``divmon serve`` runs the flow in a child to
# which Prefect pickles it by value, keeping only the globals its code names; a string
# annotation (``MonitorConfig | None``) would then not resolve when Prefect validates the
# parameters, and every scheduled run would fail.

import os
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from divtransforms import storage
from flows.config import MonitorConfig, config_of
from flows.monitor.run import list_files


def versions_dir(config: MonitorConfig) -> storage.Location:
    return storage.join(storage.parent(config.reference_path), "versions")


def list_versions(config: MonitorConfig) -> list[storage.Location]:
    pattern = storage.join(versions_dir(config), "*.json")
    return [storage.location(i.path) for i in storage.glob(pattern)]


def build_reference_version(config: MonitorConfig, logger=None, on_job=None) -> dict[str, Any]:
    """Build, keep the version, make it current. Returns a summary dict.

    ``pipelines.engine`` builds local files with no ``runner.pipeline_args`` in this process (the
    profile is the Beam job's), anything else with the Beam job. On a remote runner the job
    writes the profile to a work folder under ``--temp_location``
    (``pipelines.remote.work_folder``), read back here; ``on_job`` gets the Dataflow job as soon
    as it is submitted, and the summary names it (``dataflow_job``)."""
    from pipelines import engine

    patterns = config.reference_patterns()
    if not patterns:
        raise ValueError("reference.inputs is empty: nothing to build the reference from")
    if not list_files(patterns):
        raise FileNotFoundError(f"reference.inputs matched no files: {config.reference.inputs}")
    vdir = versions_dir(config)
    storage.makedirs(vdir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    tmp_out = storage.join(vdir, f".building-{stamp}-{os.getpid()}.json")
    jobs = []

    def job_started(job) -> None:
        if logger is not None:
            logger.info("started %s", job.describe())
        jobs.append(job.to_dict())
        if on_job is not None:
            on_job(job)

    build = reference_build_job(config, patterns, str(tmp_out))
    profile = engine.run_build(build, on_job=job_started)
    version = storage.move(tmp_out, storage.join(vdir, f"{stamp}-{profile.reference_id}.json"))
    previous = None
    if storage.exists(config.reference_path):
        from divtransforms.profile import ReferenceProfile

        previous = ReferenceProfile.load(config.reference_path).reference_id
    storage.write_atomic(config.reference_path, storage.read_bytes(version))
    if logger is not None:
        logger.info(
            "reference %s built (%s); previous %s kept under %s",
            profile.reference_id,
            ", ".join(f"{k}: n={v.histogram.n}" for k, v in profile.features.items()),
            previous,
            vdir,
        )
    return {
        "reference_id": profile.reference_id,
        "path": str(config.reference_path),
        "version": str(version),
        "previous": previous,
        "features": {
            k: {"kind": v.kind, "n": int(v.histogram.n), "family": v.family}
            for k, v in profile.features.items()
        },
        "dataflow_job": jobs[-1] if jobs else None,
    }


def reference_build_job(config: MonitorConfig, patterns: list[str], out: str) -> Any:
    """The :class:`pipelines.spec.BuildJob` of the ``[reference]`` table. A windowed reference
    (``windows`` with a ``[window] size``, or ``chunk``) summarises its own windows
    (``divtransforms.variation``) and leaves the event-time column out of its features."""
    from pipelines.spec import BuildJob

    ref = config.reference
    ts = config.source.timestamp_column
    windowed = bool(ref.windows and config.window.size)
    return BuildJob(
        tuple(patterns),
        out,
        features=tuple(sorted(config.features)) or None,
        kinds=config.kinds() or None,
        exclude=(ts,) if ts and (windowed or ref.chunk is not None) else (),
        families=config.families() or None,
        n_bins=ref.n_bins,
        strategy=ref.strategy,
        top_n=ref.top_n,
        input_format=ref.format,
        timestamp_column=ts if ref.windows else None,
        window=config.window.size if windowed else None,
        chunk=ref.chunk,
        timestamp_format=config.source.timestamp_format,
        pipeline_args=tuple(config.runner.pipeline_args),
        work_name=config.name,
    )


@flow(name="build_reference", log_prints=False)
def build_reference(
    config_path: str | None = None, config: MonitorConfig | None = None
) -> dict[str, Any]:
    """Build a reference profile from ``reference.inputs`` (in this process for local files
    without ``runner.pipeline_args``, else with Beam: ``pipelines.engine``); keep the previous one.
    The configuration is a TOML file (``config_path``) or the configuration itself."""
    from flows.check import publish_dataflow_job

    logger = get_run_logger()
    config = config_of(config_path, config)
    out = build_reference_version(
        config, logger, on_job=lambda job: publish_dataflow_job(job, config.name, logger)
    )
    rows = "\n".join(
        f"| {k} | {v['kind']} | {v['family'] or ''} | {v['n']} |"
        for k, v in out["features"].items()
    )
    create_markdown_artifact(
        f"# Reference `{out['reference_id']}`\n\nprevious: `{out['previous']}`\n\n"
        f"| feature | kind | family | n |\n|---|---|---|---|\n{rows}\n",
        key="divtransforms-reference",
        description="Reference profile built by this run",
    )
    return out
