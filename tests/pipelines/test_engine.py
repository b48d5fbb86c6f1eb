"""pipelines.engine: the one rule that picks the in-process engine or Beam (checks, builds)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from divtransforms.profile import ReferenceProfile
from pipelines import engine
from pipelines.cli import register
from pipelines.spec import BuildJob, CheckJob, CheckJobError, Source

LOCAL = "data/cur.parquet"
GS = "gs://bucket/cur.parquet"
RUNNER = "--runner=DataflowRunner"


# (what the case is, job arguments, pipeline args, in process?)
CHECKS = [
    ("local files, no option", {}, [], True),
    ("a runner option", {}, [RUNNER], False),
    ("any Beam option", {}, ["--direct_num_workers=2"], False),
    ("bucket input", {"inputs": (GS,)}, [], False),
    ("local and bucket inputs", {"inputs": (LOCAL, GS)}, [], False),
    ("bucket reference", {"reference": "gs://b/ref.json"}, [], False),
    ("bucket output", {"output": "gs://b/out"}, [], False),
    ("s3 state out", {"mle_state_out": "s3://b/state.json"}, [], False),
    ("local output and state", {"output": "out", "mle_state_out": "st.json"}, [], True),
    ("BigQuery table", {"bigquery_table": "p.d.t"}, [], False),
    ("no input", {"inputs": ()}, [], False),
    ("Pub/Sub", {"inputs": (), "pubsub_topic": "projects/p/topics/t", "window": "1h"}, [], False),
    ("watched directory", {"watch_directory": "in", "window": "1h", "ts": "ts"}, [], False),
]


def _check_job(
    inputs=(LOCAL,), reference="ref.json", pubsub_topic=None, watch_directory=None, window=None,
    ts=None, **kw,
) -> CheckJob:  # fmt: skip
    source = Source(inputs, pubsub_topic=pubsub_topic, watch_directory=watch_directory)
    return CheckJob(reference, source, window=window, timestamp_column=ts, **kw)


@pytest.mark.parametrize(("case", "job", "args", "local"), CHECKS, ids=[c[0] for c in CHECKS])
def test_the_check_rule(case, job, args, local):
    assert engine.check_in_process(_check_job(**job), args) is local, case


# (what the case is, job arguments, in process?)
BUILDS = [
    ("local files, no option", {}, True),
    ("a local directory and a glob", {"inputs": ("ref/", "more/*.csv")}, True),
    ("a runner option", {"pipeline_args": (RUNNER,)}, False),
    ("a dry run", {"pipeline_args": ("--dry_run=True",)}, False),
    ("bucket input", {"inputs": ("gs://b/ref/*.parquet",)}, False),
    ("approximate quantiles", {"exact": False}, False),
    ("exact quantiles", {"exact": True}, True),
    ("windowed", {"timestamp_column": "ts", "window": "1h"}, True),
    ("chunk windows", {"chunk": 1000}, True),
    ("bucket output: written by ReferenceProfile.save", {"output": "gs://b/ref.json"}, True),
]


@pytest.mark.parametrize(("case", "job", "local"), BUILDS, ids=[c[0] for c in BUILDS])
def test_the_build_rule(case, job, local):
    assert engine.build_in_process(BuildJob(**{"inputs": (LOCAL,), **job})) is local, case


def test_a_profile_in_memory_is_no_path():
    """A monitor hands its loaded profile over: a bucket URL in its ``source`` does not make a
    check of local files a Beam job."""
    table = pa.table({"x": np.arange(100, dtype=float)})
    profile = ReferenceProfile.build(table, source="gs://bucket/ref/*.parquet")
    assert engine.check_in_process(_check_job(reference=profile), [])


def test_chunk_windows_on_beam_are_an_error():
    job = BuildJob((LOCAL,), None, chunk=100, pipeline_args=(RUNNER,))
    with pytest.raises(CheckJobError, match="chunk windows is built in process"):
        engine.run_build(job)


def _divmon_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser


def test_build_job_from_divmon_and_from_beam_options():
    args, extra = _divmon_parser().parse_known_args(
        ["reference", "build", "-i", "a.parquet", "-i", "b/*.csv", "-o", "ref.json",
         "--features", "x, y", "--exclude", "ts", "--categorical", "y", "--families",
         "x=lognormal", "--bins", "16", "--top-n", "20", "--approximate-quantiles",
         "--window", "1h", "--timestamp-column", "ts", RUNNER]
    )  # fmt: skip
    job = BuildJob.from_options(args, pipeline_args=extra)
    assert job == BuildJob(
        ("a.parquet", "b/*.csv"), "ref.json", features=("x", "y"), kinds={"y": "categorical"},
        exclude=("ts",), families={"x": "lognormal"}, n_bins=16, top_n=20, exact=False,
        timestamp_column="ts", window="1h", pipeline_args=(RUNNER,),
    )  # fmt: skip
    assert job.window_seconds == 3600.0
    beam = SimpleNamespace(
        inputs="a.parquet", output="ref.json", n_bins=8, strategy="uniform", top_n=50,
        exact_quantiles=True, approximate_quantiles=False, features=None, categorical=None,
        families=None, input_format="parquet",
    )  # fmt: skip
    assert BuildJob.from_options(beam) == BuildJob(
        ("a.parquet",), "ref.json", kinds={}, families={}, n_bins=8, strategy="uniform",
        exact=True, input_format="parquet",
    )  # fmt: skip
    with pytest.raises(CheckJobError, match="--window"):
        BuildJob((LOCAL,), window="an hour")
    with pytest.raises(CheckJobError, match="no input"):
        BuildJob(())


def test_divmon_builds_local_files_without_beam(tmp_path):
    """The CLI's build of local files: the in-process engine, no Beam import."""
    data = tmp_path / "ref.csv"
    data.write_text("x,y\n" + "".join(f"{i * 0.5},{'ab'[i % 2]}\n" for i in range(200)))
    argv = ["reference", "build", "-i", str(data), "-o", str(tmp_path / "r.json")]
    code = (
        "import argparse, sys; from pipelines.cli import register;"
        "p = argparse.ArgumentParser(); register(p.add_subparsers());"
        f"a, extra = p.parse_known_args({argv!r}); rc = a.handler(a, extra);"
        "print(rc, 'apache_beam' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "0 False"
    profile = ReferenceProfile.load(tmp_path / "r.json")
    assert sorted(profile.features) == ["x", "y"]
