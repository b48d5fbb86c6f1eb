"""The structure of the code at two or more revisions, as markdown tables (issue 24's
before/after).

``python -m benchmarks.structure_report [REV ...]`` reads the Python files of the packages
``divtransforms``, ``pipelines`` and ``flows`` at each git revision (``.`` is the working tree,
untracked files included; default: ``cbd4bcf .``, issue 24's start and now) and prints:

1. **files per folder**: the ``.py`` files directly in each package folder;
2. **the longest functions**: the ten with the most lines (``def`` to its last line, nested
   functions counted in their parent and also on their own);
3. **long signatures**: every function with more than :data:`MAX_PARAMS` parameters (``self``
   and ``cls`` not counted, ``*args`` and ``**kwargs`` counted);
4. **file-level import cycles**: the strongly connected components of the module import graph,
   every ``import`` counted, also those inside functions; a cycle whose every edge needs an
   import under ``if TYPE_CHECKING:`` is marked (annotations only, no cycle at run time).

Nothing is imported or run: the files are parsed (``ast``). Modules are resolved against the
files of the same revision: ``from a import b`` is an import of ``a.b`` when that is a module,
else of ``a``; an import of ``a.b.c`` does not count as one of ``a`` and ``a.b``.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("divtransforms", "pipelines", "flows")
MAX_PARAMS = 12
N_LONGEST = 10
Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Tree:
    """The modules of one revision: ``{dotted name: source}`` and what the sources say."""

    label: str
    sources: dict[str, str]
    paths: dict[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, rev: str) -> Tree:
        if rev == ".":
            files = {
                str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
                for pkg in PACKAGES
                for p in sorted((ROOT / pkg).rglob("*.py"))
                if "__pycache__" not in p.parts
            }
            label = "working tree"
        else:
            names = _git("ls-tree", "-r", "--name-only", rev, "--", *PACKAGES).split("\n")
            files = {n: _git("show", f"{rev}:{n}") for n in names if n.endswith(".py")}
            label = _git("rev-parse", "--short", rev).strip()
        tree = cls(label, {})
        for path, text in files.items():
            parts = path[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            tree.sources[name] = text
            tree.paths[name] = path
        return tree

    def files_per_folder(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path in self.paths.values():
            folder = path.rsplit("/", 1)[0] + "/"
            out[folder] = out.get(folder, 0) + 1
        return out

    def functions(self) -> Iterable[tuple[str, Function]]:
        """``(qualified name, node)`` of every function and method."""
        for module, text in sorted(self.sources.items()):
            yield from _functions(ast.parse(text), module)

    def imports(self) -> dict[tuple[str, str], bool]:
        """``{(importer, imported): only under TYPE_CHECKING}`` between the tree's modules."""
        edges: dict[tuple[str, str], bool] = {}
        for module, text in self.sources.items():
            is_package = self.paths[module].endswith("__init__.py")
            for target, typing_only in _imports(ast.parse(text), module, is_package, self.sources):
                if target != module:
                    key = (module, target)
                    edges[key] = edges.get(key, True) and typing_only
        return edges


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def _functions(node: ast.AST, prefix: str) -> Iterable[tuple[str, Function]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}.{child.name}"
            yield name, child
            yield from _functions(child, name)
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}.{child.name}")
        else:
            yield from _functions(child, prefix)


def n_params(fn: Function) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return len([n for n in names if n not in ("self", "cls")])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    tree: ast.Module, module: str, is_package: bool, modules: dict[str, str]
) -> Iterable[tuple[str, bool]]:
    """``(imported module, under TYPE_CHECKING)`` for every import of one of ``modules``."""
    package = module if is_package else module.rpartition(".")[0]

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, typing_only: bool) -> Iterable[tuple[str, bool]]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    yield target, typing_only
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                target = full if full in modules else resolve(base)
                if target:
                    yield target, typing_only
        for child in ast.iter_child_nodes(node):
            yield from visit(child, typing_only)

    yield from visit(tree, False)


