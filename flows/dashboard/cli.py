"""``divmon dashboard``: write the drift dashboard, export a chart, or serve it with live reload."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from divtransforms import storage

log = logging.getLogger(__name__)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` subcommand to the root ``divmon`` parser."""
    p = subparsers.add_parser(
        "dashboard",
        help="write the drift dashboard (one self-contained HTML file) or serve it",
        description="Render the drift history as one self-contained HTML page (no network "
        "needed to open it). With --serve, serve it on 127.0.0.1 and re-render "
        "when new runs land.",
    )
    p.add_argument(
        "--history",
        type=storage.location,
        default=None,
        help="drift history directory (date=YYYY-MM-DD/part-*.parquet, _alerts.json)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="monitor TOML (as for `divmon run`): history, policy thresholds, title, output",
    )
    p.add_argument(
        "--output",
        type=storage.location,
        default=None,
        help="HTML file to write (default: the config's dashboard.path, else drift.html)",
    )
    p.add_argument("--title", default=None, help="page title (default: Drift dashboard)")
    p.add_argument(
        "--alerts",
        type=storage.location,
        default=None,
        help="alert log (default: <history>/_alerts.json)",
    )
    p.add_argument(
        "--metric", default=None, help="metric drawn against the thresholds (default js_divergence)"
    )
    p.add_argument("--warn", type=float, default=None, help="default warn threshold")
    p.add_argument("--critical", type=float, default=None, help="default critical threshold")
    p.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help='JSON file {"feature" or "*": ["metric", warn, critical]}',
    )
    p.add_argument(
        "--policy",
        type=Path,
        default=None,
        help='alert policy JSON {"default": {...}, "features": {...}}: its metric and floors',
    )
    p.add_argument(
        "--chart",
        metavar="FEATURE",
        default=None,
        help="instead of the page, write FEATURE's charts to --chart-output",
    )
    p.add_argument(
        "--chart-output",
        type=storage.location,
        default=None,
        help="PNG or SVG path for --chart (default <FEATURE>.png)",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve on 127.0.0.1 and re-render when the history changes",
    )
    p.add_argument("--port", type=int, default=8765, help="port for --serve (0 = any free)")
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between history checks with --serve (default 2)",
    )
    p.set_defaults(handler=run)
    return p


def thresholds_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """Merge ``--policy``, then ``--thresholds FILE``, then ``--metric/--warn/--critical``."""
    from flows.dashboard.data import (
        DEFAULT_CRITICAL,
        DEFAULT_METRIC,
        DEFAULT_WARN,
        thresholds_from_policy,
    )

    thresholds: dict[str, Any] = {}
    if getattr(args, "monitor_config", None) is not None:
        thresholds.update(args.monitor_config.thresholds())
    if args.policy is not None:
        thresholds.update(thresholds_from_policy(_json_object(args.policy, "--policy")))
    if args.thresholds is not None:
        thresholds.update(_json_object(args.thresholds, "--thresholds"))
    if any(v is not None for v in (args.metric, args.warn, args.critical)):
        metric, warn, critical = thresholds.get(
            "*", (DEFAULT_METRIC, DEFAULT_WARN, DEFAULT_CRITICAL)
        )
        thresholds["*"] = (
            args.metric or metric,
            args.warn if args.warn is not None else warn,
            args.critical if args.critical is not None else critical,
        )
    return thresholds or None


def _json_object(path: Path, option: str) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} {path}: not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ValueError(f"{option} {path}: expected a JSON object")
    return loaded


def _apply_config(args: argparse.Namespace) -> None:
    """Fill --history/--output/--title from ``--config`` (flows' monitor TOML) where not given."""
    args.monitor_config = None
    if args.config is not None:
        from flows.config import load_config

        config = load_config(args.config)
        args.monitor_config = config
        args.history = args.history or config.history_dir
        args.output = args.output or config.dashboard_path
        args.title = args.title or config.dashboard.title
    if args.history is None:
        raise ValueError("give --history DIR (or --config monitor.toml)")
    args.output = args.output or Path("drift.html")
    args.title = args.title or "Drift dashboard"


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.dashboard.export import render_feature_chart
    from flows.dashboard.page import render_dashboard
    from flows.dashboard.serve import DashboardServer

    _apply_config(args)
    thresholds = thresholds_from_args(args)
    if args.chart is not None:
        out = args.chart_output or Path(f"{args.chart}.png")
        render_feature_chart(
            args.history, args.chart, out, thresholds=thresholds, alerts_path=args.alerts
        )
        print(f"wrote {out}")
        return 0
    kwargs = {"thresholds": thresholds, "alerts_path": args.alerts, "title": args.title}
    if not args.serve:
        out = render_dashboard(args.history, args.output, **kwargs)
        print(f"wrote {out} ({storage.stat(out).size / 1e6:.1f} MB)")
        return 0
    if storage.is_remote(args.output):
        raise ValueError("--serve writes the page locally: give a local --output")
    server = DashboardServer(
        args.history, args.output, port=args.port, interval=args.interval, render_kwargs=kwargs
    )
    print(f"serving {args.history} at {server.url} (Ctrl-C to stop)", flush=True)
    server.serve_forever()
    return 0
