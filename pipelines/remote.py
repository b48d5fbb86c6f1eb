"""Jobs on a remote runner (Dataflow): where they write, and how the submitted job is seen.

A job's output goes to a folder its workers can write. Locally that is a local temp folder. On a
remote runner (``--runner=DataflowRunner``), or whenever ``--temp_location`` is a bucket URL,
it is a per-run folder under the bucket: ``<temp_location>/divmon/<name>/<run id>/``
(:func:`work_folder`). A remote runner without a bucket ``--temp_location`` is an error that
names the option, raised before anything is submitted.

A submitted Dataflow job is logged with its id and console URL (:func:`submit`); callers get a
:class:`DataflowJob` to print it or attach it to a flow run. A streaming job keeps running after
submission: the log says so and gives the ``gcloud`` commands that drain or cancel it. With
``--dry_run=True`` Beam translates the job and submits nothing (:func:`is_dry_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from divtransforms.storage import is_remote, join

__all__ = [
    "DataflowJob",
    "NotRun",
    "RemoteRunError",
    "dataflow_job",
    "is_dry_run",
    "is_remote_runner",
    "print_job",
    "remove_work_folder",
    "runner_name",
    "submit",
    "work_folder",
]

_LOG = logging.getLogger(__name__)

#: Runners whose workers run on other machines (Beam accepts the names without "Runner" too).
REMOTE_RUNNERS = frozenset({"dataflowrunner", "dataflow", "testdataflowrunner"})
CONSOLE = "https://console.cloud.google.com/dataflow/jobs"


class RemoteRunError(ValueError):
    """Options that cannot work on a remote runner (the message names the option)."""


class NotRun(Exception):
    """``--dry_run=True``: the job was translated and not submitted, so it has no results.
    ``result`` is Beam's ``PipelineResult``; its ``job`` is the translated Dataflow job."""

    def __init__(self, result, runner: str) -> None:
        super().__init__(
            f"--dry_run=True: the {runner} job was translated and not submitted; it has no results"
        )
        self.result = result

    @property
    def summary(self) -> str:
        """What the commands print for a dry run."""
        return f"dry run: translated into a job of {self.n_steps} steps; nothing was submitted"

    @property
    def n_steps(self) -> int:
        job = getattr(self.result, "job", None)
        if job is None:
            return 0
        return len(job.proto_pipeline.components.transforms)


def runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__ if runner else ""


def is_remote_runner(options) -> bool:
    """Do the workers of this run live on other machines (Dataflow)?"""
    return runner_name(options).lower() in REMOTE_RUNNERS


def is_dry_run(options) -> bool:
    """``--dry_run=True``: Dataflow translates the job and submits nothing."""
    from apache_beam.options.pipeline_options import TestOptions

    return bool(options.view_as(TestOptions).dry_run)


