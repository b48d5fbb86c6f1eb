"""A local HTTP alert receiver on 127.0.0.1 (used by ``make demo`` and the tests).

Collects JSON POSTs; can be told to answer with an error status to simulate a receiver that is
down or failing. Runs in a background thread; ``with AlertReceiver() as rx: ... rx.url``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.received: list[dict[str, Any]] = []
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status = receiver.fail_status
                if status is None:
                    try:
                        doc = json.loads(raw or b"{}")
                    except json.JSONDecodeError:
                        doc = {"raw": raw.decode("utf-8", "replace")}
                    body = doc.get("body")
                    if isinstance(body, str):
                        try:
                            doc["alert"] = json.loads(body)
                        except json.JSONDecodeError:
                            pass
                    doc["dedup_header"] = self.headers.get("X-Divtransforms-Dedup-Key")
                    with receiver._lock:
                        receiver.received.append(doc)
                self.send_response(status or 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    def start(self) -> AlertReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="divtransforms-alert-receiver"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.get("alert", d) for d in self.received]

    def __enter__(self) -> AlertReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
