"""The reference flow's engine (pipelines.engine): local files in process, as Beam would build."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from divtransforms.profile import ReferenceProfile
from flows.config import load_config
from flows.demo import run as demo
from flows.reference import reference_build_job
from pipelines import engine

pytestmark = pytest.mark.beam

BUILD = (
    "import json, sys; from flows.config import load_config;"
    "from flows.reference import build_reference_version;"
    "out = build_reference_version(load_config(sys.argv[1]));"
    "print(json.dumps([out['reference_id'], out['dataflow_job'], 'apache_beam' in sys.modules]))"
)


def test_the_reference_flow_builds_local_files_in_process(tmp_path: Path, monkeypatch):
    demo.write_reference_data(tmp_path / "reference-data", n=4_000)
    monkeypatch.setenv(demo.WEBHOOK_ENV, "http://127.0.0.1:9/unused")
    config_path = demo.write_config(tmp_path, dashboard=False)
    run = subprocess.run(
        [sys.executable, "-c", BUILD, str(config_path)], capture_output=True, text=True, check=True
    )
    reference_id, dataflow_job, beam_imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert beam_imported is False and dataflow_job is None
    config = load_config(config_path)
    local = ReferenceProfile.load(config.reference_path)
    assert local.reference_id == reference_id

    # The Beam job (any Beam option) builds the same profile from the same settings.
    job = reference_build_job(config, config.reference_patterns(), str(tmp_path / "beam.json"))
    assert engine.build_in_process(job)
    beam_job = replace(job, pipeline_args=("--direct_num_workers=1",))
    assert not engine.build_in_process(beam_job)
    beam = engine.run_build(beam_job)
    assert local.features.keys() == beam.features.keys() and len(local.features) == 2
    assert local.features == beam.features


BASE = {"source": {"paths": ["x/*.parquet"], "timestamp_column": "ts"}, "window": {"size": "1h"}}
# ([reference] table, [runner] pipeline_args, the BuildJob fields that follow, in process?)
JOBS = [
    ({}, [], {"exclude": (), "window": None, "timestamp_column": None}, True),
    ({"windows": True}, [], {"exclude": ("ts",), "window": "1h", "timestamp_column": "ts"}, True),
    ({"chunk": 500}, [], {"exclude": ("ts",), "window": None, "chunk": 500}, True),
    ({}, ["--runner=DataflowRunner"], {"pipeline_args": ("--runner=DataflowRunner",)}, False),
    ({"inputs": ["gs://b/ref/*.parquet"]}, [], {"inputs": ("gs://b/ref/*.parquet",)}, False),
]


@pytest.mark.parametrize(("reference", "args", "fields", "local"), JOBS)
def test_the_reference_table_makes_the_build_job(reference, args, fields, local):
    from flows.config import parse_config

    ref = {"path": "ref/r.json", "inputs": ["ref/*.parquet"], "n_bins": 16, **reference}
    config = parse_config({**BASE, "reference": ref, "runner": {"pipeline_args": args}})
    job = reference_build_job(config, list(ref["inputs"]), "out.json")
    assert job.n_bins == 16 and job.output == "out.json" and job.work_name == config.name
    assert {k: getattr(job, k) for k in fields} == fields
    assert engine.build_in_process(job) is local
