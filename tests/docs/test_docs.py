"""The examples in README.md and docs/*.md run as doctests.

Every Markdown file with a ``>>>`` example line is one test case: ``doctest.testfile`` must
report no failures, and at least one example, so a file whose examples stop being collected
cannot pass by running nothing. The examples are cheap and deterministic (fixed seeds, no Beam
pipeline, no Prefect, no network); ELLIPSIS and NORMALIZE_WHITESPACE are on for all of them.

The ``toml`` blocks of the same files are monitor configurations: each one must pass
``flows.config.parse_config``, so the documented keys and values stay valid.
"""

from __future__ import annotations

import doctest
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = re.compile(r"^\s*>>> ", re.MULTILINE)  # a line doctest reads as an example
DOCTEST_PAGES = [p for p in PAGES if EXAMPLE.search(p.read_text(encoding="utf-8"))]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_documentation_has_examples() -> None:
    names = {_name(p) for p in DOCTEST_PAGES}
    assert "README.md" in names
    assert len(names) >= 3, names


@pytest.mark.parametrize("path", DOCTEST_PAGES, ids=_name)
def test_examples_run(path: Path) -> None:
    result = doctest.testfile(
        str(path),
        module_relative=False,
        optionflags=OPTIONS,
        encoding="utf-8",
        verbose=False,
    )
    assert result.attempted > 0, f"{_name(path)}: no examples were run"
    assert result.failed == 0, f"{_name(path)}: {result.failed} of {result.attempted} failed"


TOML_EXAMPLES = [
    pytest.param(path, i, text, id=f"{_name(path)}-toml{i}")
    for path in PAGES
    for i, text in enumerate(TOML_BLOCK.findall(path.read_text(encoding="utf-8")))
]


@pytest.mark.parametrize(("path", "index", "text"), TOML_EXAMPLES)
def test_monitor_configs_are_valid(path: Path, index: int, text: str, tmp_path: Path) -> None:
    from flows.config import parse_config

    config = parse_config(tomllib.loads(text), base_dir=tmp_path, origin=f"{_name(path)}#{index}")
    config.build_policy()
