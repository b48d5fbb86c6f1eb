"""Start-up and shut-down cost of the command-line jobs.

``import apache_beam`` also imports pandas when it is installed (~0.3-0.5 s here), only to register
optional pandas type hints that these jobs never use. :func:`import_beam` imports Beam with pandas
hidden for the duration of that one import, so ``divmon check`` starts faster; pandas stays
importable afterwards. Set ``DIVMON_BEAM_WITH_PANDAS=1`` to import Beam normally.

Beam, scipy and pyarrow leave a few hundred thousand long-lived objects; the collector would
traverse them again and again, and once more at interpreter exit (~0.5 s here). The command-line
entry points call :func:`freeze_heap` after the imports and before returning, which moves the
objects alive at that point out of the collector's generations (``gc.freeze``).
"""

from __future__ import annotations

import gc
import importlib.abc
import os
import sys

__all__ = ["freeze_heap", "import_beam"]


class _HidePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is hidden while apache_beam is imported")
        return None


def import_beam() -> None:
    """Import apache_beam (without its optional pandas hooks unless pandas is already loaded)."""
    if "apache_beam" in sys.modules:
        return
    if "pandas" in sys.modules or os.environ.get("DIVMON_BEAM_WITH_PANDAS"):
        import apache_beam

        return
    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        import apache_beam  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


def freeze_heap() -> None:
    """``gc.freeze()``: the objects alive now are never scanned again (nor at exit)."""
    gc.freeze()
