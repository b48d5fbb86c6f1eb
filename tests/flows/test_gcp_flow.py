"""The scheduled flow on "Dataflow" against a bucket (the GCS emulator on 127.0.0.1).

``DataflowRunner.run_pipeline`` is replaced by what the service would do, done here: the job runs
on the local runner, its workers writing to the bucket through Beam's GCS filesystem as Dataflow
workers do, and the answer is Beam's own ``DataflowPipelineResult`` around the service's ``Job``
message (id, project, region, name; done). Everything else is the real code path: the per-run
work folder under ``--temp_location``, the records read back from it and the folder deleted, the
job logged and attached to the flow run as a link artifact, and the reference built the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from divtransforms import storage
from flows.config import load_config
from flows.monitor.history import read_history
from tests.flows.test_bucket_flow import bucket_monitor, land

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.beam,
    pytest.mark.usefixtures("prefect_harness", "anonymous_gcp"),
]

PROJECT = "divmon-test-project"
REGION = "europe-west1"


@pytest.fixture
def dataflow_here(monkeypatch):
    from apache_beam.runners.dataflow.dataflow_runner import (
        DataflowPipelineResult,
        DataflowRunner,
    )
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from google.cloud import dataflow

    jobs: list[str] = []

    def run_pipeline(self, pipeline, options):
        local = FnApiRunner().run_pipeline(pipeline, options)
        local.wait_until_finish()
        job_id = f"2026-12-01_07_00_0{len(jobs)}-4242"
        jobs.append(job_id)
        job = dataflow.Job(
            id=job_id,
            project_id=PROJECT,
            location=REGION,
            name=f"divmon-{len(jobs)}",
            type_=dataflow.JobType.JOB_TYPE_BATCH,
            current_state=dataflow.JobState.JOB_STATE_DONE,
        )
        result = DataflowPipelineResult(job, self, options)
        result.metric_results = local.metrics()  # the service's counters (DataflowMetrics)
        return result

    monkeypatch.setattr(DataflowRunner, "run_pipeline", run_pipeline)
    return jobs


def _link_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def test_the_flow_on_dataflow_writes_to_the_bucket_work_folder_and_links_the_job(
    tmp_path: Path, gcs_server, dataflow_here, monkeypatch
):
    from flows.check import check_once
    from flows.demo import run as demo
    from flows.reference import build_reference

    bucket = gcs_server.bucket()
    runner = (
        f'\n[runner]\npipeline_args = ["--runner=DataflowRunner", "--project={PROJECT}", '
        f'"--region={REGION}", "--temp_location={bucket}/tmp", "--no_auth", '
        '"--sdk_location=container"]\n'
    )
    root = bucket_monitor(tmp_path, bucket, extra=runner)
    monkeypatch.setenv(demo.WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    config = load_config(root / "monitor.toml")

    ref = build_reference(str(root / "monitor.toml"))
    assert ref["dataflow_job"]["job_id"] == dataflow_here[0]
    assert storage.exists(ref["path"])

    for hour in (0, 1):
        land(tmp_path, bucket, hour, drifted=False, rows=500)
    out = check_once(str(root / "monitor.toml"))
    assert out["ok"] and out["files"] == 2 and out["records"] == 4, out
    job_id = dataflow_here[-1]
    url = f"https://console.cloud.google.com/dataflow/jobs/{REGION}/{job_id}?project={PROJECT}"
    assert [j["url"] for j in out["dataflow_jobs"]] == [url]
    assert out["dataflow_jobs"][0]["job_id"] == job_id

    # the records went through the work folder in the bucket into the history; the folder is gone
    assert read_history(config.history_dir).num_rows == 4
    assert storage.walk(f"{bucket}/tmp/divmon") == []

    # the job is a link artifact on the flow run (and the reference build's job on its run)
    links = _link_artifacts(f"{config.name}-dataflow-job")
    assert any(url in a.data for a in links), [a.data for a in links]  # "[text](url)"
    assert len(links) >= 2  # the reference build and the check


def test_divmon_commands_on_dataflow_print_the_job_and_use_a_bucket_work_folder(
    tmp_path: Path, gcs_server, dataflow_here, capsys
):
    from flows.cli.divmon import main as divmon
    from flows.demo import run as demo

    bucket = gcs_server.bucket()
    ref_data = demo.write_reference_data(tmp_path / "staging", n=2_000)
    storage.write_atomic(f"{bucket}/ref/ref.parquet", ref_data.read_bytes())
    current = demo.write_stream_file(tmp_path / "staging", 0, n=400, drifted=False)
    storage.write_atomic(f"{bucket}/landing/{current.name}", current.read_bytes())
    dataflow = [
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        f"--region={REGION}",
        f"--temp_location={bucket}/tmp",
        "--no_auth",
        "--sdk_location=container",
    ]
    # a local --output: the job writes into the bucket, the profile is copied here
    local_ref = tmp_path / "ref.json"
    args = ["reference", "build", "--input", f"{bucket}/ref/*.parquet", "--exclude", "ts"]
    assert divmon([*args, "--output", str(local_ref), *dataflow]) == 0
    out = capsys.readouterr().out
    assert f"started Dataflow batch job divmon-1 {dataflow_here[0]}: https://console" in out
    assert local_ref.exists() and f"wrote {local_ref}" in out

    check = ["check", "--reference", str(local_ref), "--input", f"{bucket}/landing/*.parquet"]
    code = divmon([*check, "--window", "1h", "--timestamp-column", "ts", *dataflow])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"started Dataflow batch job divmon-2 {dataflow_here[1]}: https://console" in out
    assert "amount" in out and "400 rows" in out
    assert storage.walk(f"{bucket}/tmp/divmon") == []  # work folders deleted
