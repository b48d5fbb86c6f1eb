"""One float64 feature: ``divmon check`` against pyarrow + ``numpy.histogram``, same edges.

One float64 feature, Parquet files of 2M and 20M samples (row groups of 1Mi rows). Four sides
run as fresh processes, interleaved, ``REPEATS`` times each:

- ``numpy``: ``np.histogram`` on the default check's edges plus the two tail counts, one row
  group at a time;
- ``divmon (default)``: ``divmon check`` with its defaults against a reference that ``divmon
  reference build`` made with its defaults from 1M samples (32 quantile bins, the inferred
  normal family: the moments of ``x`` and of ``|x - centre|``, the family's tests), as a user
  runs it;
- ``divmon (bins)``: 64 quantile bins from 500k samples and no MLE family, so the check bins and
  nothing else (the records, the quality tests and the writing are included);
- ``divmon (bins+MLE)``: the same 64 bins with the normal family.

Figures: marginal throughput (20M - 2M) / (t(20M) - t(2M)) samples/s from the fastest wall time
of each (start-up cancels out), fixed overhead t(2M) - 2M / marginal throughput, peak RSS of each
run (``wait4``), and the ratio of each side's marginal throughput to numpy's: best-of-n (from
the fastest times) and its spread over the repetitions (the ratio of each repetition's own
marginal throughputs; single runs scatter on a loaded machine, the best-of-n is the figure).
The same ratio per CPU second (user + system time of every thread, from ``wait4``) is printed
beside it: a loaded machine stretches wall times far more than CPU times. Also the kernel
alone, in memory: ``NumericBins.count_floats`` against ``np.histogram`` + tails
on the same 20M values in 1Mi slices, interleaved, median ratio and spread.

Targets: the default check's marginal throughput >= 0.8x numpy's; binning alone >= 0.9x
(``divmon (bins)``, and the kernel); fixed overhead <= 2.5 s, RSS(20M) <= 1.25 RSS(2M).
``DIVMON_BENCH_SIZES=200000,2000000`` and ``DIVMON_BENCH_REPEATS=1`` make a quick run. Results go
to ``bench-output/binning.json``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_BINS = 64
REPEATS = int(os.environ.get("DIVMON_BENCH_REPEATS", "3"))
SIZES = tuple(int(s) for s in os.environ.get("DIVMON_BENCH_SIZES", "2000000,20000000").split(","))
TARGET_RATIO, TARGET_OVERHEAD, TARGET_RSS = 0.9, 2.5, 1.25
TARGET_DEFAULT = 0.8  # the default check (bins, moments, tests) against numpy's binning alone
SIDES = ("numpy", "default", "bins", "bins+MLE")

NUMPY_SCRIPT = r"""
import json, sys
import numpy as np
import pyarrow.parquet as pq
edges = np.asarray(json.load(open(sys.argv[2]))["features"]["x"]["bins"]["edges"], dtype=float)
pf = pq.ParquetFile(sys.argv[1])
counts = np.zeros(edges.size + 1, dtype=np.int64)
for i in range(pf.num_row_groups):
    x = pf.read_row_group(i, columns=["x"]).column(0).to_numpy()
    counts[1:-1] += np.histogram(x, bins=edges)[0]
    counts[0] += np.count_nonzero(x < edges[0])
    counts[-1] += np.count_nonzero(x > edges[-1])
