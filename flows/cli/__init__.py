"""The ``divmon`` command line (:mod:`flows.cli.divmon`) and the commands it registers.

``divmon = "flows.cli:main"`` and ``python -m flows.cli`` stay as they were; ``main`` imports the
command's module on first use, so importing a sibling module costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``divmon``: see :func:`flows.cli.divmon.main`."""
    from flows.cli.divmon import main as divmon

    return divmon(argv)
