"""``make demo`` end to end: the demo's ``main`` on the Prefect harness, as the README runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.demo import receiver
from flows.demo import run as demo

pytestmark = [pytest.mark.prefect, pytest.mark.beam, pytest.mark.usefixtures("prefect_harness")]


def test_demo_tells_the_outage_story_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    receivers: list[receiver.AlertReceiver] = []

    class Recording(receiver.AlertReceiver):
        def start(self) -> receiver.AlertReceiver:
            receivers.append(self)
            return super().start()

    monkeypatch.setattr(receiver, "AlertReceiver", Recording)
    monkeypatch.setenv(demo.WEBHOOK_ENV, "unset")  # restored after the test
    root = tmp_path / "demo"

    assert demo.main(["--output", str(root)]) == 0

    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line.startswith("[demo] run")}
    assert "0 delivered, 2 failed (receiver down" in lines["[demo] run 2"], out
    assert "2 delivered, 0 failed (2 from the outbox)" in lines["[demo] run 3"], out
    assert "each of the 2 alert(s) was delivered exactly once" in out

    # The receiver got each alert of the alert log exactly once, after the outage.
    (rx,) = receivers
    got = [a["dedup_key"] for a in rx.alerts()]
    entries = json.loads((root / "history" / "_alerts.json").read_text())["alerts"]
    assert len(got) == len(set(got)) == 2
    assert sorted(got) == sorted(e["dedup_key"] for e in entries)
    assert {e["status"] for e in entries} == {"delivered"}
    page = (root / "dashboard.html").read_text(encoding="utf-8")
    assert "divtransforms demo" in page and "amount" in page