print(json.dumps(counts.tolist()))
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS (MiB), stdout and CPU seconds (user + system, every thread) of
    one fresh process."""
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
    cpu_line = [ln for ln in err.decode().splitlines() if ln.startswith("BENCH_CPU_S=")]
    cpu = float(cpu_line[-1].split("=", 1)[1]) if cpu_line else math.nan
    return wall, rss, text, cpu


WRAPPER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"BENCH_RSS_KB={usage.ru_maxrss}", file=sys.stderr)
print(f"BENCH_CPU_S={usage.ru_utime + usage.ru_stime}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measured(cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", WRAPPER, *cmd]


def _make_files(tmp: Path, env: dict[str, str]) -> tuple[dict[str, Path], dict[int, Path]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from divtransforms import ReferenceProfile

    rng = np.random.default_rng(64)
    sample = pa.table({"x": rng.normal(0.0, 1.0, 500_000)})
    refs = {}
    for key, family in (("bins", None), ("bins+MLE", "normal")):
        refs[key] = tmp / f"ref-{key.replace('+', '-')}.json"
        ReferenceProfile.build(sample, n_bins=N_BINS, families={"x": family}).save(refs[key])
    default_input = tmp / "reference-1M.parquet"
    pq.write_table(pa.table({"x": rng.normal(0.0, 1.0, 1_000_000)}), default_input)
    refs["default"] = tmp / "ref-default.json"
    build = [*_divmon_cmd(), "reference", "build", "-i", str(default_input)]
    subprocess.run([*build, "-o", str(refs["default"])], env=env, check=True, capture_output=True)
    default = json.loads(refs["default"].read_text())["features"]["x"]
    if default.get("family") != "normal":
        raise AssertionError(f"the default build inferred {default.get('family')!r}, not normal")
    files = {}
    for n in SIZES:
        path = tmp / f"current-{n}.parquet"
        pq.write_table(pa.table({"x": rng.normal(0.02, 1.05, n)}), path, row_group_size=1 << 20)
        files[n] = path
    return refs, files


def _divmon_cmd() -> list[str]:
    return [sys.executable, "-m", "flows.cli"]


def kernel_ratios(n: int = 20_000_000, repeats: int = 5) -> list[float]:
    """``count_floats`` throughput / (``np.histogram`` + tails) throughput on the same values
    and edges, in memory, 1Mi values at a time; ``repeats`` interleaved runs."""
    import numpy as np

    from divtransforms import NumericBins

    rng = np.random.default_rng(65)
    spec = NumericBins.from_sample(rng.normal(size=500_000), n_bins=N_BINS)
    e = spec.edges
    x = rng.normal(0.02, 1.05, n)
    step = 1 << 20

    def numpy_side() -> np.ndarray:
        c = np.zeros(e.size + 1, dtype=np.int64)
        for i in range(0, n, step):
            v = x[i : i + step]
            c[1:-1] += np.histogram(v, bins=e)[0]
            c[0] += np.count_nonzero(v < e[0])
            c[-1] += np.count_nonzero(v > e[-1])
        return c

    def divmon_side() -> np.ndarray:
        c = np.zeros(e.size + 1, dtype=np.int64)
        for i in range(0, n, step):
            c += spec.count_floats(x[i : i + step]).counts
        return c

    if not np.array_equal(numpy_side(), divmon_side()):
        raise AssertionError("count_floats and numpy.histogram disagree")
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        numpy_side()
        t1 = time.perf_counter()
        divmon_side()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return ratios


def main() -> int:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    with tempfile.TemporaryDirectory(prefix="divmon-bench-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        refs, files = _make_files(tmp, env)
        print(
            f"data: {', '.join(f'{n:,}' for n in SIZES)} float64 samples; the default "
            f"reference from 1M samples, the others {N_BINS} quantile bins from 500k "
            f"({time.perf_counter() - t0:.1f} s to generate)",
            flush=True,
        )
        runs: dict[tuple[str, int], list[tuple[float, int]]] = {}
        cpus: dict[tuple[str, int], list[float]] = {}
        for rep in range(REPEATS):
            for n, path in files.items():
                line = [f"  run {rep + 1}/{REPEATS} n={n:,}:"]
                numpy_cmd = [sys.executable, "-c", NUMPY_SCRIPT, str(path), str(refs["default"])]
                wall, rss, counts_text, cpu = _run(_measured(numpy_cmd), env)
                runs.setdefault(("numpy", n), []).append((wall, rss))
                cpus.setdefault(("numpy", n), []).append(cpu)
                line.append(f"numpy {wall:.2f} s {rss} MiB")
                for key in SIDES[1:]:
                    ref = refs[key]
                    out = tmp / f"out-{key.replace('+', '-')}-{n}-{rep}"
                    cmd = [
                        *_divmon_cmd(), "check", "--reference", str(ref), "--input", str(path),
                        "--output", str(out), "--run-id", "bench",
                    ]  # fmt: skip
                    wall, rss, _, cpu = _run(_measured(cmd), env)
                    cpus.setdefault((key, n), []).append(cpu)
                    if key == "default":  # numpy ran on the default reference's edges
                        _check_same_counts(
                            out / "records-bench.parquet", json.loads(counts_text), n
                        )
                    runs.setdefault((key, n), []).append((wall, rss))
                    line.append(f"divmon ({key}) {wall:.2f} s {rss} MiB")
                print(" | ".join(line), flush=True)
    kernel = kernel_ratios(max(SIZES))
    return _report(runs, kernel, cpus)


def _check_same_counts(records: Path, numpy_counts: list[int], n: int) -> None:
    import pyarrow.parquet as pq

    rows = pq.read_table(records).to_pylist()
    (rec,) = [r for r in rows if r["feature"] == "x"]
    if rec["counts"] != numpy_counts or rec["n"] != n:
        raise AssertionError(f"divmon check and numpy disagree at n={n}")


def _ratio_spread(
    runs: dict[tuple[str, int], list[tuple[float, int]]], key: str, small: int, large: int
) -> tuple[float, float]:
    """The lowest and highest ratio of ``key``'s marginal throughput to numpy's, each
    repetition's runs taken together (repetitions interleave the sides, so they share the load);
    a repetition whose large file took no longer than its small one (noise larger than the
    work) is left out, and NaN when none is left."""
    ratios = []
    for (ks, kl), (ns, nl) in zip(
        zip(runs[(key, small)], runs[(key, large)], strict=True),
        zip(runs[("numpy", small)], runs[("numpy", large)], strict=True),
        strict=True,
    ):
        if kl[0] > ks[0] and nl[0] > ns[0]:
            ratios.append((nl[0] - ns[0]) / (kl[0] - ks[0]))
    return (min(ratios), max(ratios)) if ratios else (math.nan, math.nan)


def _cpu_marginal(
    cpus: dict[tuple[str, int], list[float]], key: str, small: int, large: int
) -> float:
    """Values per CPU second (every thread) between the two sizes, from the least CPU each
    took: a load-robust companion of the wall-time figure (another process's load slows a run's
    wall time far more than its CPU time)."""
    spent = min(cpus[(key, large)]) - min(cpus[(key, small)])
    return (large - small) / spent if spent > 0 else math.nan


def _report(
    runs: dict[tuple[str, int], list[tuple[float, int]]],
    kernel: list[float],
    cpus: dict[tuple[str, int], list[float]],
) -> int:
    small, large = min(SIZES), max(SIZES)
    rows, figures = [], {}
    for key in SIDES:
        t_s, t_l = min(w for w, _ in runs[(key, small)]), min(w for w, _ in runs[(key, large)])
        rss_s, rss_l = max(r for _, r in runs[(key, small)]), max(r for _, r in runs[(key, large)])
        marginal = (large - small) / (t_l - t_s) if t_l > t_s else math.nan  # NaN: noise
        overhead = t_s - small / marginal
        figures[key] = {
            "t_small_s": t_s, "t_large_s": t_l, "marginal_per_s": marginal,
            "overhead_s": overhead, "rss_small_mib": rss_s, "rss_large_mib": rss_l,
            "walls": {str(n): [w for w, _ in runs[(key, n)]] for n in (small, large)},
        }  # fmt: skip
        label = "pyarrow + np.histogram" if key == "numpy" else f"divmon check ({key})"
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
    numpy_ = figures["numpy"]
    checks = []
    for key in SIDES[1:]:
        f = figures[key]
        ratio = f["marginal_per_s"] / numpy_["marginal_per_s"]
        spread = _ratio_spread(runs, key, small, large)
        cpu_ratio = _cpu_marginal(cpus, key, small, large) / _cpu_marginal(
            cpus, "numpy", small, large
        )
        f["ratio_to_numpy"], f["ratio_spread"], f["cpu_ratio_to_numpy"] = ratio, spread, cpu_ratio
        f["cpu_s"] = {str(n): cpus[(key, n)] for n in (small, large)}
        numpy_["cpu_s"] = {str(n): cpus[("numpy", n)] for n in (small, large)}
        target = {"default": TARGET_DEFAULT, "bins": TARGET_RATIO}.get(key)
        noisy = f["t_large_s"] - f["t_small_s"] < 0.1 * f["t_large_s"]
        checks.append(
            (
                f"divmon check ({key}): marginal throughput {ratio:.2f}x numpy's, best of "
                f"{len(runs[(key, small)])} (runs {spread[0]:.2f}-{spread[1]:.2f}; per CPU "
                f"second {cpu_ratio:.2f}x)"
                + (f" (target >= {target}x)" if target else " (reported, no target)")
                + (" [the load's noise exceeds the work: rerun when quieter]" if noisy else ""),
                (ratio >= target and not noisy) if target else True,
            )
        )
    bins = figures["bins"]
    checks.append(
        (
            f"divmon check (bins): fixed overhead {bins['overhead_s']:.2f} s "
            f"(target <= {TARGET_OVERHEAD} s)",
            bins["overhead_s"] <= TARGET_OVERHEAD,
        )
    )
    rss_ratio = bins["rss_large_mib"] / bins["rss_small_mib"]
    checks.append(
        (f"divmon check (bins): peak RSS ratio {rss_ratio:.2f} (target <= {TARGET_RSS})",
         rss_ratio <= TARGET_RSS)
    )  # fmt: skip
    k = statistics.median(kernel)
    checks.append(
        (
            f"kernel count_floats / np.histogram throughput {k:.2f}x "
            f"(spread {min(kernel):.2f}-{max(kernel):.2f}; target >= {TARGET_RATIO}x)",
            k >= TARGET_RATIO,
        )
    )
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    out = Path(__file__).resolve().parents[1] / "bench-output" / "binning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "sizes": list(SIZES),
                "repeats": REPEATS,
                "figures": figures,
                "kernel_ratios": kernel,
                "checks": [{"text": t, "ok": ok} for t, ok in checks],
                "load_average": os.getloadavg(),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
