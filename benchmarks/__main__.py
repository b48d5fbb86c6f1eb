"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in turn; exit 1 if any target failed.

``python -m benchmarks [name ...]`` runs only the named ones (e.g. ``check`` or ``bench_policy``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import time
from pathlib import Path


def _modules(selected: list[str]) -> list[str]:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if selected:
        wanted = {s if s.startswith("bench_") else f"bench_{s}" for s in selected}
        unknown = wanted - set(names)
        if unknown:
            raise SystemExit(f"unknown benchmarks {sorted(unknown)}; have {names}")
        names = [n for n in names if n in wanted]
    return names


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    failed = []
    for name in _modules(list(sys.argv[1:] if argv is None else argv)):
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        rc = module.main()
        print(
            f"=== {name}: {'ok' if not rc else 'TARGET MISSED'} "
            f"({time.perf_counter() - start:.1f} s) ===",
            flush=True,
        )
        if rc:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks with missed targets: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
