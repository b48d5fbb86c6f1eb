"""``divmon check`` (Beam, local runner) against pyarrow + ``numpy.histogram`` on the same files.

One float64 feature, 64 quantile bins, Parquet files of 2M and 20M samples (row groups of 1Mi
rows). Both sides run as fresh processes, interleaved, ``REPEATS`` times each; the fastest wall
time of each is kept. Figures:

- marginal throughput: (20M - 2M) / (t(20M) - t(2M)) samples/s (start-up cancels out);
- fixed overhead: t(2M) - 2M / marginal throughput (process start, imports, pipeline start);
- peak RSS of each run (``wait4``), and its ratio between 20M and 2M.

Targets: marginal throughput >= 0.8x numpy's, fixed overhead <= 2.5 s, RSS(20M) <= 1.25 RSS(2M).
The numpy side is ``np.histogram`` on the same edges plus the two tail counts, read one row group
at a time; the Beam side also fits the feature's running MLE (normal family) in the same pass.
``DIVMON_BENCH_SIZES=200000,2000000`` and ``DIVMON_BENCH_REPEATS=1`` make a quick run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_BINS = 64
REPEATS = int(os.environ.get("DIVMON_BENCH_REPEATS", "3"))
SIZES = tuple(int(s) for s in os.environ.get("DIVMON_BENCH_SIZES", "2000000,20000000").split(","))
TARGET_RATIO, TARGET_OVERHEAD, TARGET_RSS = 0.8, 2.5, 1.25

NUMPY_SCRIPT = r"""
import json, sys
import numpy as np
import pyarrow.parquet as pq
edges = np.asarray(json.load(open(sys.argv[2]))["features"]["x"]["bins"]["edges"])
pf = pq.ParquetFile(sys.argv[1])
counts = np.zeros(edges.size + 1, dtype=np.int64)
for i in range(pf.num_row_groups):
    x = pf.read_row_group(i, columns=["x"]).column(0).to_numpy()
    counts[1:-1] += np.histogram(x, bins=edges)[0]
    counts[0] += np.count_nonzero(x < edges[0])
    counts[-1] += np.count_nonzero(x > edges[-1])
print(json.dumps(counts.tolist()))
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    # Peak RSS comes from WRAPPER (wait4 on the measured process alone).
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{err.decode()}")
    text = out.decode()
    rss_line = [ln for ln in err.decode().splitlines() if ln.startswith("BENCH_RSS_KB=")]
    rss = int(rss_line[-1].split("=", 1)[1]) // 1024 if rss_line else -1
    return wall, rss, text


WRAPPER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"BENCH_RSS_KB={usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measured(cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", WRAPPER, *cmd]


def _make_files(tmp: Path) -> tuple[Path, dict[int, Path]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from divtransforms import ReferenceProfile

    rng = np.random.default_rng(64)
    ref = tmp / "ref.json"
    ReferenceProfile.build(
        pa.table({"x": rng.normal(0.0, 1.0, 500_000)}), n_bins=N_BINS, families={"x": "normal"}
    ).save(ref)
    files = {}
    for n in SIZES:
        path = tmp / f"current-{n}.parquet"
        pq.write_table(pa.table({"x": rng.normal(0.02, 1.05, n)}), path, row_group_size=1 << 20)
        files[n] = path
    return ref, files


def _divmon_cmd() -> list[str]:
    return [sys.executable, "-m", "flows.cli"]


def main() -> int:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    with tempfile.TemporaryDirectory(prefix="divmon-bench-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        ref, files = _make_files(tmp)
        print(
            f"data: {', '.join(f'{n:,}' for n in SIZES)} float64 samples, {N_BINS} quantile "
            f"bins ({time.perf_counter() - t0:.1f} s to generate)",
            flush=True,
        )
        best: dict[tuple[str, int], tuple[float, int]] = {}
        for rep in range(REPEATS):
            for n, path in files.items():
                out = tmp / f"out-{n}-{rep}"
                beam_cmd = [
                    *_divmon_cmd(),
                    "check",
                    "--reference",
                    str(ref),
                    "--input",
                    str(path),
                    "--output",
                    str(out),
                    "--run-id",
                    "bench",
                    "--runner=FnApiRunner",
                ]
                numpy_cmd = [sys.executable, "-c", NUMPY_SCRIPT, str(path), str(ref)]
                wall_b, rss_b, _ = _run(_measured(beam_cmd), env)
                wall_n, rss_n, counts_text = _run(_measured(numpy_cmd), env)
                _check_same_counts(out / "records-bench.parquet", json.loads(counts_text), n)
                for key, wall, rss in (("beam", wall_b, rss_b), ("numpy", wall_n, rss_n)):
                    prev = best.get((key, n))
                    best[(key, n)] = (
                        min(wall, prev[0]) if prev else wall,
                        min(rss, prev[1]) if prev else rss,
                    )
                print(
                    f"  run {rep + 1}/{REPEATS} n={n:,}: divmon check {wall_b:.2f} s "
                    f"{rss_b} MiB | numpy {wall_n:.2f} s {rss_n} MiB",
                    flush=True,
                )
    return _report(best)


def _check_same_counts(records: Path, numpy_counts: list[int], n: int) -> None:
    import pyarrow.parquet as pq

    rows = pq.read_table(records).to_pylist()
    (rec,) = [r for r in rows if r["feature"] == "x"]
    if rec["counts"] != numpy_counts or rec["n"] != n:
        raise AssertionError(f"divmon check and numpy disagree at n={n}")


def _report(best: dict[tuple[str, int], tuple[float, int]]) -> int:
    small, large = min(SIZES), max(SIZES)
    rows, figures = [], {}
    for key in ("beam", "numpy"):
        (t_s, rss_s), (t_l, rss_l) = best[(key, small)], best[(key, large)]
        marginal = (large - small) / max(t_l - t_s, 1e-9)
        overhead = t_s - small / marginal
        figures[key] = (marginal, overhead, rss_s, rss_l)
        label = "divmon check (Beam FnApiRunner)" if key == "beam" else "pyarrow + np.histogram"
        rows.append(
            (
                label,
                f"{t_s:.2f}",
                f"{t_l:.2f}",
                f"{marginal / 1e6:.1f}",
                f"{overhead:.2f}",
                str(rss_s),
                str(rss_l),
                f"{rss_l / rss_s:.2f}",
            )
        )
    header = (
        "",
        f"t({small / 1e6:g}M) s",
        f"t({large / 1e6:g}M) s",
        "marginal Msamples/s",
        "fixed s",
        f"RSS({small / 1e6:g}M) MiB",
        f"RSS({large / 1e6:g}M) MiB",
        "RSS ratio",
    )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    beam, numpy_ = figures["beam"], figures["numpy"]
    ratio = beam[0] / numpy_[0]
    rss_ratio = beam[3] / beam[2]
    checks = [
        (
            f"marginal throughput {ratio:.2f}x numpy's (target >= {TARGET_RATIO}x)",
            ratio >= TARGET_RATIO,
        ),
        (
            f"fixed overhead {beam[1]:.2f} s (target <= {TARGET_OVERHEAD} s)",
            beam[1] <= TARGET_OVERHEAD,
        ),
        (f"peak RSS ratio {rss_ratio:.2f} (target <= {TARGET_RSS})", rss_ratio <= TARGET_RSS),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
