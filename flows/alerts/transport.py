"""Sending one alert, bounded in time: the HTTP transport of webhook targets, and a deadline
for any other sender.

``post_json`` makes one HTTP POST whose *whole* attempt (name lookup, connect, TLS, sending the
request, reading the status, headers and body) must finish within ``deadline`` seconds. httpx's
own timeouts apply per socket operation, so a receiver that drips one byte every few seconds
could hold an attempt forever; here the request runs under ``asyncio.wait_for`` and is cancelled
(its connection closed) when the deadline passes.

Every attempt carries ``Idempotency-Key: <event id>`` (the uuid5 of the alert's dedup key, the
same on every attempt and every run) and ``X-Divtransforms-Dedup-Key``. An attempt that times out
may still have reached the receiver (it answered after we gave up); the retry then sends the
same key again, so receivers should drop a key they have seen (docs/reliability.md).

``call_with_deadline`` bounds senders we do not control (Prefect notification blocks): the call
runs in a daemon thread and the attempt counts as failed when the deadline passes.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEDUP_HEADER = "X-Divtransforms-Dedup-Key"
EVENT_NAMESPACE = uuid.UUID("6f1f4b7e-5b7a-4c55-9a59-3d5e0a1d7c11")

T = TypeVar("T")


def event_id(key: str) -> uuid.UUID:
    """Deterministic event id: the server drops a re-emitted duplicate."""
    return uuid.uuid5(EVENT_NAMESPACE, key)


class DeliveryTimeout(TimeoutError):
    """An attempt did not finish within its deadline (the message is free of URLs)."""


def alert_headers(entry: Mapping[str, Any]) -> dict[str, str]:
    """The idempotency headers every delivery attempt of ``entry`` carries."""
    key = str(entry["dedup_key"])
    return {
        IDEMPOTENCY_HEADER: str(entry.get("event_id") or event_id(key)),
        DEDUP_HEADER: key.encode("ascii", "backslashreplace").decode("ascii"),
    }


def post_json(
    url: str,
    payload: Any,
    *,
    deadline: float,
    headers: Mapping[str, str] | None = None,
) -> int:
    """POST ``payload`` as JSON; the status code of a 2xx answer. Raises
    :class:`DeliveryTimeout` after ``deadline`` seconds in total, ``httpx.HTTPStatusError`` on
    another status, ``httpx.HTTPError`` on a connection failure."""
    import httpx

    if deadline <= 0:
        raise DeliveryTimeout("no time left for this attempt")

    async def attempt() -> int:
        async with httpx.AsyncClient(timeout=deadline, follow_redirects=False) as client:
            response = await client.post(url, json=payload, headers=dict(headers or {}))
            response.raise_for_status()
            return response.status_code

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(attempt(), deadline)
        except TimeoutError:
            raise DeliveryTimeout(f"no complete answer within {deadline:.1f} s") from None

    return run_coroutine(bounded())


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end on a fresh event loop in a helper thread (the caller may itself
    be inside a running loop, e.g. a Prefect flow)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=target, name="divtransforms-delivery", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def call_with_deadline(fn: Callable[[], T], deadline: float) -> T:
    """``fn()`` in a daemon thread; :class:`DeliveryTimeout` if it has not returned after
    ``deadline`` seconds (the thread is left to finish on its own)."""
    if deadline <= 0:
        raise DeliveryTimeout("no time left for this attempt")
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=target, name="divtransforms-delivery", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise DeliveryTimeout(f"no answer within {deadline:.1f} s")
    if "error" in out:
        raise out["error"]
    return out["value"]
