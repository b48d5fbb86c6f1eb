"""The Dockerfile, checked offline (no docker here): its base image is Beam's Python SDK image at
the apache-beam version of the lock file (installed here, passed by ``make image``) and this
Python, it copies everything the package needs, the worker stage keeps Beam's boot entrypoint
(Dataflow's --sdk_container_image), and the package installs from exactly the files it copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import apache_beam
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _lines() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def _stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for ln in _lines():
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", ln, re.IGNORECASE)
        if m:
            current = m.group(2)
            stages[current] = [ln]
        elif current is not None:
            stages[current].append(ln)
    return stages


def _locked(package: str) -> str:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    (version,) = re.findall(rf"^{re.escape(package)}==([^\s;]+)", text, re.MULTILINE)
    return version


def test_base_image_is_beams_sdk_image_at_the_locked_version():
    """One source sets the Beam version: the lock. The Dockerfile has no default of its own and
    ``make image`` passes the locked version, which is the installed one."""
    assert "ARG BEAM_VERSION" in _lines() and not any(
        ln.startswith("ARG BEAM_VERSION=") for ln in _lines()
    ), "the Dockerfile must take BEAM_VERSION from `make image` (the lock), not a default"
    locked = _locked("apache-beam")
    assert locked == apache_beam.__version__, (
        f"requirements.lock pins apache-beam {locked} != installed {apache_beam.__version__}"
    )
    make = subprocess.run(
        ["make", "-s", "--no-print-directory", "beam-version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert make.stdout.strip() == locked
    dry = subprocess.run(
        ["make", "-n", "image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert f"--build-arg BEAM_VERSION={locked}" in dry
    worker = _stages()["worker"]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert worker[0] == f"FROM apache/beam_python{py}_sdk:${{BEAM_VERSION}} AS worker"
    assert "ARG BEAM_VERSION" in worker  # re-declared, so RUN sees it
    install = next(ln for ln in worker if ln.startswith("RUN pip install"))
    assert '"apache-beam[gcp]==${BEAM_VERSION}"' in install  # Beam is never changed by pip
    extras = re.search(r'"\.\[([a-z,]+)\]"', install).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "flows" in extras and "gcp" in extras
    assert set(extras) <= set(declared["optional-dependencies"])
    assert not any(ln.startswith("ENTRYPOINT") for ln in worker)  # Beam's boot stays


def test_flow_stage_builds_on_the_worker_with_a_plain_entrypoint():
    flow = _stages()["flow"]
    assert flow[0] == "FROM worker AS flow"
    assert "ENTRYPOINT []" in flow


def _copied() -> list[str]:
    out = []
    for ln in _stages()["worker"]:
        if ln.startswith("COPY "):
            out += ln.split()[1:-1]
    return out


def test_it_copies_every_package_and_file_the_build_needs():
    copied = set(_copied())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"pyproject.toml", project["project"]["readme"], "LICENSE"} <= copied
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = pattern.rstrip("*")
        assert top in copied, f"package {top} is not copied into the image"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not copied & set(ignored), "a copied path is excluded by .dockerignore"


def _context(tmp_path: Path) -> Path:
    """The files the image copies, alone in a folder (what ``pip install .`` sees there)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in _copied():
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / name)
    return context


def test_the_packaging_finds_every_module_in_the_copied_files(tmp_path: Path):
    """What ``pip install .`` in the image packages, from the copied files only: the same
    packages and package data as from the repository. (pip itself would fetch a build backend
    from PyPI, which tests do not do.)"""
    from setuptools import find_packages

    context = _context(tmp_path)
    tool = tomllib.loads((context / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = tool["packages"]["find"]["include"]
    in_image = find_packages(where=str(context), include=include)
    assert sorted(in_image) == sorted(find_packages(where=str(ROOT), include=include))
    assert {"divtransforms", "pipelines", "flows", "flows.dashboard"} <= set(in_image)
    for package, globs in tool["package-data"].items():
        for pattern in globs:
            assert list((context / package).glob(pattern)), f"{package}/{pattern} not copied"
    requires = tomllib.loads((context / "pyproject.toml").read_text())["build-system"]["requires"]
    # license = "Apache-2.0" (an SPDX expression) needs setuptools >= 77 to build
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in requires), requires


@pytest.mark.slow
def test_the_wheel_built_from_the_copied_files_is_complete(tmp_path: Path):
    """``pip install .`` in the image: the wheel built from the copied files alone holds every
    tracked module and data file, and the license."""
    from tests.test_packaging import _tracked_package_files

    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(_context(tmp_path))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("divtransforms-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tracked_package_files() - names)
    assert not missing, f"files the image would lack: {missing}"
    assert any(n.endswith("licenses/LICENSE") for n in names)
