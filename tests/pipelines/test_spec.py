"""The CheckJob spec: one description of a check, from either command's options (no Beam run)."""

from __future__ import annotations

import argparse

import pytest

from pipelines.spec import CheckJob, CheckJobError, Source


def test_from_options_reads_both_spellings_alike():
    """divmon check (argparse, dashes) and python -m pipelines.check_job (Beam, underscores)
    end in the same attribute names, so they build the same job."""
    from apache_beam.options.pipeline_options import PipelineOptions

    import pipelines.options  # noqa: F401  (registers the options)
    from pipelines import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    ns = parser.parse_args(
        ["check", "-r", "ref.json", "-i", "a.parquet", "-i", "b.parquet", "-o", "out",
         "--window", "1h", "--timestamp-column", "ts", "--allowed-lateness", "10m",
         "--run-id", "r1", "--jsonl", "--mle-state-out", "s.json", "--input-format", "parquet"]
    )  # fmt: skip
    beam = PipelineOptions(
        ["--reference=ref.json", "--input=a.parquet", "--input=b.parquet", "--output=out",
         "--window=1h", "--timestamp_column=ts", "--allowed_lateness=10m", "--run_id=r1",
         "--jsonl", "--mle_state_out=s.json", "--input_format=parquet"]
    ).get_all_options()  # fmt: skip
    a = CheckJob.from_options(ns, policy=None)
    b = CheckJob.from_options(argparse.Namespace(**beam), policy=None)
    assert a == b
    assert a.source == Source(("a.parquet", "b.parquet"), input_format="parquet")
    assert (a.window, a.timestamp_column, a.allowed_lateness, a.run_id) == ("1h", "ts", "10m", "r1")
    assert a.jsonl and a.mle_state_out == "s.json" and not a.source.streaming


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": "1 fortnight", "timestamp_column": "ts"}, "--window: cannot read duration"),
        ({"window": "1h"}, "--window needs --timestamp-column"),
        ({"source": Source(pubsub_topic="t")}, "a Pub/Sub check needs --window"),
        ({"source": Source(watch_directory="in"), "window": "1h"}, "watching a directory needs"),
        ({"allowed_lateness": -5}, "--allowed-lateness: a duration must be positive"),
    ],
)
def test_a_job_that_cannot_run_says_why(kwargs, message):
    with pytest.raises(CheckJobError, match=message):
        CheckJob("ref.json", **kwargs)


def test_pubsub_jobs_take_event_times_from_the_messages():
    job = CheckJob("ref.json", Source(pubsub_subscription="s", event_time_field="ts"), window="5m")
    assert job.source.streaming and job.source.pubsub
    with pytest.raises(CheckJobError, match="--reference is required"):
        CheckJob.from_options(argparse.Namespace(reference=None))


def test_a_job_gives_its_settings_whole():
    """``CheckJob.settings`` and ``BuildJob.settings`` are what every driver takes: the same
    windows, horizon (a batch job's bounds fixed at its ``now``, a watcher's read at each batch)
    and judging; the run id stays None until a driver makes one."""
    from pipelines.spec import BuildJob

    windows = {"window": "1h", "timestamp_column": "ts"}
    job = CheckJob("ref.json", Source(("a.parquet",)), allowed_lateness="5m", policy=None,
                   season="hour_of_day", max_age="30d", **windows)  # fmt: skip
    s = job.settings
    assert (s.window, s.timestamp_column, s.allowed_lateness) == ("1h", "ts", "5m")
    assert (s.policy, s.season, s.run_id, s.now) == (None, "hour_of_day", None, job.now)
    assert s.horizon() == job.horizon() and s.horizon().max_future == 86_400.0
    watching = CheckJob("ref.json", Source(watch_directory="in"), **windows)
    assert watching.settings.now is None and watching.horizon().now is None
    build = BuildJob(("a.parquet",), exclude=("ts",), n_bins=8, window="1h", timestamp_column="ts")
    b = build.settings
    assert (b.exclude, b.n_bins, b.window_seconds, b.timestamp_column) == (("ts",), 8, 3600.0, "ts")
