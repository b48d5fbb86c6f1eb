"""``divmon deploy``: the monitor as a Prefect deployment that a work pool's workers run.

The deployment's entrypoint is a module path (``flows.check.drift_check``, or
``flows.reference.build_reference`` with ``--reference``), so a worker runs it from the installed
package (the image of the project's ``Dockerfile``), with no code to pull. The monitor
configuration travels in the deployment as the flow's ``config`` parameter: the whole validated
configuration, not a path to a file that would have to exist on the worker; Prefect validates it
again against the flow's signature (``MonitorConfig``) when a run starts. One run at a time
(``concurrency_limit=1``): runs share the ledger and the state.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the command runs: `divmon` builds its parser on every command
    from flows.config import MonitorConfig

log = logging.getLogger("divmon")

CHECK_ENTRYPOINT = "flows.check.drift_check"
REFERENCE_ENTRYPOINT = "flows.reference.build_reference"


def config_parameter(config: MonitorConfig) -> dict[str, Any]:
    """The configuration as the flows' ``config`` parameter (JSON; ``base_dir`` kept, so
    relative local paths mean what they meant next to the TOML file)."""
    return config.model_dump(mode="json")


def local_paths(config: MonitorConfig) -> dict[str, str]:
    """The configured paths that are on the deploying machine's disk, by config key (a worker on
    another machine does not see them)."""
    from divtransforms.storage import is_remote

    paths = {
        "source.paths": config.source.paths[0],
        "reference.path": config.reference.path,
        "history.dir": config.history.dir,
    }
    if config.reference.inputs:
        paths["reference.inputs"] = config.reference.inputs[0]
    if config.state.dir:
        paths["state.dir"] = config.state.dir
    if config.dashboard.path:
        paths["dashboard.path"] = config.dashboard.path
    return {k: str(config.resolve(v)) for k, v in paths.items() if not is_remote(v)}


def check_runner(config: MonitorConfig) -> None:
    """The runner options can work where the deployment runs: a remote runner needs a bucket
    ``--temp_location``, and data its workers can reach (``pipelines.remote``)."""
    from pipelines.options import make_pipeline_options
    from pipelines.remote import require_remote_paths, work_folder

    options = make_pipeline_options(list(config.runner.pipeline_args))
    try:
        work_folder(options, config.name)
        require_remote_paths(options, config.source_patterns(), "source.paths")
        require_remote_paths(options, config.reference_patterns(), "reference.inputs")
    except ValueError as exc:
        raise ValueError(f"runner.pipeline_args: {exc}") from None


def _require_pool(pool: str) -> None:
    """A missing work pool is a clear error (the API's own answer to an update is not)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            raise ValueError(
                f"work pool {pool!r} does not exist on {client.api_url}; create it first "
                f"(prefect work-pool create {pool} --type process|docker|cloud-run|kubernetes)"
            ) from None


def deploy(
    config: MonitorConfig,
    *,
    pool: str,
    name: str | None = None,
    image: str | None = None,
    work_queue: str | None = None,
    cron: str | None = None,
    interval: float | None = None,
    reference: bool = False,
    paused: bool = False,
) -> dict[str, Any]:
    """Create (or update) the deployment; returns what was deployed (id, name, entrypoint...)."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment

    check_runner(config)
    _require_pool(pool)
    if reference:
        from flows.reference import build_reference as flow_fn

        cron = interval = None  # a reference is rebuilt on purpose, not on a schedule
    else:
        from flows.check import drift_check as flow_fn

        if cron is None and interval is None:
            cron, interval = config.schedule.cron, config.schedule.interval_seconds
    deployment = RunnerDeployment.from_flow(
        flow_fn,
        name=name or config.name,
        cron=cron,
        interval=timedelta(seconds=interval) if interval is not None else None,
        paused=paused,
        concurrency_limit=1,  # one run at a time: runs share the ledger and the state
        parameters={"config": config_parameter(config)},
        description=f"divtransforms {flow_fn.name} of monitor {config.name}",
        tags=["divtransforms", config.name],
        enforce_parameter_schema=True,
        work_pool_name=pool,
        work_queue_name=work_queue,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment_id = deployment.apply(image=image)
    return {
        "id": str(deployment_id),
        "name": f"{flow_fn.name}/{deployment.name}",
        "entrypoint": deployment.entrypoint,
        "work_pool": pool,
        "image": image,
        "schedule": cron or (f"every {interval:g} s" if interval is not None else None),
    }


def cmd_deploy(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.cli.server import prefect_defaults
    from flows.config import load_config

    config = load_config(args.config)  # validated before Prefect is touched
    prefect_defaults()
    out = deploy(
        config,
        pool=args.pool,
        name=args.name,
        image=args.image,
        work_queue=args.work_queue,
        cron=args.cron,
        interval=args.interval,
        reference=args.reference,
        paused=args.paused,
    )
    print(
        f"deployed {out['name']} ({out['id']}): entrypoint {out['entrypoint']}, work pool "
        f"{out['work_pool']}, one run at a time, schedule {out['schedule'] or 'none'}"
        + (f", image {out['image']}" if out["image"] else "")
    )
    for key, path in local_paths(config).items():
        print(f"  note: {key} is a local path ({path}); a worker on another machine cannot see it")
    print(f"run it now: prefect deployment run '{out['name']}'")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    dep = subparsers.add_parser(
        "deploy",
        help="create a Prefect deployment of the monitor for a work pool (config as parameter)",
        description="Create or update a Prefect deployment of the drift check (or, with "
        "--reference, of the reference build) on the Prefect API of PREFECT_API_URL. The "
        "configuration is validated and stored in the deployment as its parameter.",
    )
    dep.add_argument("--config", required=True, help="monitor TOML file")
    dep.add_argument("--pool", required=True, help="work pool whose workers run the flow")
    dep.add_argument("--name", help="deployment name (default: the monitor name)")
    dep.add_argument(
        "--image", help="container image for the workers (docker, Cloud Run, Kubernetes pools)"
    )
    dep.add_argument("--work-queue", help="work queue of the pool (default: the pool's default)")
    group = dep.add_mutually_exclusive_group()
    group.add_argument("--cron", help="cron schedule (default: [schedule] in the config)")
    group.add_argument("--interval", type=float, help="interval in seconds")
    dep.add_argument(
        "--reference",
        action="store_true",
        help="deploy the reference build (build_reference flow, unscheduled) instead",
    )
    dep.add_argument("--paused", action="store_true", help="create the schedule paused")
    dep.set_defaults(handler=cmd_deploy)
