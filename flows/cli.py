"""The ``divmon`` command line. Each area registers its own subcommands; heavy imports are lazy."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="divmon",
        description="divtransforms drift monitoring: build references, check data, run flows.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from pipelines import cli as pipeline_cli

    pipeline_cli.register(sub)
    from flows import commands as flow_commands

    flow_commands.register(sub)
    from flows.dashboard import cli as dashboard_cli

    dashboard_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Beam logs its own plumbing (type-hint conversions, state caches) at INFO.
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"no handler for {args.command}")
    if extra and not getattr(args, "accepts_pipeline_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(handler(args, extra) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:
        # User errors (bad config, bad input): one clear line, no traceback.
        logging.getLogger("divmon").debug("error", exc_info=True)
        print(f"divmon {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
