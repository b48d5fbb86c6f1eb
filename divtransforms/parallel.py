"""Per-feature work of one batch on a few threads, results in the features' order.

numpy's loops (``einsum``, sorting, ufuncs on large arrays) and Arrow's compute kernels release
the GIL, so the features of a batch can be summarised, binned and fitted at the same time on
several cores. Each feature's numbers are computed exactly as on one thread (the same operations
on the same values, merged in the same order): the results are identical bit for bit, whatever
the number of threads.

The library runs on one thread unless a caller asks for more with :func:`using` (the in-process
engine does, ``pipelines.local``); Beam runners parallelise across bundles themselves, so their
transforms stay on one thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["available_threads", "map_ordered", "threads", "using"]

T = TypeVar("T")
R = TypeVar("R")

_threads = 1
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
# Below this many items a batch is done on the calling thread (dispatch costs more than it saves).
MIN_ITEMS = 2


def available_threads() -> int:
    """The cores this process may run on (``DIVMON_THREADS`` overrides; at least 1)."""
    env = os.environ.get("DIVMON_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"DIVMON_THREADS must be a whole number, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """The number of threads per-feature work uses now."""
    return _threads


@contextmanager
def using(n: int) -> Iterator[None]:
    """Run per-feature work on ``n`` threads inside the block (1: on the calling thread)."""
    global _threads
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    before = _threads
    _threads = n
    try:
        yield
    finally:
        _threads = before


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="divtransforms")
            _pool_size = n
        return _pool


def map_ordered(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]``, on :func:`threads` threads: the items are cut into
    contiguous runs, a few per thread (the features of a wide table take very different times),
    and the results come back in the items' order. An exception is raised as on one thread."""
    seq: Sequence[T] = items if isinstance(items, Sequence) else list(items)
    n = _threads
    if (
        n <= 1
        or len(seq) < MIN_ITEMS
        or threading.current_thread().name.startswith("divtransforms")
    ):  # nested: already on a worker
        return [fn(item) for item in seq]
    runs = min(len(seq), 4 * n)
    bounds = [len(seq) * k // runs for k in range(runs + 1)]

    def run(k: int) -> list[R]:
        return [fn(item) for item in seq[bounds[k] : bounds[k + 1]]]

    out: list[R] = []
    for part in _executor(n).map(run, range(runs)):
        out.extend(part)
    return out