def cycles(edges: dict[tuple[str, str], bool]) -> list[tuple[list[str], bool]]:
    """The strongly connected components of more than one module (Tarjan), each with whether
    it falls apart without the imports under TYPE_CHECKING."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])

    def components(g: dict[str, list[str]]) -> list[list[str]]:
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        out: list[list[str]] = []
        counter = [0]

        def strongconnect(v: str) -> None:
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on_stack.add(v)
            for w in g[v]:
                if w not in index:
                    strongconnect(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
        for v in sorted(g):
            if v not in index:
                strongconnect(v)
        return out

    runtime = {a: [b for b in graph[a] if not edges[(a, b)]] for a in graph}
    live = {frozenset(c) for c in components(runtime)}
    result = [(c, not any(set(c) >= r for r in live)) for c in components(graph)]
    return sorted(result, key=lambda x: x[0])


def report(trees: Sequence[Tree]) -> str:
    labels = [f"`{t.label}`" for t in trees]
    lines: list[str] = []

    lines += ["### Files per folder", "", "| folder | " + " | ".join(labels) + " |"]
    lines.append("|---|" + "---:|" * len(trees))
    counts = [t.files_per_folder() for t in trees]
    for folder in sorted(set().union(*counts)):
        lines.append(f"| `{folder}` | " + " | ".join(str(c.get(folder, "")) for c in counts) + " |")
    lines.append("| **all** | " + " | ".join(str(sum(c.values())) for c in counts) + " |")

    lines += ["", f"### The {N_LONGEST} longest functions (lines)", ""]
    lines.append("| # | " + " | ".join(f"{label} | lines" for label in labels) + " |")
    lines.append("|---:|" + "---|---:|" * len(trees))
    longest = []
    for t in trees:
        sized = [(fn.end_lineno - fn.lineno + 1, name) for name, fn in t.functions()]
        longest.append(sorted(sized, key=lambda x: (-x[0], x[1]))[:N_LONGEST])
    for i in range(N_LONGEST):
        cells = []
        for top in longest:
            n, name = top[i] if i < len(top) else (0, "")
            cells += [f"`{name}`" if name else "", str(n) if name else ""]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")

    lines += ["", f"### Functions with more than {MAX_PARAMS} parameters", ""]
    lines.append("| | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---|" * len(trees))
    wide = [
        sorted(
            ((n_params(fn), name) for name, fn in t.functions() if n_params(fn) > MAX_PARAMS),
            key=lambda x: (-x[0], x[1]),
        )
        for t in trees
    ]
    lines.append("| count | " + " | ".join(str(len(w)) for w in wide) + " |")
    lines.append(
        "| functions | "
        + " | ".join("<br>".join(f"`{name}` ({n})" for n, name in w) or "none" for w in wide)
        + " |"
    )
    most = [max((n_params(fn) for _, fn in t.functions()), default=0) for t in trees]
    lines.append("| most parameters | " + " | ".join(str(m) for m in most) + " |")

    lines += ["", "### File-level import cycles (every import, also inside functions)", ""]
    lines.append("| | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---|" * len(trees))
    found = [cycles(t.imports()) for t in trees]
    lines.append(
        "| cycles | "
        + " | ".join(
            f"{len(f)} ({sum(1 for _, typing in f if typing)} annotations only)" for f in found
        )
        + " |"
    )
    lines.append(
        "| modules | "
        + " | ".join(
            "<br>".join(
                " ↔ ".join(f"`{m}`" for m in comp) + (" (TYPE_CHECKING)" if typing else "")
                for comp, typing in f
            )
            or "none"
            for f in found
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "revs", nargs="*", default=["cbd4bcf", "."], help="git revisions; . = working tree"
    )
    args = parser.parse_args(argv)
    print(report([Tree.at(rev) for rev in args.revs]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
