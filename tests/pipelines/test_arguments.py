"""One option table (pipelines.arguments) for divmon and the Beam jobs: both command lines take
the same options, parse them to the same values, and the jobs read nothing else."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from pipelines.arguments import BUILD, CHECK, OPTIONS, options_of
from pipelines.spec import BuildJob, CheckJob

DIVMON_COMMAND = {CHECK: ["check"], BUILD: ["reference", "build"]}


def divmon_parser() -> argparse.ArgumentParser:
    from pipelines import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser


def subparser(command: str) -> argparse.ArgumentParser:
    parser = divmon_parser()
    for word in DIVMON_COMMAND[command]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def beam_options(argv: list[str]) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions

    import pipelines.options  # noqa: F401  (registers the jobs' options with Beam)

    return PipelineOptions(argv).get_all_options()


def command_line(command: str, spelling: str) -> tuple[list[str], dict]:
    """Every option of ``command`` given once (twice when repeatable), and the values that
    should result."""
    argv: list[str] = []
    want: dict = {}
    for o in options_of(command):
        if o.exclusive and any(p.exclusive == o.exclusive for p in OPTIONS if p.dest in want):
            continue  # one of a mutually exclusive group
        flag = o.flags("divmon" if spelling == "dashes" else "beam")[0]
        if o.switch:
            argv.append(flag)
            want[o.dest] = True
            continue
        if o.choices:
            raw = o.choices[-1]
        elif o.type is int:
            raw = "7"
        elif o.type is float:
            raw = "2.5"
        else:
            raw = f"v-{o.dest}"
        value = o.type(raw) if o.type else raw
        if o.repeat:
            argv += [f"{flag}={raw}", f"{flag}={raw}2"]
            want[o.dest] = [value, (o.type or str)(raw + "2")]
        else:
            argv.append(f"{flag}={raw}")
            want[o.dest] = value
    return argv, want


@pytest.mark.parametrize("command", [CHECK, BUILD])
def test_divmon_and_beam_take_the_same_options(command):
    """The divmon subcommand has exactly the table's options of its command; Beam knows every
    option of the table in both spellings; defaults and choices agree."""
    parser = subparser(command)
    divmon = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(divmon) == {o.dest for o in options_of(command)}
    defaults = beam_options([])
    for o in options_of(command):
        assert divmon[o.dest].default == defaults[o.dest] == (False if o.switch else o.default)
        assert divmon[o.dest].choices == o.choices
        assert divmon[o.dest].required == (command in o.required)


@pytest.mark.parametrize("command", [CHECK, BUILD])
@pytest.mark.parametrize("spelling", ["dashes", "underscores"])
def test_every_option_parses_to_the_same_value(command, spelling):
    dashed, want = command_line(command, "dashes")
    ns = divmon_parser().parse_args([*DIVMON_COMMAND[command], *dashed])
    assert {d: getattr(ns, d) for d in want} == want
    argv, _ = command_line(command, spelling)
    beam = beam_options(argv)
    assert {d: beam[d] for d in want} == want


class Reads:
    """A namespace that records which attributes are read."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.read: set[str] = set()

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self.ns, name)


def test_the_jobs_read_only_options_of_the_table(tmp_path):
    """CheckJob/BuildJob.from_options and the --policy / --mle-state-in handling read nothing
    the table does not declare for their command (a new option goes into the table, or one of
    the two command lines would lack it)."""
    from pipelines.check_job import check_job_of

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": {}}))
    parser = divmon_parser()
    check = Reads(
        parser.parse_args(["check", "-r", "ref.json", "-i", "a.csv", "--policy", str(policy)])
    )
    assert isinstance(check_job_of(check), CheckJob)
    assert check.read <= {o.dest for o in options_of(CHECK)}
    assert {"reference", "inputs", "policy", "mle_state_in", "season", "max_age"} <= check.read
    build = Reads(parser.parse_args(["reference", "build", "-i", "a.csv", "-o", "r.json"]))
    assert isinstance(BuildJob.from_options(build), BuildJob)
    assert build.read - {"bins"} <= {o.dest for o in options_of(BUILD)}
    assert {"inputs", "n_bins", "exact_quantiles", "chunk", "cache_mb"} <= build.read


def test_the_python_m_jobs_check_their_command_line(tmp_path, capsys):
    """The Beam jobs read --policy and say what is missing or unknown, before any pipeline."""
    from pipelines import check_job, reference_job

    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    argv = ["--reference=r.json", "--input=a.csv", f"--policy={bad}", "--fail_on=warning"]
    with pytest.raises(SystemExit, match=re.escape(f"policy {bad}: not valid JSON")):
        check_job.main(argv)
    with pytest.raises(SystemExit, match="--reference is required"):
        check_job.main(["--input=a.csv"])
    with pytest.raises(SystemExit, match="--output is required"):
        reference_job.main(["--input", "a.csv"])
    with pytest.raises(SystemExit, match="unknown option --timestamp_colum "):
        check_job.main(["--reference=r.json", "--timestamp_colum=ts"])
    with pytest.raises(SystemExit, match="built in process"):
        reference_job.main(["--input=a.csv", "--output=r.json", "--chunk=50"])
