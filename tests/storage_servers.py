"""Object-store servers for the tests, started in this process on 127.0.0.1 with a free port:
the GCS API emulator (``gcp-storage-emulator``) and moto's S3 server (``moto[server]``).

moto implements S3's conditional writes (``If-Match`` / ``If-None-Match`` on PUT, GET and
DELETE; 412 when they fail), but checks the condition and then writes without a lock while its
server is threaded: two concurrent conditional PUTs can both pass, which S3 does not allow (the
first to finish wins, the other gets 412/409). :func:`s3_server` therefore serialises writing
requests (PUT, POST, DELETE); reads stay concurrent. The GCS emulator accepts
``ifGenerationMatch`` but ignores it, so :func:`_enforce_generation_preconditions` adds what
the GCS JSON API documents: an upload, download, metadata read or delete whose
``ifGenerationMatch`` (``0``: the object must not exist) or ``ifGenerationNotMatch`` does not
hold answers 412 ``conditionNotMet``. The emulator serves
one request at a time, so the check and the write are atomic as on GCS.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StorageServer:
    """A running store: its scheme, endpoint and the environment that points clients at it."""

    scheme: str
    endpoint: str
    env: dict[str, str]
    _make_bucket: Any

    def bucket(self, prefix: str = "t") -> str:
        """A new empty bucket; returns its URL (``gs://name`` / ``s3://name``)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self._make_bucket(name)
        return f"{self.scheme}://{name}"


_PATCHED = False


def _enforce_generation_preconditions() -> None:
    global _PATCHED
    if _PATCHED:
        return
    from http import HTTPStatus

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    def current_generation(storage, bucket: str, name: str) -> int:
        try:
            return int(storage.get_file_obj(bucket, name).get("generation") or 0)
        except NotFound:
            return 0

    def object_name(request) -> str | None:
        if "object_id" in request.params:
            return request.params["object_id"]
        if "name" in request.query:
            return request.query["name"][0]
        data = request.data
        if isinstance(data, dict) and isinstance(data.get("meta"), dict):
            return data["meta"].get("name")
        return None

    def guarded(handler):
        def handle(request, response, storage, *args, **kwargs):
            match = request.query.get("ifGenerationMatch")
            not_match = request.query.get("ifGenerationNotMatch")
            name = object_name(request) if (match or not_match) else None
            if name is not None:
                generation = current_generation(storage, request.params["bucket_name"], name)
                failed = (match and int(match[0]) != generation) or (
                    not_match and int(not_match[0]) == generation
                )
                if failed:
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json(
                        {"error": {"code": 412, "message": "conditionNotMet", "errors": []}}
                    )
                    return None
            return handler(request, response, storage, *args, **kwargs)

        handle.__wrapped__ = handler
        return handle

    wrapped = {}
    for name in ("insert", "download", "get", "delete"):
        original = getattr(objects, name)
        wrapped[original] = guarded(original)
        setattr(objects, name, wrapped[original])  # the router's fallback uses objects.insert
    for _regex, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in wrapped:
                handlers[method] = wrapped[handler]
    _PATCHED = True


@contextmanager
def gcs_emulator():
    """The GCS JSON API emulator, in memory, with generation preconditions enforced."""
    import logging

    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    _enforce_generation_preconditions()
    port = free_port()
    srv = create_server("127.0.0.1", port, in_memory=True)
    srv.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        env = {"STORAGE_EMULATOR_HOST": endpoint}
        with _environ(env):
            from google.cloud import storage

            client = storage.Client()
            yield StorageServer("gs", endpoint, env, lambda n: client.create_bucket(n))
    finally:
        srv.stop()


@contextmanager
def s3_server():
    """moto's S3 server (threaded Werkzeug), any credentials accepted."""
    import logging
    import threading

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicWrites(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def serialised(environ, start_response):
                if environ.get("REQUEST_METHOD") not in ("PUT", "POST", "DELETE"):
                    return app(environ, start_response)
                with lock:  # the condition check and the write, as one step
                    return list(app(environ, start_response))

            self._server = make_server(
                self._ip_address, self._port, serialised, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    srv = AtomicWrites(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        with _environ(env):
            import boto3

            client = boto3.session.Session().client("s3")
            yield StorageServer("s3", endpoint, env, lambda n: client.create_bucket(Bucket=n))
    finally:
        srv.stop()


@contextmanager
def _environ(env: dict[str, str]):
    from divtransforms.storage import _backends

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _backends.reset()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _backends.reset()
