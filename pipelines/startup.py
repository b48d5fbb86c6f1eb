"""Start-up and shut-down cost of the command-line jobs.

``import apache_beam`` also imports pandas when it is installed (~0.3-0.5 s here), only to register
optional pandas type hints that these jobs never use. :func:`import_beam` imports Beam with pandas
hidden for the duration of that one import, so ``divmon check`` starts faster; pandas stays
importable afterwards. Set ``DIVMON_BEAM_WITH_PANDAS=1`` to import Beam normally.

Beam, scipy and pyarrow leave a few hundred thousand long-lived objects; the collector would
traverse them again and again, and once more at interpreter exit (~0.5 s here). The command-line
entry points call :func:`freeze_heap` after the imports and before returning, which moves the
objects alive at that point out of the collector's generations (``gc.freeze``).

numpy allocates its temporaries with ``malloc``; glibc serves blocks above 128 KiB with fresh
``mmap`` pages and unmaps them when freed, so every temporary of a batch (a 64k-row column is
512 KiB) pays the page faults of new memory again. On virtual machines a fault costs microseconds:
converting one batch's cell indices took 4 ms instead of 0.3 ms. :func:`reuse_freed_memory`
(called by the build and check commands) makes glibc keep such blocks for reuse
(``mallopt``): blocks up to 32 MiB come from the heap, and up to 128 MiB of free heap is kept
instead of being trimmed. Set ``DIVMON_MALLOC_DEFAULTS=1`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.abc
import logging
import os
import sys

__all__ = ["freeze_heap", "import_beam", "reuse_freed_memory"]

_LOG = logging.getLogger(__name__)
# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD_BYTES = 128 << 20
_tuned = False


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


def reuse_freed_memory() -> bool:
    """Keep freed ``malloc`` blocks for reuse (glibc only; see the module docstring). Returns
    whether the allocator was tuned; a no-op elsewhere and with ``DIVMON_MALLOC_DEFAULTS``."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("DIVMON_MALLOC_DEFAULTS"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc; musl has none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    _LOG.debug("malloc keeps freed blocks for reuse: %s", _tuned)
    return _tuned
