"""The options of a check and of a reference build, declared once.

Both command lines are generated from :data:`OPTIONS`: ``divmon check`` / ``divmon reference
build`` (:mod:`pipelines.cli`) and the Beam jobs' ``PipelineOptions`` of ``python -m
pipelines.check_job`` / ``python -m pipelines.reference_job`` (:mod:`pipelines.options`).

- ``divmon`` spells an option with dashes (``--timestamp-column``), has the short forms ``-i``,
  ``-o`` and ``-r``, and requires what a command cannot run without.
- Beam spells it with underscores (``--timestamp_column``, Beam's convention) and also takes the
  dashed spelling, so a ``divmon`` command line runs unchanged as the Beam job's. Beam parses the
  options of every ``PipelineOptions`` class at once, so the jobs check required options
  themselves (:func:`missing`).

Both spellings end in the same attribute names, which ``CheckJob.from_options`` and
``BuildJob.from_options`` (:mod:`pipelines.spec`) read. This module imports no Beam.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BUILD", "CHECK", "OPTIONS", "Option", "add_options", "missing", "options_of"]

CHECK = "check"
BUILD = "build"
Spelling = Literal["divmon", "beam"]


@dataclass(frozen=True)
class Option:
    """One option: its attribute name (``dest``), the commands that take it, and how it parses.

    The long flag is ``--`` + ``flag`` or ``dest`` (dashes for ``divmon``, underscores for Beam);
    ``help`` is one text or one per command; ``required`` names the commands that cannot run
    without it; options with the same ``exclusive`` group cannot be given together; ``metavar``
    names the value in the help (default: ``dest`` in capitals)."""

    dest: str
    commands: frozenset[str]
    help: str | Mapping[str, str]
    flag: str | None = None
    short: str | None = None
    type: Callable[[str], Any] | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    switch: bool = False
    repeat: bool = False
    required: frozenset[str] = frozenset()
    exclusive: str | None = None
    metavar: str | None = None

    def flags(self, spelling: Spelling) -> list[str]:
        """The option strings: ``divmon``'s dashed long flag (and short form), or Beam's
        underscored one followed by the dashed one when they differ."""
        name = self.flag or self.dest
        dashed = "--" + name.replace("_", "-")
        if spelling == "divmon":
            return [dashed, *([self.short] if self.short else [])]
        beam = "--" + name.replace("-", "_")
        return [beam] if beam == dashed else [beam, dashed]

    def help_for(self, command: str | None) -> str:
        """The help text for ``command`` (None: every command's, for Beam's one parser)."""
        if isinstance(self.help, str):
            return self.help
        if command is not None:
            return self.help[command]
        return "; ".join(f"{c}: {text}" for c, text in self.help.items())


def _opt(dest: str, commands: str, help: str | Mapping[str, str], **kw: Any) -> Option:
    """An :class:`Option`; ``commands`` (and ``required``) as a space-separated string."""
    required = frozenset(str(kw.pop("required", "")).split())
    return Option(dest, frozenset(commands.split()), help, required=required, **kw)


OPTIONS: tuple[Option, ...] = (
    # where the data is and where results go
    _opt(
        "reference",
        CHECK,
        "reference profile JSON",
        short="-r",
        required=CHECK,
    ),
    _opt(
        "inputs",
        f"{CHECK} {BUILD}",
        "Parquet/CSV/JSONL path or glob (repeatable)",
        flag="input",
        short="-i",
        metavar="PATH",
        repeat=True,
        required=BUILD,
    ),
    _opt(
        "output",
        f"{CHECK} {BUILD}",
        {CHECK: "directory for records-<run_id>.parquet", BUILD: "reference profile JSON to write"},
        short="-o",
        required=BUILD,
    ),
    _opt(
        "input_format",
        f"{CHECK} {BUILD}",
        "input format (default: from the file suffix)",
        choices=("parquet", "csv", "jsonl"),
    ),
    _opt(
        "csv_delimiter",
        CHECK,
        "CSV field delimiter, e.g. ';' or '\\t' (default: sniffed from each file's first KiB, "
        "and logged)",
    ),
    _opt("csv_quote", CHECK, "CSV quote character (default '\"'; '' for none)"),
    _opt("csv_encoding", CHECK, "CSV text encoding (default utf-8), e.g. latin-1"),
    _opt(
        "csv_no_header",
        CHECK,
        "CSV files have no header line (columns f0, f1, ...)",
        switch=True,
    ),
    # what a reference profile holds
    _opt("features", BUILD, "comma-separated features (default: all columns)"),
    _opt("exclude", BUILD, "comma-separated columns to leave out"),
    _opt("categorical", BUILD, "comma-separated features to treat as categorical"),
    _opt("families", BUILD, "MLE families, e.g. amount=lognormal,flag=none"),
    _opt(
        "n_bins", BUILD, "numeric bins (default 32)", flag="bins", type=int, default=32, metavar="N"
    ),
    _opt(
        "strategy",
        BUILD,
        "numeric bin edges: quantiles of the reference, or equal widths (default quantile)",
        choices=("quantile", "uniform"),
        default="quantile",
    ),
    _opt("top_n", BUILD, "categorical vocabulary size (default 50)", type=int, default=50),
    _opt(
        "exact_quantiles",
        BUILD,
        "exact edges (all values on one worker; small data)",
        switch=True,
        exclusive="quantiles",
    ),
    _opt(
        "approximate_quantiles",
        BUILD,
        "Beam ApproximateQuantiles even for small inputs",
        switch=True,
        exclusive="quantiles",
    ),
    _opt(
        "cache_mb",
        BUILD,
        "in-process build: MiB of batches kept between passes (default 4, what one read "
        "decodes at once)",
        type=int,
    ),
    # windows and event time
    _opt(
        "window",
        f"{CHECK} {BUILD}",
        {
            CHECK: "event-time window, e.g. 15m, 1h, 1d",
            BUILD: "windowed reference: also summarise the reference's own windows of this size "
            "(the monitor's window, e.g. 1h; needs --timestamp-column)",
        },
    ),
    _opt(
        "chunk",
        BUILD,
        "windowed reference without time: windows of this many rows (built in process)",
        type=int,
    ),
    _opt(
        "season",
        CHECK,
        "judge each window against the same season of a windowed reference",
        choices=("hour_of_day", "day_of_week", "hour_of_week"),
    ),
    _opt(
        "rolling",
        CHECK,
        "a rolling reference: the trailing period, e.g. 28d (needs --rolling-state; "
        "docs/policy.md, Rolling references)",
    ),
    _opt(
        "rolling_state",
        CHECK,
        "--rolling: folder of its state (rolling.json) and rolled profiles (versions/)",
    ),
    _opt("roll_every", CHECK, "--rolling: roll at multiples of this", default="1d"),
    _opt(
        "absorb_after",
        CHECK,
        "--rolling: a change that breached this long is the new normal (default: a quarter of "
        "--rolling; off: never)",
    ),
    _opt(
        "timestamp_column",
        f"{CHECK} {BUILD}",
        {CHECK: "column with the event time", BUILD: "windowed reference: the event-time column"},
    ),
    _opt(
        "timestamp_format",
        f"{CHECK} {BUILD}",
        "event-time layout when not ISO 8601, YYYY/MM/DD or epoch numbers: a strptime format "
        "such as '%%d/%%m/%%Y %%H:%%M', or epoch_s, epoch_ms, epoch_us, epoch_ns",
    ),
    _opt(
        "max_future",
        CHECK,
        "plausibility horizon: rows whose event time is later than this after now (default "
        "1d) are in no window, counted and logged; a file with only such rows fails; 'off' "
        "lifts it",
    ),
    _opt(
        "max_age",
        CHECK,
        "rows whose event time is earlier than this before now are in no window either "
        "(default off), e.g. 3650d against the epoch 0 of a null written as 0",
    ),
    _opt("allowed_lateness", CHECK, "streaming: how late data may still count"),
    # judging and results
    _opt("policy", CHECK, "policy JSON ({'default': {...}, 'features': {...}})"),
    _opt(
        "fail_on",
        CHECK,
        "exit 1 when a window's severity is at least this (gate CI jobs and scripts)",
        choices=("warning", "critical"),
    ),
    _opt("run_id", CHECK, "the run's id (default: a new one)"),
    _opt("jsonl", CHECK, "also write JSON Lines", switch=True),
    _opt(
        "bigquery_table",
        CHECK,
        'also write the records to BigQuery, "project.dataset.table" (the flat history table '
        "of docs/monitoring-stack.md; streaming inserts when streaming, load jobs in batch)",
    ),
    _opt("mle_state_in", CHECK, "running-MLE state from an earlier run (JSON)"),
    _opt("mle_state_out", CHECK, "where to write the updated running-MLE state"),
    # streaming sources
    _opt(
        "pubsub_subscription",
        CHECK,
        "streaming: JSON messages of projects/P/subscriptions/S",
    ),
    _opt("pubsub_topic", CHECK, "streaming: JSON messages of projects/P/topics/T"),
    _opt(
        "event_time_field",
        CHECK,
        "Pub/Sub: JSON field with the event time (default: publish time)",
    ),
    _opt("watch_directory", CHECK, "local streaming: poll a directory for new files"),
    _opt(
        "watch_interval",
        CHECK,
        "seconds between polls of --watch-directory (default 5)",
        type=float,
        default=5.0,
    ),
    _opt(
        "watch_stop_after",
        CHECK,
        "stop watching after this many seconds (default: never)",
        type=float,
    ),
)


def options_of(command: str | None = None) -> Iterator[Option]:
    """The options of ``command`` (None: of either), in the table's order."""
    return (o for o in OPTIONS if command is None or command in o.commands)


