"""``divmon run``, ``divmon serve`` and ``divmon alerts install`` (Prefect imported lazily)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

from flows.cli.server import prefect_defaults

log = logging.getLogger("divmon")


def _config_path(args: argparse.Namespace) -> str:
    from flows.config import load_config

    load_config(args.config)  # fail fast, before Prefect starts, on a bad file
    return str(Path(args.config).resolve())


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    path = _config_path(args)
    prefect_defaults()
    from flows.cli.server import prefect_api

    if args.reference:
        from flows.reference import build_reference

        with prefect_api():
            out = build_reference(path)
        print(json.dumps(out, indent=2, default=str))
        return 0
    from flows.check import check_once, exit_code, problems
    from flows.config import load_config
    from flows.monitor.state import StateStore

    # The run lock first: a second run is refused at once, before it starts a Prefect API.
    with StateStore.for_config(load_config(path)).held(owner="divmon run"), prefect_api():
        out = check_once(path)
    print(json.dumps(out, indent=2, default=str))
    code = exit_code(out)
    if code:
        print(f"divmon run: {problems(out)}", file=sys.stderr)
    return code


def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.config import load_config

    path = _config_path(args)
    config = load_config(path)
    cron = args.cron or (config.schedule.cron if args.interval is None else None)
    interval = (
        args.interval
        if args.interval is not None
        else (config.schedule.interval_seconds if cron is None else None)
    )
    if cron is None and interval is None:
        raise ValueError("serve needs a schedule: --cron, --interval, or [schedule] in the config")
    prefect_defaults()
    name = args.name or config.name
    metrics_port = args.metrics_port if args.metrics_port is not None else config.metrics.port
    if metrics_port is not None:  # before the Prefect server: scrapes work while it starts
        from flows.stack.metrics import start_metrics_server

        host = args.metrics_host or config.metrics.host
        bound = start_metrics_server(config, metrics_port, host)
        print(f"divmon serve: metrics at http://{host}:{bound}/metrics", flush=True)

    def serve() -> None:
        from prefect.deployments.runner import EntrypointType

        from flows.check import drift_check

        drift_check.serve(
            name=name,
            cron=cron,
            interval=timedelta(seconds=interval) if interval is not None else None,
            parameters={"config_path": path},
            tags=["divtransforms"],
            description=f"divtransforms drift check of {path}",
            entrypoint_type=EntrypointType.MODULE_PATH,
            limit=1,  # one check at a time: runs share the ledger
        )

    if os.environ.get("PREFECT_API_URL"):
        log.info("serving %s on %s", name, os.environ["PREFECT_API_URL"])
        serve()
        return 0
    import signal

    from flows.cli.server import local_server

    def _terminate(signum, frame):  # SIGTERM stops serving like Ctrl-C, so the server is stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)

    home = Path(os.environ["PREFECT_HOME"]) if "PREFECT_HOME" in os.environ else Path.cwd()
    home.mkdir(parents=True, exist_ok=True)
    with local_server(timeout=args.server_timeout, log_path=home / "server.log") as api_url:
        os.environ["PREFECT_API_URL"] = api_url
        print(
            f"divmon serve: local Prefect server at {api_url} (UI: {api_url[:-4]}); "
            "Ctrl-C stops both"
        )
        try:
            serve()
        finally:
            os.environ.pop("PREFECT_API_URL", None)
    return 0


def cmd_alerts_install(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.config import load_config

    config = load_config(args.config)
    prefect_defaults()
    from flows.alerts.automations import install_automations
    from flows.cli.server import prefect_api

    with prefect_api():
        out = install_automations(config, timedelta(minutes=args.suppress_minutes))
    for a in out:
        print(f"installed automation {a['name']!r} ({a['id']}) -> {a['block']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run one drift check now (Prefect flow; without PREFECT_API_URL on a temporary "
        "local API that stops with it)",
    )
    run.add_argument("--config", required=True, help="monitor TOML file")
    run.add_argument(
        "--reference",
        action="store_true",
        help="build the reference (build_reference flow) instead of checking",
    )
    run.set_defaults(handler=cmd_run)

    serve = subparsers.add_parser(
        "serve",
        help="serve the drift check on a schedule (starts a local Prefect server when "
        "PREFECT_API_URL is not set)",
    )
    serve.add_argument("--config", required=True, help="monitor TOML file")
    group = serve.add_mutually_exclusive_group()
    group.add_argument("--cron", help='cron schedule, e.g. "*/15 * * * *"')
    group.add_argument("--interval", type=float, help="interval in seconds")
    serve.add_argument("--name", help="deployment name (default: the monitor name)")
    serve.add_argument(
        "--server-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the local server's health endpoint",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (default: [metrics] port; 0: a free port)",
    )
    serve.add_argument("--metrics-host", help="address of /metrics (default: [metrics] host)")
    serve.set_defaults(handler=cmd_serve)

    alerts = subparsers.add_parser("alerts", help="server-side alert routing")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    install = alerts_sub.add_parser(
        "install",
        help="create Prefect Automations routing divtransforms.drift.* events to the "
        "configured notification targets",
    )
    install.add_argument("--config", required=True, help="monitor TOML file")
    install.add_argument(
        "--suppress-minutes",
        type=float,
        default=60.0,
        help="suppression window per feature (trigger 'within')",
    )
    install.set_defaults(handler=cmd_alerts_install)
    from flows.cli import alert_commands

    alert_commands.register(alerts_sub)  # test, list, uninstall

    from flows.cli import files

    files.register(subparsers)
    from flows.cli import deploy

    deploy.register(subparsers)
