"""``divmon alerts install`` / ``list --automations`` / ``uninstall`` on the Prefect harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli.divmon import main
from flows.config import load_config

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def test_uninstall_removes_what_install_created(monitor_dir: Path, capsys) -> None:
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    from flows.alerts.automations import automation_prefix, block_name

    path = str(monitor_dir / "monitor.toml")
    config = load_config(path)
    assert main(["alerts", "install", "--config", path]) == 0
    capsys.readouterr()
    with get_client(sync_client=True) as client:
        other = client.read_automations()  # automations of other monitors/tests stay
    mine = [a for a in other if a.name.startswith(automation_prefix(config))]
    assert len(mine) == 1
    Block.load(f"custom-webhook/{block_name(config, config.notify[0])}")  # saved by install

    assert main(["alerts", "list", "--config", path, "--automations"]) == 0
    assert capsys.readouterr().out.startswith(mine[0].name)

    assert main(["alerts", "uninstall", "--config", path]) == 0
    out = capsys.readouterr().out
    assert f"removed automation {mine[0].name!r}" in out
    assert block_name(config, config.notify[0]) in out
    with get_client(sync_client=True) as client:
        left = client.read_automations()
    assert [a.id for a in left] == [a.id for a in other if a.id != mine[0].id]
    with pytest.raises(ValueError):
        Block.load(f"custom-webhook/{block_name(config, config.notify[0])}")
    assert main(["alerts", "uninstall", "--config", path]) == 0
    assert "no automations installed" in capsys.readouterr().out
