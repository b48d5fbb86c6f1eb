"""docs/architecture.md's module map names every module, and only modules that exist.

The map is the tables under "## Module map". Each table follows a heading whose first code span
names a package (``### `divtransforms`: ...``, ``### `flows`: ...``); the first cell of a row
names one or more modules of that package, relative to it (``cli``, ``dashboard/``). A listed
subpackage covers the modules inside it; a heading's package names only itself.

The Beam adapters are the modules under the heading that says "Beam adapters". The import
contract ``.importlinter`` (run by ``make lint``) forbids the other divtransforms modules, the
core, to import Beam, Prefect or the adapters; its list of core modules must be the map's, so a
new module cannot escape the contract by being left out of it.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("divtransforms", "pipelines", "flows")
HEADING = re.compile(r"^###\s+`([\w.]+)`(.*)$")
CODE = re.compile(r"`([\w./]+)`")


def modules() -> set[str]:
    """Every module and subpackage of the three packages, dotted (the packages themselves and
    ``__main__`` scripts left out)."""
    out: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__main__.py":
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) > 1:
                out.add(".".join(parts))
    return out


def module_map(*, headings: bool = False) -> dict[str, str]:
    """``{dotted module named by the map: the heading of its table}``; with ``headings``, the
    headings' packages too."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, str] = {}
    package = heading = None
    for line in section.splitlines():
        if m := HEADING.match(line):
            package, heading = m.group(1), line
            if headings and "." in package:
                out[package] = heading
            continue
        cells = line.split("|")
        if package is None or len(cells) < 3 or set(cells[1].strip()) <= set("-:"):
            continue
        for name in CODE.findall(cells[1]):
            out[f"{package}.{name.strip('/').replace('/', '.')}"] = heading
    return out


def covered(module: str, listed: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in listed for i in range(2, len(parts) + 1))


def test_every_module_is_in_the_map() -> None:
    listed, packages = set(module_map()), set(module_map(headings=True))
    missing = sorted(m for m in modules() if not covered(m, listed) and m not in packages)
    assert not missing, f"docs/architecture.md's module map leaves out {missing}"


def test_the_map_names_only_modules_that_exist() -> None:
    stale = sorted(set(module_map(headings=True)) - modules())
    assert not stale, f"docs/architecture.md's module map names modules that do not exist: {stale}"


def test_the_import_contract_covers_the_whole_core() -> None:
    """The contract's core (``core-without-beam`` sources) = the divtransforms modules the map
    does not list as Beam adapters, with the package itself."""
    beam = {m for m, heading in module_map(headings=True).items() if "Beam adapters" in heading}
    assert beam, "the module map has no Beam adapters table"
    core = {"divtransforms"} | {
        m for m in modules() if m.startswith("divtransforms.") and not covered(m, beam)
    }
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter", encoding="utf-8")
    contract = config["importlinter:contract:core-without-beam"]
    sources = set(contract["source_modules"].split())
    forbidden = set(contract["forbidden_modules"].split())
    assert sources == core, (
        f".importlinter's core modules differ from the map's: add {sorted(core - sources)}, "
        f"remove {sorted(sources - core)}"
    )
    assert {"apache_beam", "prefect"} <= forbidden
    assert beam <= forbidden, "the core must be forbidden to import every Beam adapter"


def test_the_public_api_is_what_a_user_calls() -> None:
    """``from divtransforms import *`` gives what a user calls, including ``Policy`` (which
    ``compare(policy=)`` takes); plumbing stays importable but is not exported."""
    import divtransforms

    exported = set(divtransforms.__all__)
    user = {"compare", "ReferenceProfile", "Policy", "read_records", "entropy", "cross_entropy"}
    user |= {"kl_divergence", "js_divergence", "js_distance", "psi", "hellinger"}
    user |= {"CheckSettings", "BuildSettings"}  # what compare() and ReferenceProfile.build take
    assert user <= exported, sorted(user - exported)
    plumbing = {"drift_record", "accumulator_for", "accumulator_from_dict", "bin_spec_from_dict"}
    plumbing |= {"js_bias"}
    assert not plumbing & exported, sorted(plumbing & exported)
    assert all(callable(getattr(divtransforms, name)) for name in plumbing)
    assert all(hasattr(divtransforms, name) for name in exported)


#: The most parameters a function may take (issue 24: settings objects, not long signatures).
MAX_PARAMETERS = 12


def parameter_counts() -> dict[str, int]:
    """``{"path:line name": parameters}`` of every function and method of the three packages:
    positional, keyword-only, ``*args`` and ``**kwargs`` each count one; ``self`` and ``cls``
    do not."""
    import ast

    out: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                a = node.args
                names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                if names and names[0] in ("self", "cls"):
                    names = names[1:]
                count = len(names) + (a.vararg is not None) + (a.kwarg is not None)
                out[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = count
    return out


def test_no_function_takes_more_than_twelve_parameters() -> None:
    """A check's or a build's settings travel as one object (``divtransforms.settings``), not
    as a dozen keyword arguments spelled out again in every signature."""
    counts = parameter_counts()
    assert len(counts) > 1000  # the walk found the packages' functions
    long = {name: n for name, n in counts.items() if n > MAX_PARAMETERS}
    assert not long, f"functions with more than {MAX_PARAMETERS} parameters: {long}"
