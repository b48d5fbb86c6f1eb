"""Local or Beam: the one place that decides which engine runs a batch check or a reference build.

The rule, the same for both: a job whose files are all local paths and which names no Beam
pipeline option runs in this process (:mod:`pipelines.local`: no Beam import, no runner to
start); any Beam option (``--runner=...``, ``--dry_run``, ...) or a bucket path runs the Beam
job (:mod:`pipelines.check_job`, :mod:`pipelines.reference_job`). A few jobs only Beam runs: a
check writing to BigQuery, a check without ``--input``, and a build asking for approximate
quantiles (``exact=False``). A build of ``chunk`` windows (rows in reading order) only the
in-process engine runs. Both engines give the same records, and the same profile where the Beam
job's quantiles are exact (tests/pipelines/test_local_engine.py; the in-process engine's always
are).

``divmon check`` and ``divmon reference build``, the monitor's check (``flows.monitor.run``) and
the reference flow (``flows.reference``) all call :func:`run_check` or :func:`run_build`. ``python
-m pipelines.check_job`` and ``python -m pipelines.reference_job`` are the Beam jobs themselves
(their arguments are Beam pipeline options): they run Beam without asking this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from divtransforms.profile import ReferenceProfile
from pipelines.local import is_local
from pipelines.spec import BuildJob, CheckJob, CheckResult

__all__ = [
    "build_in_process",
    "check_in_process",
    "in_process",
    "run_build",
    "run_check",
]


def in_process(
    paths: Sequence[str], pipeline_args: Sequence[str], *, beam_only: bool = False
) -> bool:
    """The rule: every path local and no Beam pipeline option (and nothing only Beam does)."""
    return not beam_only and not pipeline_args and is_local(paths)


def check_in_process(job: CheckJob, pipeline_args: Sequence[str] = ()) -> bool:
    """Whether :func:`run_check` runs ``job`` in this process: a batch check of local files
    (inputs, reference, output, MLE state), written locally (not to BigQuery), no Beam option."""
    paths = [*job.source.inputs, job.output or "", job.mle_state_out or ""]
    if not isinstance(job.reference, ReferenceProfile):  # a profile in memory is no path
        paths.append(str(job.reference))
    beam_only = bool(job.bigquery_table) or job.source.streaming or not job.source.inputs
    return in_process(paths, pipeline_args, beam_only=beam_only)


def build_in_process(job: BuildJob) -> bool:
    """Whether :func:`run_build` builds ``job`` in this process: local inputs, no Beam option,
    exact quantiles (or decided by size). The profile may be written anywhere
    (``ReferenceProfile.save``: a local path or a bucket URL)."""
    return in_process(job.inputs, job.pipeline_args, beam_only=job.exact is False)


def run_check(
    job: CheckJob,
    pipeline_args: Sequence[str] = (),
    *,
    work_name: str = "check",
    on_job: Any = None,
    inputs_option: str = "--input",
) -> CheckResult:
    """Run a batch check with the engine :func:`check_in_process` chooses; the same result.

    On Beam, ``work_name`` names a remote run's work folder and ``on_job`` gets the submitted
    Dataflow job; ``inputs_option`` is what an error about a local input on a remote runner
    calls the inputs (``source.paths`` in a monitor's config)."""
    if check_in_process(job, pipeline_args):
        from pipelines.local import run_check_local

        return run_check_local(job)
    from pipelines.check_job import run_check as run_beam_check
    from pipelines.options import make_pipeline_options
    from pipelines.remote import require_remote_paths

    args = list(pipeline_args)
    require_remote_paths(make_pipeline_options(args), job.source.inputs, inputs_option)
    return run_beam_check(job, args, work_name=work_name, on_job=on_job)


def run_build(job: BuildJob, *, on_job: Any = None) -> ReferenceProfile:
    """Build (and save to ``job.output``, when given) a reference profile with the engine
    :func:`build_in_process` chooses. ``on_job`` gets a submitted Dataflow job."""
    if build_in_process(job):
        from pipelines.local import run_build_local

        return run_build_local(job)
    from pipelines.reference_job import run_build_job

    return run_build_job(job, on_job=on_job)