def work_folder(options, *parts: str) -> str | None:
    """The per-run folder ``<temp_location>/divmon/<parts...>`` for a remote run, or None for a
    local run (the caller uses a local temp folder).

    Remote means a remote runner, or a bucket ``--temp_location`` on any runner. A remote
    runner needs a bucket ``--temp_location``: :class:`RemoteRunError` otherwise.
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    temp = options.view_as(GoogleCloudOptions).temp_location
    if is_remote_runner(options) and not (temp and is_remote(temp)):
        raise RemoteRunError(
            f"--runner={runner_name(options)} needs --temp_location on a bucket "
            f"(gs://BUCKET/tmp), got {temp or 'none'}: its workers write the job's output there"
        )
    if not (temp and is_remote(temp)):
        return None
    return str(join(temp.rstrip("/"), "divmon", *(_segment(p) for p in parts if p)))


def remove_work_folder(path: str) -> None:
    """Delete a job's work folder once its output is read; a failure is logged, not raised
    (the results are safe; a leftover folder is litter that a bucket lifecycle rule removes)."""
    from divtransforms.storage import remove_tree

    try:
        remove_tree(path)
    except Exception as exc:
        _LOG.warning("could not delete the work folder %s: %s", path, exc)


def _segment(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))
    if out in ("", ".", ".."):
        raise RemoteRunError(f"bad work folder name {text!r}")
    return out


def require_remote_paths(options, paths, what: str) -> None:
    """On a remote runner every path the workers touch must be a bucket URL: an error naming
    ``what`` (the option or config key) and the first local path otherwise."""
    if not is_remote_runner(options):
        return
    local = [str(p) for p in paths if p is not None and not is_remote(str(p))]
    if local:
        raise RemoteRunError(
            f"{what}: {local[0]} is a local path, which --runner={runner_name(options)} "
            "workers cannot reach; use a bucket URL (gs://...)"
        )


@dataclass(frozen=True)
class DataflowJob:
    """A submitted Dataflow job: its id, where it runs, and how to see and stop it."""

    job_id: str
    project: str
    region: str
    name: str = ""
    streaming: bool = False

    @property
    def url(self) -> str:
        """The job's page in the Google Cloud console."""
        return (
            f"{CONSOLE}/{quote(self.region, safe='')}/{quote(self.job_id, safe='')}"
            f"?project={quote(self.project, safe='')}"
        )

    def stop_command(self, how: str = "drain") -> str:
        """``gcloud dataflow jobs drain|cancel <id> --region ... --project ...``."""
        if how not in ("drain", "cancel"):
            raise ValueError(f"stop the job with drain or cancel, not {how!r}")
        return (
            f"gcloud dataflow jobs {how} {self.job_id} --region={self.region} "
            f"--project={self.project}"
        )

    def describe(self) -> str:
        """One line: what was started and where to watch it."""
        kind = "streaming" if self.streaming else "batch"
        name = f" {self.name}" if self.name else ""
        return f"Dataflow {kind} job{name} {self.job_id}: {self.url}"

    def stop_hint(self) -> str:
        """How to stop a streaming job (it runs until drained or cancelled)."""
        return (
            f"it runs until stopped: {self.stop_command('drain')} (finishes open windows), "
            f"or {self.stop_command('cancel')} (stops now)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url}


def dataflow_job(result, options) -> DataflowJob | None:
    """The job of a ``PipelineResult`` returned by ``DataflowRunner`` (None for other runners,
    a dry run, or a template launch without a job).

    Beam's ``DataflowPipelineResult`` exposes ``job_id()``, ``has_job`` and the service's job
    message as ``_job`` (``google.cloud.dataflow.Job``: ``project_id``, ``location``, ``name``,
    ``type_``); the options fill what the message leaves empty."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

    if not is_remote_runner(options) or not callable(getattr(result, "job_id", None)):
        return None
    if getattr(result, "has_job", True) is False:
        return None
    job_id = result.job_id()
    if not job_id:
        return None
    job = getattr(result, "_job", None)
    gcp = options.view_as(GoogleCloudOptions)
    job_type = getattr(getattr(job, "type_", None), "name", "")
    return DataflowJob(
        job_id=str(job_id),
        project=str(getattr(job, "project_id", "") or gcp.project or ""),
        region=str(getattr(job, "location", "") or gcp.region or ""),
        name=str(getattr(job, "name", "") or gcp.job_name or ""),
        streaming=job_type == "JOB_TYPE_STREAMING"
        or bool(options.view_as(StandardOptions).streaming),
    )


def submit(
    pipeline,
    options,
    *,
    wait: bool = True,
    on_job: Callable[[DataflowJob], None] | None = None,
    logger: logging.Logger | None = None,
):
    """``pipeline.run()``; a Dataflow job is logged (id, console URL; a streaming one with how to
    stop it) and passed to ``on_job`` as soon as it is submitted, before waiting for it.

    Returns ``(result, job)``; ``job`` is None for local runners. A dry run raises
    :class:`NotRun` (after translating), since its caller would wait for results that never
    come."""
    log = logger or _LOG
    result = pipeline.run()
    job = dataflow_job(result, options)
    if job is not None:
        log.info("started %s", job.describe())
        if job.streaming:
            log.info("streaming job %s %s", job.job_id, job.stop_hint())
        if on_job is not None:
            on_job(job)
    elif is_dry_run(options):
        raise NotRun(result, runner_name(options))
    if wait:
        result.wait_until_finish()
    return result, job


def print_job(job: DataflowJob) -> None:
    """The command lines' ``on_job``: the job on stdout (a streaming one with how to stop it)."""
    print(f"started {job.describe()}", flush=True)
    if job.streaming:
        print(f"  {job.stop_hint()}", flush=True)
