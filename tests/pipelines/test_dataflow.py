"""The Dataflow path offline: pipelines translate into Dataflow job descriptions without a network.

The seam: ``DataflowRunner.run_pipeline`` does all the translation (overrides, runner API proto,
Docker environment with staged artifacts, ``apiclient.Job``) and, with ``--dry_run=True``, returns
before ``DataflowApplicationClient`` (which uploads and submits). Option validation stays offline
when the project id and the bucket name are well formed (otherwise Beam tries to create a default
bucket). ``apiclient.Environment`` then builds the job's environment section offline too.
"""

from __future__ import annotations

import json
import socket
import tarfile

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from pipelines.check_job import CheckJob, Source, build_check_pipeline
from pipelines.options import make_pipeline_options
from pipelines.reference_job import build_reference_pipeline
from tests.helpers import make_current, make_reference

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


@pytest.fixture
def loopback_only(monkeypatch):
    """Connections to anything but 127.0.0.1 (the storage emulator) fail the test."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"network access attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


def _strings(obj, seen=None, depth=0):
    """Every string inside a DoFn as pickled into the job (attributes, containers, closures)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes):  # e.g. Create's coder-encoded elements (the read plan)
        yield obj.decode("latin-1")
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v, seen, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _strings(v, seen, depth + 1)
    elif callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            yield from _strings(cell.cell_contents, seen, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from _strings(vars(obj), seen, depth + 1)


def _dofns(job):
    from apache_beam.internal import pickler
    from apache_beam.portability import common_urns, python_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    for t in job.proto_pipeline.components.transforms.values():
        if t.spec.urn != common_urns.primitives.PAR_DO.urn:
            continue
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
        if payload.do_fn.urn == python_urns.PICKLED_DOFN_INFO:
            yield t.unique_name, pickler.loads(payload.do_fn.payload)[0]


def test_the_flow_path_translates_for_dataflow_with_every_output_in_the_bucket(
    loopback_only, anonymous_gcp, gcs_server, tmp_path
):
    """``run_monitor`` with DataflowRunner and ``--dry_run=True``, everything in a bucket: the
    real flow path (discovery in the bucket, the journal, the work folder) up to Beam's
    translation, which stops the run before anything is submitted or recorded."""
    from divtransforms import storage
    from divtransforms.profile import ReferenceProfile
    from flows.config import load_config
    from flows.demo import run as demo
    from flows.monitor.run import run_monitor
    from flows.monitor.state import StateStore
    from pipelines.remote import NotRun

    bucket = gcs_server.bucket()
    ref = demo.write_reference_data(tmp_path / "staging", n=2_000)
    profile = ReferenceProfile.build(pq.read_table(ref), exclude=["ts"])
    storage.write_atomic(
        f"{bucket}/reference/reference.json", json.dumps(profile.to_dict()).encode()
    )
    for hour in (0, 1):
        f = demo.write_stream_file(tmp_path / "staging", hour, n=200, drifted=False)
        storage.write_atomic(f"{bucket}/landing/{f.name}", f.read_bytes())
    root = tmp_path / "config"
    root.mkdir()
    args = [
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        "--region=europe-west1",
        f"--temp_location={bucket}/tmp",
        "--dry_run=True",
        "--no_auth",
        "--sdk_location=container",
        "--sdk_container_image=europe-west1-docker.pkg.dev/p/divmon/worker:0.1.0",
    ]
    extra = f"\n[runner]\npipeline_args = {json.dumps(args)}\n"
    text = demo.write_config(root, dashboard=False, notify_env=None, extra=extra).read_text()
    text = text.replace('"landing/', f'"{bucket}/landing/')
    text = text.replace('"reference/', f'"{bucket}/reference/')
    text = text.replace('dir = "history"', f'dir = "{bucket}/history"')
    (root / "monitor.toml").write_text(text)
    config = load_config(root / "monitor.toml")

    with pytest.raises(NotRun, match="translated and not submitted") as stopped:
        run_monitor(config, run_id="dry")
    job = stopped.value.result.job
    desc = _describe(job)
    assert desc["type"] == "JOB_TYPE_BATCH"
    assert f"{bucket[5:]}/tmp/" in desc["environment"]["tempStoragePrefix"]

    work = f"{bucket}/tmp/divmon/{config.name}/dry"
    fns = dict(_dofns(job))
    by_class = {type(fn).__name__: name for name, fn in fns.items()}
    records, state = by_class["_WriteAllFn"], by_class["_WriteStateFn"]
    assert fns[records]._dir == work
    assert fns[state]._path == f"{work}/_state/mle-dry.json"
    paths = {
        name: [s for s in _strings(fn) if "/" in s and (s.startswith("/") or "://" in s)]
        for name, fn in fns.items()
    }
    written = paths[records] + paths[state]
    assert written and all(p == work or p.startswith(f"{work}/") for p in written)
    # everything the job carries (DoFn attributes, closures, Create's encoded read plan) names
    # the bucket's files and nothing on this machine (config, staging: all under tmp_path)
    blob = "\n".join(s for fn in fns.values() for s in _strings(fn))
    assert f"{bucket}/landing/events-000.parquet" in blob
    assert f"{bucket}/landing/events-001.parquet" in blob
    assert str(tmp_path) not in blob, "a local path in the Dataflow job"
    assert "divmon-check-" not in blob  # no local temp work folder
    # the run is journaled but nothing was recorded, and the bucket holds no output
    state = StateStore.for_config(config).load()
    assert state.pending["stage"] == "planned" and not state.ledger
    assert storage.walk(f"{bucket}/tmp") == []
    assert storage.glob(f"{bucket}/history/date=*/*") == []
