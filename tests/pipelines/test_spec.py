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
