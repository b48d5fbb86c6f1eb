"""A small Chrome DevTools Protocol client for the dashboard tests (headless Debian Chromium).

Chromium runs with the flags from the team brief and a fresh profile; pages are driven over the
DevTools websocket (``websockets`` sync client). Every console message, uncaught exception, log
entry and network request of a page is recorded so tests can assert on them.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
# Runs before any page script: records alert()/confirm()/prompt() calls instead of blocking.
HOOKS = """
window.__dialogs = [];
['alert', 'confirm', 'prompt'].forEach(function (name) {
  window[name] = function (msg) { window.__dialogs.push(name + ':' + String(msg)); };
});
"""


def find_chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors


class Page:
    """One browser tab, driven through its own DevTools websocket."""

    def __init__(self, ws_url: str, width: int, height: int, on_close=None) -> None:
        self.ws = connect(ws_url, max_size=None, open_timeout=20)
        self._on_close = on_close
        self._ids = itertools.count(1)
        self.log = PageLog()
        self._events: list[dict[str, Any]] = []
        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            self.call(method)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS})

    def _record(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            self.log.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.log.console_errors.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.log.exceptions.append(exc.get("description") or details.get("text", "?"))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.log.log_errors.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                )
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        self._events.append(msg)

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._record(msg)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for i, msg in enumerate(self._events):
            if msg.get("method") == method:
                return self._events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            msg = json.loads(self.ws.recv(timeout=remaining))
            self._record(msg)
            if msg.get("method") == method:
                self._events.remove(msg)
                return msg

    def goto(self, url: str, timeout: float = 90.0) -> None:
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", timeout)

    def eval(self, expression: str, timeout: float = 60.0) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} stayed falsy for {timeout} s")
            time.sleep(0.1)

    def drain(self, seconds: float = 0.3) -> None:
        """Read events for a moment (late console errors, requests)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._record(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                break

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            height = min(int(self.eval("document.documentElement.scrollHeight")), 6000)
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            )
        data = self.call("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()
        if self._on_close is not None:
            self._on_close()


class Browser:
    """A headless Chromium with remote debugging on 127.0.0.1 (random port)."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="divtransforms-chromium-")
        self.proc = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ws_url = self._read_ws_url()
        # Keep reading Chromium's stderr so a full pipe never blocks it.
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self.port = int(re.search(r":(\d+)/", self.ws_url).group(1))
        self.ws = connect(self.ws_url, max_size=None, open_timeout=20)
        self._ids = itertools.count(1)

    def _read_ws_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            lines.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1)
        self.proc.kill()
        raise RuntimeError("Chromium did not start:\n" + "".join(lines[-30:]))

    def _drain_stderr(self) -> None:
        for _ in self.proc.stderr:
            pass

    def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        return Page(
            f"ws://127.0.0.1:{self.port}/devtools/page/{target}",
            width,
            height,
            on_close=lambda: self._call("Target.closeTarget", {"targetId": target}),
        )

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
