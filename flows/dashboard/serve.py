"""``divmon dashboard --serve``: serve the dashboard on 127.0.0.1 and re-render when runs land.

A watcher thread polls the history directory (the newest mtime, the number and total size of the
files under it, the alert log included) every ``interval`` seconds and re-renders the page when
that signature changes. The page polls ``/version`` (same origin; the only request the page's
Content-Security-Policy allows) and reloads itself when the version moves.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from divtransforms import storage
from flows.dashboard.page import render_dashboard

log = logging.getLogger(__name__)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d+))?")


def history_signature(
    history_dir: str | Path, alerts_path: str | Path | None = None
) -> tuple[int, int, int]:
    """Changes whenever a file under ``history_dir`` (or the alert log) is added/changed/removed
    (local folder or bucket prefix).

    Directory mtimes alone miss files written into existing ``date=`` partitions, so the files
    are listed (temp files of atomic writes, names starting with ``.``, are ignored).
    """
    base = str(storage.location(history_dir)).rstrip("/") + "/"
    infos = [
        i
        for i in storage.walk(history_dir)
        if not any(s.startswith(".") for s in i.path[len(base) :].replace(os.sep, "/").split("/"))
    ]
    if alerts_path is not None:
        try:
            infos.append(storage.stat(alerts_path))
        except storage.StorageNotFound:
            pass
    newest = max((i.mtime_ns for i in infos), default=0)
    return newest, len(infos), sum(i.size for i in infos)


class DashboardServer:
    """Render ``history_dir`` to ``output_path`` and serve it; re-render on change."""

    def __init__(
        self,
        history_dir: str | Path,
        output_path: str | Path,
        *,
        port: int = 8765,
        interval: float = 2.0,
        render_kwargs: Mapping[str, Any] | None = None,
        on_render: Callable[[int], None] | None = None,
    ) -> None:
        self.history_dir = storage.location(history_dir)
        self.output_path = Path(output_path)
        self.interval = interval
        self.render_kwargs = dict(render_kwargs or {})
        alerts = self.render_kwargs.get("alerts_path")
        self.alerts_path = storage.location(alerts) if alerts else None
        self.on_render = on_render
        self.version = 0
        self.last_error: str | None = None
        self._signature: tuple | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def host_allowed(self, host: str | None) -> bool:
        """Loopback names (``127.0.0.1``, ``localhost``, ``[::1]``) with or without this
        server's port; anything else (or no Host) is refused."""
        if not host:
            return False
        m = _HOST_RE.fullmatch(host.strip().lower())
        if m is None:
            return False
        name, given = m.groups()
        if given and given != str(self.httpd.server_address[1]):
            return False
        return name in LOOPBACK_NAMES

    def render_if_changed(self) -> bool:
        """Re-render when the history changed since the last render; True if it rendered."""
        signature = history_signature(self.history_dir, self.alerts_path)
        if signature == self._signature:
            return False
        with self._lock:
            version = self.version + 1
            try:
                render_dashboard(
                    self.history_dir,
                    self.output_path,
                    live={
                        "url": "/version",
                        "version": version,
                        "interval_ms": int(self.interval * 1000),
                    },
                    **self.render_kwargs,
                )
            except Exception as exc:  # keep serving the last good page; say why
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "dashboard: re-render failed (keeping the previous page): %s", self.last_error
                )
                self._signature = signature
                return False
            self._signature = signature
            self.version = version
            self.last_error = None
        log.info("dashboard: rendered version %d of %s", version, self.history_dir)
        if self.on_render is not None:
            self.on_render(version)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.render_if_changed()

    def start(self) -> DashboardServer:
        """Render once, then serve and watch in background threads."""
        self.render_if_changed()
        for target in (self.httpd.serve_forever, self._watch):
            name = f"dashboard-{target.__name__}"
            thread = threading.Thread(target=target, daemon=True, name=name)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        self.start()
        try:
            self._stop.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not server.host_allowed(self.headers.get("Host")):
                    # DNS rebinding: a page of another site resolved to 127.0.0.1 sends its
                    # own name as Host; only loopback names reach the dashboard.
                    self._send(
                        HTTPStatus.MISDIRECTED_REQUEST,
                        b"unknown Host header\n",
                        "text/plain; charset=utf-8",
                    )
                    return
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    try:
                        body = server.output_path.read_bytes()
                    except FileNotFoundError:
                        self._send(
                            HTTPStatus.SERVICE_UNAVAILABLE,
                            b"not rendered yet\n",
                            "text/plain; charset=utf-8",
                        )
                        return
                    self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
                elif path == "/version":
                    body = json.dumps(
                        {"version": server.version, "error": server.last_error}
                    ).encode()
                    self._send(HTTPStatus.OK, body, "application/json")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("dashboard http: " + format, *args)

        return Handler