def add_options(
    parser: argparse.ArgumentParser | Any,
    spelling: Spelling,
    options: Iterable[Option],
    command: str | None = None,
) -> None:
    """Add ``options`` to ``parser`` in ``spelling``; ``command`` picks per-command help texts
    and (for ``divmon``) makes the options it requires required."""
    groups: dict[str, Any] = {}
    for o in options:
        target = parser
        if o.exclusive:
            if o.exclusive not in groups:
                groups[o.exclusive] = parser.add_mutually_exclusive_group()
            target = groups[o.exclusive]
        kwargs: dict[str, Any] = {"dest": o.dest, "help": o.help_for(command)}
        if o.switch:
            kwargs |= {"action": "store_true", "default": False}
        else:
            kwargs["default"] = o.default
            if o.repeat:
                kwargs["action"] = "append"
            if o.type is not None:
                kwargs["type"] = o.type
            if o.choices is not None:
                kwargs["choices"] = o.choices
            if o.metavar is not None:
                kwargs["metavar"] = o.metavar
        if spelling == "divmon" and command in o.required:
            kwargs["required"] = True
        target.add_argument(*o.flags(spelling), **kwargs)


def missing(command: str, options: Any) -> list[str]:
    """The required options of ``command`` that ``options`` (a namespace) lacks, as flags."""
    return [
        o.flags("divmon")[0]
        for o in options_of(command)
        if command in o.required and not getattr(options, o.dest, None)
    ]
