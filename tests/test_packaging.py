"""The built wheel ships every module and every data file the packages read at run time.

Editable installs (``make venv``) read files from the checkout, so a data file missing from
``[tool.setuptools.package-data]`` would only show on a real install: the Docker image, a
Dataflow worker, ``pip install divtransforms``.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("divtransforms", "pipelines", "flows")


def _tracked_package_files() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {p for p in out if "__pycache__" not in p}


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.fail("not a git checkout: the packaging test compares the wheel to git ls-files")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("divtransforms-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tracked_package_files() - names)
    assert not missing, f"tracked files missing from the wheel: {missing}"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith("licenses/LICENSE") for n in names), "LICENSE not shipped"
    entry = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "divmon = flows.cli:main" in entry
