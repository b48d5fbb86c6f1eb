"""Deliveries bounded in total time, against misbehaving receivers on 127.0.0.1: one that drips
its answer a byte at a time, one that never answers, one that answers 200 after the client gave
up. Every attempt carries the same Idempotency-Key."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from divtransforms.alerting import AlertDecision
from flows.alerts.notify import build_notifiers, retry_settings
from flows.alerts.outbox import AlertLog, deliver_outstanding
from flows.alerts.transport import DeliveryTimeout, call_with_deadline, post_json
from flows.config import load_config
from flows.demo import run as demo

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class RawReceiver:
    """An HTTP receiver on a raw socket: ``mode`` is ``drip`` (one byte of the answer every
    ``pace`` s), ``hang`` (reads the request, never answers), ``slow`` (answers 200 after
    ``pace`` s) or ``ok``. Records each request's Idempotency-Key."""

    def __init__(self, mode: str, pace: float = 0.3):
        self.mode, self.pace = mode, pace
        self.keys: list[str | None] = []
        self.completed: list[str | None] = []  # requests answered 200 in full
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook?token=s3cret"

    def __enter__(self) -> RawReceiver:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in head.decode().split("\r\n")[1:])
            }
            length = int(headers.get("content-length", 0))
            while len(body) < length:
                body += conn.recv(65536)
            key = headers.get("idempotency-key")
            self.keys.append(key)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            try:
                if self.mode == "hang":
                    self._stop.wait(60)
                    return
                if self.mode == "slow":
                    time.sleep(self.pace)
                if self.mode == "drip":
                    for i in range(len(answer)):
                        conn.sendall(answer[i : i + 1])
                        time.sleep(self.pace)
                else:
                    conn.sendall(answer)
                self.completed.append(key)
            except OSError:
                return


@pytest.fixture()
def outbox(tmp_path) -> Iterator[AlertLog]:
    log = AlertLog.open(tmp_path)
    for hour in range(5):
        d = AlertDecision(
            "x", "warning", T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1), {}
        )
        log.add(
            [d],
            reference_id="ref",
            metric_for=lambda f: "js_divergence",
            targets=["hook"],
            run_id="r",
        )
    log.save()
    yield AlertLog.open(tmp_path)


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_one_attempt_is_bounded_in_total_time(mode):
    with RawReceiver(mode, pace=0.3) as rx:
        t0 = time.monotonic()
        with pytest.raises(DeliveryTimeout) as info:
            post_json(rx.url, {"a": 1}, deadline=3.0, headers={"Idempotency-Key": "k"})
        elapsed = time.monotonic() - t0
    # The dripping answer needs 0.3 s x 60 bytes = 18 s; httpx's per-read timeout never fires.
    # (A 1 s deadline sometimes expired before the request was sent on a loaded machine.)
    assert elapsed < 6.0, elapsed
    assert "s3cret" not in str(info.value) and "127.0.0.1" not in str(info.value)
    assert rx.keys == ["k"]


def test_a_prompt_receiver_is_delivered_to():
    with RawReceiver("ok") as rx:
        assert post_json(rx.url, {"a": 1}, deadline=5.0, headers={"Idempotency-Key": "k"}) == 200
        # the receiver's thread records the answer after sending it: the client may read the
        # answer first, so wait for the record (under load this took longer than the post)
        waited = time.monotonic() + 5.0
        while not rx.completed and time.monotonic() < waited:
            time.sleep(0.01)
    assert rx.completed == ["k"]


def test_call_with_deadline_bounds_senders_we_do_not_control():
    with pytest.raises(DeliveryTimeout):
        call_with_deadline(lambda: time.sleep(5), 0.2)
    assert call_with_deadline(lambda: 7, 1.0) == 7
    with pytest.raises(KeyError):
        call_with_deadline(lambda: {}["x"], 1.0)


def _webhook_notifiers(tmp_path, monkeypatch, url: str, timeout: float, retries: int):
    monkeypatch.setenv(demo.WEBHOOK_ENV, url)
    demo.write_reference_data(tmp_path / "reference-data", n=200)
    config = load_config(demo.write_config(tmp_path, dashboard=False))
    text = (tmp_path / "monitor.toml").read_text()
    text = text.replace("timeout = 5", f"timeout = {timeout}").replace(
        "retries = 1", f"retries = {retries}"
    )
    (tmp_path / "monitor.toml").write_text(text)
    config = load_config(tmp_path / "monitor.toml")
    notifiers = build_notifiers(config)
    return {"hook": notifiers["local-webhook"]}, {"hook": retry_settings(config)["local-webhook"]}


def test_slow_200_receiver_gets_the_same_idempotency_key_on_every_attempt(
    tmp_path, monkeypatch, outbox
):
    """The receiver answers 200 after 3 s, the client gives up after 2 s: each attempt may
    have landed, so each carries the alert's key, and the receiver can drop repeats. (With 1 s,
    an attempt sometimes expired before its request was sent on a loaded machine.)"""
    with RawReceiver("slow", pace=3.0) as rx:
        notifiers, retries = _webhook_notifiers(tmp_path / "m", monkeypatch, rx.url, 2.0, 1)
        summary = deliver_outstanding(outbox, notifiers, retries=retries, budget_seconds=60)
        time.sleep(3.5)  # let the slow answers finish
    assert (summary.delivered, summary.failed) == (0, 5)
    expected = {e["event_id"] for e in outbox.entries}
    assert len(rx.keys) == 10 and set(rx.keys) == expected  # 2 attempts x 5, one key each
    assert {k: rx.keys.count(k) for k in expected} == dict.fromkeys(expected, 2)
    assert all(e["deliveries"]["hook"]["last_error"] == "DeliveryTimeout" for e in outbox.entries)
    # A receiver that dedupes on Idempotency-Key processed each alert once.
    assert len(set(rx.completed)) == 5


def test_run_budget_bounds_the_whole_delivery_and_leftovers_stay_in_the_outbox(
    tmp_path, monkeypatch, outbox
):
    with RawReceiver("hang") as rx:
        notifiers, retries = _webhook_notifiers(tmp_path / "m", monkeypatch, rx.url, 1.0, 1)
        t0 = time.monotonic()
        summary = deliver_outstanding(outbox, notifiers, retries=retries, budget_seconds=2.5)
        elapsed = time.monotonic() - t0
    # Unbounded: 5 alerts x 2 attempts x 1 s = 10 s. With the budget: 2.5 s and what is left.
    assert elapsed < 4.0, elapsed
    assert summary.delivered == 0 and summary.failed >= 1 and summary.deferred >= 3
    assert summary.failed + summary.deferred == 5
    statuses = [e["status"] for e in AlertLog.open(outbox.path.parent).entries]
    assert statuses.count("pending") == summary.deferred  # untouched, tried by the next run
    with RawReceiver("ok") as rx:
        notifiers, retries = _webhook_notifiers(tmp_path / "m2", monkeypatch, rx.url, 5.0, 0)
        again = deliver_outstanding(
            AlertLog.open(outbox.path.parent), notifiers, retries=retries, budget_seconds=30
        )
    assert again.delivered == 5 and sorted(rx.completed) == sorted(
        e["event_id"] for e in outbox.entries
    )
