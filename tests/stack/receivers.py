"""Local API receivers (127.0.0.1) that validate each request body against the API's documented
schema (``tests/stack/schemas``) and answer like the API: 4xx with the errors when it is invalid,
the documented success status otherwise."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"


def validator(name: str):
    import jsonschema

    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:  # RFC 3339: a date, a time and an offset
        if not isinstance(value, str):
            return True
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return "T" in value and parsed.tzinfo is not None

    @checker.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urllib.parse.urlsplit(value)
        return bool(parts.scheme and parts.netloc)

    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=checker)


class LocalServer:
    """An HTTP server on 127.0.0.1 (free port) in a thread: ``with server: ... server.url``."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ApiReceiver(LocalServer):
    """``with ApiReceiver("pagerduty_events_v2", status=202) as rx: ... rx.url, rx.requests``."""

    def __init__(self, schema: str, *, status: int = 200, answer: Any = None):
        self.validator = validator(schema)
        self.requests: list[dict[str, Any]] = []
        self.fail_status: int | None = None  # answer this (e.g. 503) to every request
        self.rejected: list[list[str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.fail_status is not None:
                    self.send_response(receiver.fail_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError as exc:
                    errors = [f"not JSON: {exc}"]
                    body = None
                else:
                    errors = [
                        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                        for e in receiver.validator.iter_errors(body)
                    ]
                if errors:
                    receiver.rejected.append(errors)
                    out, code = json.dumps({"status": "invalid event", "errors": errors}), 400
                else:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": body}
                    )
                    out = json.dumps(answer(body) if callable(answer) else (answer or {}))
                    code = status
                data = out.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.serve(Handler)

    def bodies(self) -> list[Any]:
        return [r["json"] for r in self.requests]
