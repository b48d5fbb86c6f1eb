"""Fixtures of the pipeline tests; their data and record helpers are in tests/helpers.py, the
shared fixtures (``rng``, ``profile``, ``anonymous_gcp``) in tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def offline(monkeypatch):
    """Any connection attempt or DNS lookup fails the test. (Beam's option validation looks up
    the --temp_location bucket and only warns when that fails: without this fixture it waits
    minutes for its retries to time out.)"""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
