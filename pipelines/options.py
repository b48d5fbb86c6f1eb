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
from types import SimpleNamespace

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.arguments import BUILD, CHECK, OPTIONS, add_options, missing

__all__ = [
    "DEFAULT_BATCH_RUNNER",
    "DEFAULT_STREAMING_RUNNER",
    "CheckOptions",
    "InputOptions",
    "ReferenceOptions",
    "job_options",
    "make_pipeline_options",
]

DEFAULT_BATCH_RUNNER = "FnApiRunner"
DEFAULT_STREAMING_RUNNER = "BundleBasedDirectRunner"


class InputOptions(PipelineOptions):
    """The options a check and a reference build share (inputs, output, windows, event time)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        _add_only(parser, CHECK, BUILD)


class ReferenceOptions(PipelineOptions):
    """``python -m pipelines.reference_job``'s own options (with :class:`InputOptions`)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        _add_only(parser, BUILD)


class CheckOptions(PipelineOptions):
    """``python -m pipelines.check_job``'s own options (with :class:`InputOptions`)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        _add_only(parser, CHECK)


def _add_only(parser, *commands: str) -> None:
    """The table's options taken by exactly ``commands``, in Beam's spelling: Beam parses the
    options of every ``PipelineOptions`` class at once, so each is declared by one class."""
    add_options(parser, "beam", [o for o in OPTIONS if o.commands == frozenset(commands)])


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


def unknown_pipeline_args(args: Sequence[str], *, ours: bool = False) -> list[str]:
    """The options in ``args`` that no Beam ``PipelineOptions`` class knows (as Beam parses
    them, without abbreviations); Beam itself would only log and drop them. ``ours``: count the
    jobs' own options (:mod:`pipelines.arguments`) as known, as the ``python -m`` jobs do;
    ``divmon`` has them in its own spelling."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        if ours or not cls.__module__.startswith("pipelines."):
            classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(args))
    return [a.split("=", 1)[0] for a in unknown if a.startswith("-")]


def job_options(command: str, argv: Sequence[str]) -> tuple[SimpleNamespace, PipelineOptions]:
    """A ``python -m`` job's command line: its options of ``command`` as a namespace with the
    attribute names ``divmon``'s parser gives (every option of :mod:`pipelines.arguments`, unset
    ones at their defaults), and Beam's options. SystemExit names an option Beam does not know
    or a required one that is missing."""
    unknown = unknown_pipeline_args(argv, ours=True)
    if unknown:
        raise SystemExit(f"unknown option {unknown[0]} (not a job option nor a Beam option)")
    options = PipelineOptions(list(argv))
    ns = SimpleNamespace(**options.get_all_options())
    lacking = missing(command, ns)
    if lacking:
        raise SystemExit(f"{' and '.join(lacking)} {'is' if len(lacking) == 1 else 'are'} required")
    return ns, options
