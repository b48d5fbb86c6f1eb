"""``divmon deploy`` against a real Prefect API (the session's test server): the deployment is read
back, and its stored parameters run the flow the way a worker would (entrypoint loaded by module
path, parameters validated against the flow's signature)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli.divmon import main as divmon
from flows.config import MonitorConfig, load_config

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

POOL = "divmon-test-pool"


@pytest.fixture(scope="module")
def pool():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        except ObjectAlreadyExists:
            pass
    return POOL


def _read(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


@pytest.mark.beam
def test_deploy_stores_a_validated_config_and_a_worker_runs_it(
    monitor_dir: Path, pool: str, capsys
):
    from prefect.flows import load_flow_from_entrypoint

    from flows.demo import run as demo

    config_path = monitor_dir / "monitor.toml"
    config = load_config(config_path)
    code = divmon(
        ["deploy", "--config", str(config_path), "--pool", pool, "--cron", "*/15 * * * *"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    name = f"drift_check/{config.name}"
    assert f"deployed {name} (" in out and "entrypoint flows.check.drift_check" in out
    assert "note: history.dir is a local path" in out  # a worker elsewhere would not see it

    dep = _read(name)
    assert dep.entrypoint == "flows.check.drift_check"  # module path: no code to pull
    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
    assert dep.work_pool_name == pool
    assert dep.pull_steps == [] and dep.path is None
    assert [s.schedule.cron for s in dep.schedules] == ["*/15 * * * *"]
    assert dep.enforce_parameter_schema
    assert set(dep.parameters) == {"config"}  # the configuration itself, not a file path
    assert MonitorConfig.model_validate(dep.parameters["config"]) == config
    assert "config" in dep.parameter_openapi_schema["properties"]

    # What a worker does with it: load the flow by module path, validate the parameters
    # against its signature, run it. The data is in the monitor directory.
    demo.write_stream_file(monitor_dir / "landing", 0, n=400, drifted=False)
    flow = load_flow_from_entrypoint(dep.entrypoint)
    params = flow.validate_parameters(dep.parameters)
    assert isinstance(params["config"], MonitorConfig)
    result = flow(**params, return_state=True).result(raise_on_failure=False)
    assert result["files"] == 1 and result["records"] > 0, result

    # Deploying again updates the same deployment (new parameters), still one run at a time.
    code = divmon(["deploy", "--config", str(config_path), "--pool", pool, "--interval", "600"])
    assert code == 0
    again = _read(name)
    assert again.id == dep.id and again.global_concurrency_limit.limit == 1


def test_deploy_refuses_bad_configs_and_runner_options_in_one_line(tmp_path: Path, pool, capsys):
    from flows.demo import run as demo

    def write(args: str):
        return demo.write_config(
            tmp_path,
            dashboard=False,
            notify_env=None,
            extra=f"\n[runner]\npipeline_args = {args}\n",
        )

    dataflow = '"--runner=DataflowRunner", "--project=p-1234", "--region=europe-west1"'
    config_path = write(f"[{dataflow}]")
    assert divmon(["deploy", "--config", str(config_path), "--pool", pool]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("divmon deploy: error: runner.pipeline_args: --runner=DataflowRunner")
    assert "--temp_location" in err and "\n" not in err

    write(f'[{dataflow}, "--temp_location=gs://b/tmp"]')
    assert divmon(["deploy", "--config", str(config_path), "--pool", pool]) == 2
    err = capsys.readouterr().err.strip()
    assert "source.paths: " in err and "is a local path" in err and "\n" not in err

    write('["--runner=FnApiRunner"]')
    assert divmon(["deploy", "--config", str(config_path), "--pool", "no-such-pool"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("divmon deploy: error:") and "no-such-pool" in err, err


def test_a_flow_takes_the_config_as_a_path_or_as_content_not_both(tmp_path: Path):
    from flows.config import ConfigError, config_of
    from flows.demo import run as demo

    path = demo.write_config(tmp_path, dashboard=False, notify_env=None)
    config = load_config(path)
    assert config_of(str(path)) == config
    assert config_of(config=config.model_dump(mode="json")) == config
    with pytest.raises(ConfigError, match="not both"):
        config_of(str(path), config)
    with pytest.raises(ConfigError, match="config parameter: name: "):
        config_of(config={**config.model_dump(mode="json"), "name": "bad name!"})
