"""benchmarks.structure_report: what it counts, on a small made-up tree, and that it reads this
one."""

from __future__ import annotations

import textwrap

from benchmarks.structure_report import Tree, cycles, n_params, report


def made_up_tree() -> Tree:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg import b\n",  # a cycle hidden in a function
        "pkg/b.py": "from . import a\n",
        "pkg/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.d import D\n",
        "pkg/d.py": "import pkg.c\nclass D:\n    pass\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/e.py": textwrap.dedent(
            """
            import os.path
            from pkg.sub import missing
            class K:
                def wide(self, a, b, c, d, e, f, g, h, i, j, k, l, *m, **n):
                    x = 1
                    return x
            """
        ),
    }
    tree = Tree("t", {})
    for path, text in files.items():
        name = path[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        tree.sources[name], tree.paths[name] = text, path
    return tree


def test_cycles_count_imports_in_functions_and_mark_annotation_only_ones():
    tree = made_up_tree()
    edges = tree.imports()
    assert edges[("pkg.a", "pkg.b")] is False and edges[("pkg.c", "pkg.d")] is True
    assert ("pkg.sub.e", "pkg.sub") in edges  # `missing` is no module: the package
    assert not any(b.startswith("os") for _, b in edges)
    assert cycles(edges) == [(["pkg.a", "pkg.b"], False), (["pkg.c", "pkg.d"], True)]


def test_functions_sizes_and_parameters():
    tree = made_up_tree()
    functions = dict(tree.functions())
    assert set(functions) == {"pkg.a.f", "pkg.sub.e.K.wide"}
    assert n_params(functions["pkg.sub.e.K.wide"]) == 14  # self not counted, *m and **n are
    assert tree.files_per_folder() == {"pkg/": 5, "pkg/sub/": 2}
    text = report([tree])
    assert "| `pkg/sub/` | 2 |" in text
    assert "`pkg.sub.e.K.wide` (14)" in text
    assert "| cycles | 2 (1 annotations only) |" in text


def test_it_reads_the_working_tree():
    tree = Tree.at(".")
    assert "pipelines.arguments" in tree.sources and "flows.cli.divmon" in tree.sources
    assert ("pipelines.engine", "pipelines.check_job") in tree.imports()


def test_no_module_takes_part_in_an_import_cycle():
    """Issue 24: no file-level cycle, counting what import-linter does not see (imports under
    ``if TYPE_CHECKING:``, a package importing its own submodules and back)."""
    found = cycles(Tree.at(".").imports())
    assert found == [], [" <-> ".join(modules) for modules, _annotations_only in found]
