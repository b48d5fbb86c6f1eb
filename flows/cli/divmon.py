"""The ``divmon`` command line. Each area registers its own subcommands; heavy imports are lazy."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

EXIT_CODES = """exit codes:
  0  done; no breach at the --fail-on severity (divmon check)
  1  divmon check --fail-on: a breach at or above that severity was found
  2  an error, one line on stderr: the command line, the configuration, the input, or the
     machine (a full or read-only disk names the file)
  3  divmon run: input files failed or were quarantined (divmon files list)
  4  divmon run: alerts could not all be delivered (they stay in the outbox)
  130 interrupted (Ctrl-C)"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("divtransforms")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from divtransforms import __version__

        return __version__


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    out = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _option_strings(sub)
    return out


def _check_pipeline_args(parser: argparse.ArgumentParser, extra: Sequence[str]) -> None:
    """Options divmon does not know must be Beam pipeline options: a typo is an error."""
    import difflib

    from pipelines.options import unknown_pipeline_args

    for option in unknown_pipeline_args(extra):
        close = difflib.get_close_matches(option, _option_strings(parser), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        parser.error(
            f"unknown option {option}{hint}; options divmon does not know must be Beam "
            "pipeline options (--runner, --project, ...)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="divmon",
        description="divtransforms drift monitoring: build references, check data, run flows.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"divmon {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from pipelines import cli as pipeline_cli

    pipeline_cli.register(sub)
    from flows.cli import commands as flow_commands

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
    if extra:
        _check_pipeline_args(parser, extra)
    from pipelines.errors import BeamErrorLog, one_line

    with BeamErrorLog.capture(verbose=args.verbose) as captured:
        try:
            return int(handler(args, extra) or 0)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:
            # One clear line, no traceback (-v adds it), whatever failed: bad input or
            # configuration, or the machine (a full or read-only disk names the file).
            logging.getLogger("divmon").debug("error", exc_info=True)
            line = f"divmon {args.command}: error: {one_line(exc)}"
            beam = captured.summary(already_said=line)
            print(line + (f" [{beam}]" if beam and not args.verbose else ""), file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
