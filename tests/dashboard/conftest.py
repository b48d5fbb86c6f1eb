"""Fixtures for the dashboard tests: a real headless Chromium (installed when missing)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dash_browser import Browser, Page, find_chromium

IN_CI = os.environ.get("CI", "").lower() == "true"


def _install_chromium() -> str:
    """``apt-get install chromium`` (we are root on the dev machines and in CI)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}"
    return ""


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    problem = ""
    if path is None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            problem = _install_chromium()
            path = find_chromium()
        else:
            problem = "chromium is not installed and we are not root (cannot apt-get install it)"
    if path is None:
        message = f"headless Chromium unavailable: {problem or 'not found after install'}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    b = Browser(chromium_path)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page(width=1280, height=900)
    try:
        yield p
    finally:
        p.close()
