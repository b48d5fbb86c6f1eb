"""Remote runs offline: the work folder under --temp_location, the one-line option errors, and the
submitted Dataflow job (id, console URL, how to stop it) from Beam's own result class."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from pipelines.options import make_pipeline_options
from pipelines.remote import (
    DataflowJob,
    NotRun,
    RemoteRunError,
    dataflow_job,
    require_remote_paths,
    submit,
    work_folder,
)

pytestmark = pytest.mark.beam

DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=divmon-test-project",
    "--region=europe-west1",
]


def _opts(*args: str):
    return make_pipeline_options(list(args))


def test_work_folder_is_per_run_under_the_bucket_temp_location():
    opts = _opts(*DATAFLOW, "--temp_location=gs://bucket/tmp/")
    assert work_folder(opts, "orders", "r1") == "gs://bucket/tmp/divmon/orders/r1"
    # names cannot climb out of the folder or add levels
    assert work_folder(opts, "a/b", "..x") == "gs://bucket/tmp/divmon/a_b/..x"
    with pytest.raises(RemoteRunError):
        work_folder(opts, "..")


def test_local_runs_keep_a_local_folder_and_a_bucket_temp_location_makes_any_run_remote():
    assert work_folder(_opts(), "orders", "r1") is None
    assert work_folder(_opts("--temp_location=/tmp/x"), "orders", "r1") is None
    remote_temp = _opts("--runner=FnApiRunner", "--temp_location=s3://b/t")
    assert work_folder(remote_temp, "m", "r") == "s3://b/t/divmon/m/r"


@pytest.mark.parametrize("temp", [None, "/tmp/local"])
def test_a_remote_runner_without_a_bucket_temp_location_names_the_option(temp):
    opts = _opts(*DATAFLOW, *([f"--temp_location={temp}"] if temp else []))
    with pytest.raises(RemoteRunError, match=r"--runner=DataflowRunner needs --temp_location") as e:
        work_folder(opts, "orders", "r1")
    assert "\n" not in str(e.value)
    assert (temp or "none") in str(e.value)


def test_remote_runner_workers_cannot_read_local_files():
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t")
    require_remote_paths(opts, ["gs://b/data/*.parquet"], "source.paths")
    with pytest.raises(RemoteRunError, match=r"^source.paths: /data/x.parquet is a local path"):
        require_remote_paths(opts, ["gs://b/ok", "/data/x.parquet"], "source.paths")
    require_remote_paths(_opts(), ["/data/x.parquet"], "source.paths")  # local runner: fine


def _dataflow_result(options, *, job_type="JOB_TYPE_BATCH", state="JOB_STATE_DONE"):
    """Beam's own DataflowPipelineResult around the Job message the service answers with (as in
    ``apiclient.DataflowApplicationClient.submit_job_description``), in a terminal state so
    that ``wait_until_finish`` asks the service nothing."""
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult
    from google.cloud import dataflow

    job = dataflow.Job(
        id="2026-12-01_06_00_00-1234567890",
        project_id="divmon-test-project",
        location="europe-west1",
        name="divmon-orders-check",
        type_=getattr(dataflow.JobType, job_type),
        current_state=getattr(dataflow.JobState, state),
    )
    return DataflowPipelineResult(job, runner=None, options=options)


def test_job_from_beams_dataflow_result():
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t")
    job = dataflow_job(_dataflow_result(opts), opts)
    assert job == DataflowJob(
        "2026-12-01_06_00_00-1234567890",
        "divmon-test-project",
        "europe-west1",
        "divmon-orders-check",
        streaming=False,
    )
    assert job.url == (
        "https://console.cloud.google.com/dataflow/jobs/europe-west1/"
        "2026-12-01_06_00_00-1234567890?project=divmon-test-project"
    )
    assert job.stop_command("drain") == (
        "gcloud dataflow jobs drain 2026-12-01_06_00_00-1234567890 --region=europe-west1 "
        "--project=divmon-test-project"
    )
    assert job.to_dict()["url"] == job.url
    streaming = dataflow_job(_dataflow_result(opts, job_type="JOB_TYPE_STREAMING"), opts)
    assert streaming.streaming and "streaming job divmon-orders-check" in streaming.describe()


def test_options_fill_what_the_result_leaves_out_and_other_runners_have_no_job():
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t", "--job_name=named", "--streaming")
    fake = SimpleNamespace(job_id=lambda: "J1")  # a result with only job_id()
    assert dataflow_job(fake, opts) == DataflowJob(
        "J1", "divmon-test-project", "europe-west1", "named", streaming=True
    )
    assert dataflow_job(fake, _opts()) is None  # a local runner's result is no Dataflow job
    assert dataflow_job(SimpleNamespace(job_id=lambda: None), opts) is None
    assert dataflow_job(SimpleNamespace(), opts) is None


class _Pipeline:
    def __init__(self, result):
        self.result = result
        self.waited = False

    def run(self):
        return self.result


def test_submit_logs_and_reports_the_job_before_waiting(caplog):
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t", "--streaming")
    result = _dataflow_result(opts, job_type="JOB_TYPE_STREAMING", state="JOB_STATE_RUNNING")
    seen = []
    with caplog.at_level(logging.INFO, logger="pipelines.remote"):
        got, job = submit(_Pipeline(result), opts, wait=False, on_job=seen.append)
    assert got is result and seen == [job]
    text = caplog.text
    assert f"started Dataflow streaming job divmon-orders-check {job.job_id}: {job.url}" in text
    assert f"gcloud dataflow jobs drain {job.job_id} --region=europe-west1" in text
    assert f"gcloud dataflow jobs cancel {job.job_id} --region=europe-west1" in text


def test_submit_waits_for_a_batch_job():
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t")
    waited = []
    result = _dataflow_result(opts)
    result.wait_until_finish = lambda duration=None: waited.append(True)
    _, job = submit(_Pipeline(result), opts)
    assert waited == [True] and not job.streaming


def test_a_dry_run_stops_after_translation():
    opts = _opts(*DATAFLOW, "--temp_location=gs://b/t", "--dry_run=True")
    translated = SimpleNamespace(job=None, wait_until_finish=lambda: None)
    with pytest.raises(NotRun, match="translated and not submitted") as e:
        submit(_Pipeline(translated), opts, on_job=lambda job: pytest.fail("no job"))
    assert e.value.result is translated


@pytest.fixture
def dataflow_service(monkeypatch):
    """``DataflowRunner.run_pipeline`` translates the job for real (``--dry_run`` path: overrides,
    runner API proto, ``apiclient.Job``) and answers like the service: Beam's own
    ``DataflowPipelineResult`` around the ``Job`` message the service returns, running."""
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    translate = DataflowRunner.run_pipeline
    submitted = []

    def run_pipeline(self, pipeline, options):
        from apache_beam.options.pipeline_options import TestOptions

        options.view_as(TestOptions).dry_run = True
        translated = translate(self, pipeline, options)
        options.view_as(TestOptions).dry_run = False
        kind = (
            "JOB_TYPE_STREAMING" if translated.job.proto.type_.name.endswith("STREAMING") else None
        )
        result = _dataflow_result(
            options, job_type=kind or "JOB_TYPE_BATCH", state="JOB_STATE_RUNNING"
        )
        submitted.append(translated.job)
        return result

    monkeypatch.setattr(DataflowRunner, "run_pipeline", run_pipeline)
    return submitted


def test_divmon_check_streaming_on_dataflow_says_what_it_started_and_how_to_stop_it(
    offline, dataflow_service, profile, tmp_path, capsys
):
    from flows.cli.divmon import main as divmon

    profile.save(tmp_path / "ref.json")
    code = divmon(
        [
            "check",
            "--reference",
            str(tmp_path / "ref.json"),
            "--pubsub-subscription",
            "projects/divmon-test-project/subscriptions/events",
            "--event-time-field",
            "ts",
            "--window",
            "1h",
            "--output",
            "gs://divmon-test-bucket/drift",
            "--streaming",
            *DATAFLOW,
            "--temp_location=gs://divmon-test-bucket/tmp",
            "--no_auth",
            "--sdk_location=container",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert len(dataflow_service) == 1  # one job translated and "submitted", not waited for
    job_id = "2026-12-01_06_00_00-1234567890"
    url = (
        f"https://console.cloud.google.com/dataflow/jobs/europe-west1/{job_id}"
        "?project=divmon-test-project"
    )
    assert f"started Dataflow streaming job divmon-orders-check {job_id}: {url}" in out
    assert (
        f"gcloud dataflow jobs drain {job_id} --region=europe-west1 --project=divmon-test-project"
        in out
    )
    assert f"gcloud dataflow jobs cancel {job_id}" in out


def test_divmon_check_on_dataflow_needs_a_bucket_for_its_output(offline, profile, tmp_path, capsys):
    from flows.cli.divmon import main as divmon

    profile.save(tmp_path / "ref.json")
    args = ["check", "--reference", str(tmp_path / "ref.json"), *DATAFLOW, "--no_auth"]
    assert divmon([*args, "--input", "gs://b/x.parquet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("divmon check: error: --runner=DataflowRunner needs --temp_location")
    assert "\n" not in err
    assert divmon([*args, "--input", str(tmp_path / "x.parquet"), "--temp_location=gs://b/t"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--input: " in err and "is a local path" in err
