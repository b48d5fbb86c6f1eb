"""The Dataflow path offline: pipelines translate into Dataflow job descriptions without a network.

The seam: ``DataflowRunner.run_pipeline`` does all the translation (overrides, runner API proto,
Docker environment with staged artifacts, ``apiclient.Job``) and, with ``--dry_run=True``, returns
before ``DataflowApplicationClient`` (which uploads and submits). Option validation stays offline
when the project id and the bucket name are well formed (otherwise Beam tries to create a default
bucket). ``apiclient.Environment`` then builds the job's environment section offline too.
"""

from __future__ import annotations

import json
import tarfile

import apache_beam as beam
import pytest

from pipelines.check_job import CheckJob, Source, build_check_pipeline
from pipelines.options import make_pipeline_options
from pipelines.reference_job import build_reference_pipeline
from tests.beam.conftest import make_current, make_reference

pytestmark = pytest.mark.beam

PROJECT = "divmon-test-project"
BUCKET = "gs://divmon-test-bucket"


@pytest.fixture
def package(tmp_path):
    """Stands in for the sdist/wheel a user passes with --extra_package."""
    path = tmp_path / "divtransforms-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("divtransforms-0.1.0/PKG-INFO")
        tar.addfile(info)
    return path


def _options(package, *extra):
    return make_pipeline_options(
        [
            "--runner=DataflowRunner",
            f"--project={PROJECT}",
            "--region=europe-west1",
            f"--temp_location={BUCKET}/tmp",
            "--dry_run=True",
            "--no_auth",
            "--sdk_location=container",
            f"--extra_package={package}",
            *extra,
        ]
    )


def _describe(job) -> dict:
    from apache_beam.runners.dataflow.internal import apiclient

    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=f"{BUCKET}/staging/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash="offline",
    ).proto
    return json.loads(str(job))


def _names(job) -> set[str]:
    return {t.unique_name for t in job.proto_pipeline.components.transforms.values()}


def _staged(job) -> list[str]:
    from apache_beam.portability.api import beam_runner_api_pb2

    out = []
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            payload = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload)
            out.append(payload.staged_name)
    return out


def test_batch_check_translates_to_a_dataflow_job(offline, package, tmp_path, profile, rng):
    import pyarrow.parquet as pq

    pq.write_table(make_current(rng, 500), tmp_path / "cur.parquet", row_group_size=100)
    p = beam.Pipeline(options=_options(package))
    job = CheckJob(
        profile, Source((str(tmp_path / "cur.parquet"),)), window="1h", timestamp_column="ts"
    )
    build_check_pipeline(p, job, profile, f"{BUCKET}/out", "df")
    job = p.run().job
    desc = _describe(job)
    assert desc["type"] == "JOB_TYPE_BATCH"
    assert {
        "Read/Read",
        "DriftMonitor/BinSamples",
        "DriftMonitor/RunningMLE",
        "DriftMonitor/ComputeDivergence",
        "WriteRecords/WriteAll",
    } <= _names(job)
    assert "divtransforms-0.1.0.tar.gz" in _staged(job)  # workers install the package
    assert "use_runner_v2" in desc["environment"]["experiments"]
    assert "divmon-test-bucket/tmp/" in desc["environment"]["tempStoragePrefix"]


def test_pubsub_streaming_check_translates_to_a_streaming_job(offline, package, profile):
    p = beam.Pipeline(options=_options(package, "--streaming"))
    source = Source(
        event_time_field="ts", pubsub_subscription=f"projects/{PROJECT}/subscriptions/events"
    )
    job = CheckJob(profile, source, window="1h", allowed_lateness="1h")
    build_check_pipeline(p, job, profile, f"{BUCKET}/out", "df", streaming=True)
    job = p.run().job
    desc = _describe(job)
    assert desc["type"] == "JOB_TYPE_STREAMING"
    assert "enable_streaming_engine" in desc["environment"]["experiments"]
    names = _names(job)
    assert {
        "ReadPubSub/ReadPubSub",
        "ReadPubSub/EventTime",
        "DriftMonitor/AssignWindows",
        "DriftMonitor/RunningMLE",
        "WriteRecords/WriteEach",
    } <= names
    urns = {t.spec.urn for t in job.proto_pipeline.components.transforms.values()}
    assert "beam:transform:pubsub_read:v1" in urns  # Dataflow's native Pub/Sub source
    assert "divtransforms-0.1.0.tar.gz" in _staged(job)


def test_reference_build_translates(offline, package, tmp_path, rng):
    import pyarrow.parquet as pq

    pq.write_table(make_reference(rng, 300), tmp_path / "ref.parquet")
    p = beam.Pipeline(options=_options(package))
    build_reference_pipeline(
        p,
        [str(tmp_path / "ref.parquet")],
        f"{BUCKET}/ref.json",
        kinds={"x": "numeric", "color": "categorical"},
    )
    job = p.run().job
    assert _describe(job)["type"] == "JOB_TYPE_BATCH"
    assert "BuildReference/Quantiles" in _names(job)


def test_bad_dataflow_options_fail_before_anything_runs(offline, package):
    opts = make_pipeline_options(
        [
            "--runner=DataflowRunner",
            "--project=Bad Project",
            "--region=europe-west1",
            f"--temp_location={BUCKET}/tmp",
            "--dry_run=True",
            "--no_auth",
        ]
    )
    with pytest.raises(ValueError, match="Invalid Project ID"):
        beam.Pipeline(options=opts)
