"""Pipeline options for the divtransforms jobs.

Every job runs on an explicitly chosen runner. Without ``--runner`` the local in-process
``FnApiRunner`` is used for batch jobs (Beam's default ``DirectRunner`` would first try to download
the Prism runner) and ``BundleBasedDirectRunner`` for ``--streaming`` jobs (FnApiRunner cannot
stream). Everything else is a standard Beam option: ``--direct_running_mode=multi_processing
--direct_num_workers=2`` locally, ``--runner=DataflowRunner --project --region --temp_location``
(plus ``--setup_file``/``--extra_package`` so workers get divtransforms) on Google Cloud.
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

__all__ = [
    "DEFAULT_BATCH_RUNNER",
    "DEFAULT_STREAMING_RUNNER",
    "CheckOptions",
    "InputOptions",
    "ReferenceOptions",
    "make_pipeline_options",
]

DEFAULT_BATCH_RUNNER = "FnApiRunner"
DEFAULT_STREAMING_RUNNER = "BundleBasedDirectRunner"


class InputOptions(PipelineOptions):
    """Where the data comes from (files, or Pub/Sub with ``--streaming``) and where results go."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--output",
            default=None,
            help="check: directory for drift records; reference: profile JSON",
        )
        parser.add_argument(
            "--input",
            dest="inputs",
            action="append",
            default=None,
            help="Parquet/CSV/JSONL path or glob (repeatable)",
        )
        parser.add_argument(
            "--input_format",
            default=None,
            choices=["parquet", "csv", "jsonl"],
            help="input format (default: from the file suffix)",
        )
        parser.add_argument(
            "--csv_delimiter", default=None, help="CSV delimiter (default: sniffed per file)"
        )
        parser.add_argument("--csv_quote", default=None, help="CSV quote character ('' for none)")
        parser.add_argument("--csv_encoding", default=None, help="CSV encoding (default utf-8)")
        parser.add_argument(
            "--csv_no_header", action="store_true", default=False, help="CSV without header line"
        )
        parser.add_argument(
            "--pubsub_subscription",
            default=None,
            help="projects/P/subscriptions/S: JSON messages (streaming)",
        )
        parser.add_argument(
            "--pubsub_topic", default=None, help="projects/P/topics/T: JSON messages (streaming)"
        )
        parser.add_argument(
            "--event_time_field",
            default=None,
            help="JSON field with the event time (default: publish time)",
        )
        parser.add_argument(
            "--watch_directory",
            default=None,
            help="local streaming: a directory polled for new files",
        )
        parser.add_argument(
            "--watch_interval",
            type=float,
            default=5.0,
            help="seconds between polls of --watch_directory",
        )
        parser.add_argument(
            "--watch_stop_after",
            type=float,
            default=None,
            help="stop watching after this many seconds (default: never)",
        )


class ReferenceOptions(PipelineOptions):
    """``python -m pipelines.reference_job``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--features", default=None, help="comma-separated feature names")
        parser.add_argument(
            "--categorical", default=None, help="comma-separated features to treat as categorical"
        )
        parser.add_argument(
            "--families", default=None, help="MLE families, e.g. amount=lognormal,clicks=poisson"
        )
        parser.add_argument("--bins", dest="n_bins", type=int, default=32)
        parser.add_argument("--strategy", default="quantile", choices=["quantile", "uniform"])
        parser.add_argument("--top_n", type=int, default=50)
        parser.add_argument(
            "--exact_quantiles",
            action="store_true",
            default=False,
            help="exact single-worker edges instead of ApproximateQuantiles",
        )
        parser.add_argument(
            "--approximate_quantiles",
            action="store_true",
            default=False,
            help="ApproximateQuantiles edges even for small inputs",
        )


class CheckOptions(PipelineOptions):
    """``python -m pipelines.check_job``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--reference", default=None, help="reference profile JSON")
        parser.add_argument("--window", default=None, help="event-time window: 30s, 15m, 1h, 1d")
        parser.add_argument("--timestamp_column", default=None)
        parser.add_argument(
            "--timestamp_format",
            default=None,
            help="event-time layout when not ISO 8601, YYYY/MM/DD or epoch numbers: a strptime "
            "format (%%d/%%m/%%Y %%H:%%M) or epoch_s, epoch_ms, epoch_us, epoch_ns",
        )
        parser.add_argument(
            "--allowed_lateness",
            default=None,
            help="how late data may arrive and still update its window",
        )
        parser.add_argument(
            "--max_future",
            default=None,
            help="plausibility horizon after now (default 1d; 'off'): later rows are in no window",
        )
        parser.add_argument(
            "--max_age", default=None, help="rows older than this before now are in no window"
        )
        parser.add_argument("--run_id", default=None)
        parser.add_argument("--jsonl", action="store_true", default=False)
        parser.add_argument("--bigquery_table", default=None, help="project.dataset.table")
        parser.add_argument("--mle_state_in", default=None)
        parser.add_argument("--mle_state_out", default=None)


def make_pipeline_options(
    pipeline_args: Sequence[str] | None = None, *, streaming: bool | None = None
) -> PipelineOptions:
    """Beam options from command-line style arguments, with the runner always set explicitly."""
    args = list(pipeline_args or [])
    if streaming and "--streaming" not in args:
        args.append("--streaming")
    options = PipelineOptions(args)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = DEFAULT_STREAMING_RUNNER if std.streaming else DEFAULT_BATCH_RUNNER
    return options


def unknown_pipeline_args(args: Sequence[str]) -> list[str]:
    """The options in ``args`` that no Beam ``PipelineOptions`` class knows (as Beam parses
    them, without abbreviations); Beam itself would only log and drop them."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        if not cls.__module__.startswith("pipelines."):  # ours are not options of divmon's
            classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(args))
    return [a.split("=", 1)[0] for a in unknown if a.startswith("-")]
