"""Before/after: the same builds and checks with two versions of the code, compared bit for bit.

``python -m benchmarks.before_after REV [CASE ...]`` exports git revision ``REV`` (e.g. ``main``)
to a temporary directory and runs, with that tree and with this working tree (each a fresh
``divmon`` process, ``PYTHONPATH`` set to the tree):

1. ``divmon reference build`` on the case's reference file; the two profiles must be identical
   field by field, apart from ``created_at`` and the ``content_hash`` that covers it;
2. ``divmon check`` of the case's current file against the *before* profile, with each tree; the
   two record files must be identical field by field, floats bit for bit
   (``benchmarks.compare_records``; the run id and creation time aside).

Cases are ``benchmarks.datasets`` ones (``standard``, ``wide``, ``scale-N``; default
``standard wide``), written under ``DIVMON_BENCH_DATA`` as for ``bench_peers``. Exit status 1
when anything differs. Speed is not measured here.

``--rtol R`` (e.g. ``python -m benchmarks.before_after a29bf78 --rtol 1e-9``), for a change meant
to move results by rounding only: floats (profiles and records) are equal when they differ by at
most ``R`` relative to the larger one, every other field must be identical, and the largest
relative difference of each field that moved is listed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.compare_records import _same, differences, relative_difference
from benchmarks.datasets import make_case

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DIVMON_BENCH_DATA", tempfile.gettempdir())) / "divmon-bench-data"
CASES = {
    "standard": (1_000_000, 20, 5),
    "wide": (20_000, 1000, 0),
    "cols-100": (20_000, 100, 0),
}


def _case(name: str):
    if name.startswith("scale-"):
        return make_case(name, DATA_DIR, int(name.split("-", 1)[1]), 5, 1)
    rows, numeric, categorical = CASES[name]
    return make_case(name, DATA_DIR, rows, numeric, categorical)


def _divmon(tree: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    # cwd: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH, so
    # run from the repository both sides would import this tree
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        env=env,
        check=False,
        cwd=tree,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"divmon {' '.join(args[:2])} ({tree}) failed:\n{proc.stderr[-2000:]}")


def _profile_differences(
    a: Path, b: Path, rtol: float = 0.0, worst: dict[str, float] | None = None
) -> list[str]:
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    for d in (da, db):
        d.pop("created_at", None)
        d.pop("content_hash", None)
    fa, fb = da.pop("features", {}), db.pop("features", {})
    out = [f"top-level {k}" for k in sorted(da.keys() | db.keys()) if da.get(k) != db.get(k)]
    out += [f"feature {n}" for n in sorted(fa.keys() ^ fb.keys())]
    for name in sorted(fa.keys() & fb.keys()):
        if not _same(fa[name], fb[name], rtol):
            out.append(f"feature {name}")
        if worst is not None:
            for key, value in fa[name].items():
                rel = relative_difference(value, fb[name].get(key))
                if rel:
                    worst[f"profile {key}"] = max(worst.get(f"profile {key}", 0.0), rel)
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rtol = 0.0
    if "--rtol" in args:
        i = args.index("--rtol")
        rtol = float(args[i + 1])
        del args[i : i + 2]
    if not args:
        raise SystemExit("usage: python -m benchmarks.before_after REV [CASE ...] [--rtol R]")
    rev, names = args[0], args[1:] or ["standard", "wide"]
    failed = False
    with tempfile.TemporaryDirectory(prefix="divmon-before-after-") as tmpdir:
        tmp = Path(tmpdir)
        before = tmp / "before"
        blob = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(before, filter="data")
        for name in names:
            case = _case(name)
            ref = {}
            for side, tree in (("before", before), ("after", ROOT)):
                ref[side] = tmp / f"{name}-{side}.json"
                _divmon(tree, "reference", "build", "-i", str(case.reference), "-o", str(ref[side]))
                out = tmp / f"{name}-{side}-out"
                _divmon(
                    tree, "check", "--reference", str(ref["before"]), "--input",
                    str(case.current), "--output", str(out), "--run-id", "cmp",
                )  # fmt: skip
            worst: dict[str, float] = {}
            pdiff = _profile_differences(ref["before"], ref["after"], rtol, worst)
            rdiff = differences(
                str(tmp / f"{name}-before-out" / "records-cmp.parquet"),
                str(tmp / f"{name}-after-out" / "records-cmp.parquet"),
                rtol,
                worst,
            )
            n = len(json.loads(ref["before"].read_text())["features"])
            print(
                f"{name}: profiles ({n} features) {len(pdiff)} differences; "
                f"records {len(rdiff)} differences",
                flush=True,
            )
            for d in (pdiff + rdiff)[:20]:
                print("  " + d)
            if rtol and worst:
                print(f"  {name}: fields that moved (largest relative difference, rtol {rtol:g}):")
                for field, rel in sorted(worst.items(), key=lambda kv: -kv[1]):
                    print(f"    {field}: {rel:.1e}")
            failed |= bool(pdiff or rdiff)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
