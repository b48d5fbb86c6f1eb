"""divmon against the machine's floor and the tools users would otherwise pick, side by side.

Cases (deterministic data, ``benchmarks/datasets.py``; a known subset of columns is shifted):

- ``standard``: 1M reference + 1M current rows x (20 numeric + 5 categorical);
- ``wide``: 20k + 20k rows x 1,000 numeric;
- ``wide-500``: 20k + 20k rows x 500 numeric (the case the issue compares Evidently on);
- ``cols-100``: 20k + 20k rows x 100 numeric (with ``wide``: memory when columns grow 10x);
- ``scale-N``: N + N rows x (5 numeric + 1 categorical), N from ``SCALE_ROWS`` (time slope and
  memory when rows grow).

Contenders, each a fresh process timed from start to exit, peak RSS from ``wait4``:

- ``floor``: pyarrow + numpy, each column read once per side, exact quantile edges
  (``numpy.quantile``, ``inverted_cdf``), ``numpy.histogram`` of both sides, JS;
- ``pandas+scipy``: what a user writes in a notebook (``scipy.spatial.distance.jensenshannon``);
- ``divmon build`` and ``divmon check`` (the command line, separately, and their sum);
- ``divmon build (Beam)``, ``divmon check (Beam)``: the Beam jobs on FnApiRunner, as before the
  in-process engine (``DIVMON_BENCH_BEAM=1``; slow);
- ``evidently``: ``DataDriftPreset(method="jensenshannon")`` in its own venv (``.venv-evidently``,
  ``make bench-peers``), on ``wide-500`` (``DIVMON_BENCH_EVIDENTLY_ALL=1``: also standard and
  wide, which take it minutes);
- ``tfdv`` (statistics of both sides in memory + validate) on standard and wide, and
  ``whylogs``: in their own venvs (``.venv-tfdv``, ``.venv-whylogs``, or a Python named by
  ``DIVMON_BENCH_TFDV_PYTHON`` / ``DIVMON_BENCH_WHYLOGS_PYTHON``); skipped with a message
  otherwise.

Rounds are interleaved (every contender once per round, ``DIVMON_BENCH_ROUNDS``, default 3; the
slow peers and the scale cases once, ``DIVMON_BENCH_SCALE_ROUNDS``; ``DIVMON_BENCH_NO_PEERS=1``
leaves the peers' venvs out). The table gives the median time, its spread (min-max) and the ratio
to the floor of the same round; results go to ``bench-output/peers.json``. Agreement: divmon's JS
of every feature equals the floor's and pandas+scipy's (same bins) and scipy's on the record's own
counts, to 1e-9; divmon must flag exactly the shifted columns. Ratios are targets, never asserts in
tests. ``DIVMON_BENCH_QUICK=1`` makes a small, fast run; ``DIVMON_BENCH_CASES=wide,standard``
runs only the named cases (a focused run: e.g. the wide build against its floor).
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_check import WRAPPER
from benchmarks.datasets import Case, make_case

ROOT = Path(__file__).resolve().parents[1]
QUICK = bool(os.environ.get("DIVMON_BENCH_QUICK"))
ROUNDS = int(os.environ.get("DIVMON_BENCH_ROUNDS", "1" if QUICK else "3"))
DATA_DIR = Path(os.environ.get("DIVMON_BENCH_DATA", tempfile.gettempdir())) / "divmon-bench-data"
SCALE_ROWS = tuple(
    int(s)
    for s in os.environ.get(
        "DIVMON_BENCH_SCALE_ROWS", "20000,200000" if QUICK else "100000,1000000,10000000"
    ).split(",")
    if s
)
SCALE_ROUNDS = int(os.environ.get("DIVMON_BENCH_SCALE_ROUNDS", "1"))
NO_PEERS = bool(os.environ.get("DIVMON_BENCH_NO_PEERS"))
ONLY_CASES = {c for c in os.environ.get("DIVMON_BENCH_CASES", "").split(",") if c}
TARGETS = {
    "build": {"standard": 2.0, "wide": 2.0},
    "check": {"standard": 2.0, "wide": 2.5},
    "build+check": {"standard": 3.0, "wide": 3.0},
}
MEMORY_TARGET_MIB = 1024
# Which cases each peer runs on (its slowest runs take minutes: only where a target needs it).
PEER_CASES = {
    "evidently": ("wide-500",)
    + (("standard", "wide") if os.environ.get("DIVMON_BENCH_EVIDENTLY_ALL") else ()),
    "tfdv": ("standard", "wide"),
    "whylogs": ("standard",),
}
# Peer targets: the peer's time / divmon's (same round) must be at least this.
PEER_TARGETS = {
    ("tfdv", "standard", "divmon build+check"): 2.5,
    ("tfdv", "wide", "divmon build+check"): 2.5,
    ("evidently", "wide-500", "divmon check"): 30.0,
    ("evidently", "wide-500", "divmon build+check"): 15.0,
}

FLOOR = r"""
import json, sys
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
ref, cur, spec = pq.ParquetFile(sys.argv[1]), pq.ParquetFile(sys.argv[2]), json.loads(sys.argv[3])
def js(p, q):
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        b = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float((a + b) / 2)
def counts(x, e):
    c = np.empty(e.size + 1, np.int64)
    c[0], c[-1] = np.count_nonzero(x < e[0]), np.count_nonzero(x > e[-1])
    c[1:-1] = np.histogram(x, e)[0]
    return c
out = {}
q = np.linspace(0, 1, 33)
for f in spec["numeric"]:
    x = ref.read(columns=[f]).column(0).to_numpy()
    x = x[np.isfinite(x)]
    e = np.unique(np.quantile(x, q, method="inverted_cdf"))
    if e.size == 1:
        e = np.array([e[0], np.nextafter(e[0], np.inf)])
    r = counts(x, e)
    y = cur.read(columns=[f]).column(0).to_numpy()
    out[f] = js(counts(y[~np.isnan(y)], e), r)
for f in spec["categorical"]:
    vc = pc.value_counts(ref.read(columns=[f]).column(0).combine_chunks().drop_null())
    pairs = sorted(zip(vc.field("counts").to_pylist(), vc.field("values").to_pylist()),
                   key=lambda cv: (-cv[0], cv[1]))
    top = pa.array([v for _, v in pairs[:50]])
    rest = pa.array([v for _, v in pairs[50:]], type=pa.string())
    r = np.array([c for c, _ in pairs[:50]] + [sum(c for c, _ in pairs[50:]), 0])
    y = cur.read(columns=[f]).column(0).combine_chunks().drop_null()
    idx = pc.index_in(y, value_set=top)
    c = np.bincount(pc.drop_null(idx).to_numpy(), minlength=len(top))
    unknown = y.filter(pc.is_null(idx))
    other = int(pc.sum(pc.is_in(unknown, value_set=rest)).as_py() or 0)
    out[f] = js(np.append(c, [other, len(unknown) - other]), r)
print(json.dumps({"js": out}))
"""

PANDAS = r"""
import json, sys
import numpy as np, pandas as pd
from scipy.spatial.distance import jensenshannon
spec = json.loads(sys.argv[3])
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
out = {}
for f in spec["numeric"]:
    x, y = ref[f].dropna().to_numpy(), cur[f].dropna().to_numpy()
    e = np.unique(np.quantile(x, np.linspace(0, 1, 33), method="inverted_cdf"))
    if e.size == 1:
        e = np.array([e[0], np.nextafter(e[0], np.inf)])
    def h(v):
        return np.concatenate(([(v < e[0]).sum()], np.histogram(v, e)[0], [(v > e[-1]).sum()]))
    out[f] = float(jensenshannon(h(y), h(x), base=2) ** 2)
for f in spec["categorical"]:
    vc = ref[f].value_counts()
    vc = vc.sort_index().sort_values(ascending=False, kind="stable")
    top, rest = list(vc.index[:50]), set(vc.index[50:])
    r = np.append(vc.iloc[:50].to_numpy(), [vc.iloc[50:].sum(), 0])
    cc = cur[f].dropna().value_counts()
    c = [int(cc.get(v, 0)) for v in top]
    other = int(cc[[v in rest for v in cc.index]].sum())
    c += [other, int(cc.sum()) - sum(c) - other]
    out[f] = float(jensenshannon(np.array(c), r, base=2) ** 2)
print(json.dumps({"js": out}))
"""

EVIDENTLY = r"""
import json, sys
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
spec = json.loads(sys.argv[3])
cols = spec["numeric"] + spec["categorical"]
ref, cur = pd.read_parquet(sys.argv[1], columns=cols), pd.read_parquet(sys.argv[2], columns=cols)
snap = Report([DataDriftPreset(method="jensenshannon")]).run(cur, ref)
flagged = []
for m in snap.dict()["metrics"]:
    cfg = m.get("config", {})
    col = cfg.get("column")
    v = m.get("value")
    thr = cfg.get("threshold")
    if col is not None and isinstance(v, float) and thr is not None and v >= thr:
        flagged.append(col)
print(json.dumps({"flagged": sorted(flagged)}))
"""

TFDV = r"""
import json, sys
import pandas as pd
import tensorflow_data_validation as tfdv
spec = json.loads(sys.argv[3])
cols = spec["numeric"] + spec["categorical"]
ref, cur = pd.read_parquet(sys.argv[1], columns=cols), pd.read_parquet(sys.argv[2], columns=cols)
rs, cs = tfdv.generate_statistics_from_dataframe(ref), tfdv.generate_statistics_from_dataframe(cur)
schema = tfdv.infer_schema(rs)
for f in spec["numeric"]:
    tfdv.get_feature(schema, f).drift_comparator.jensen_shannon_divergence.threshold = 0.01
for f in spec["categorical"]:
    tfdv.get_feature(schema, f).drift_comparator.infinity_norm.threshold = 0.01
anomalies = tfdv.validate_statistics(cs, schema, previous_statistics=rs)
print(json.dumps({"flagged": sorted(anomalies.anomaly_info.keys())}))
"""

WHYLOGS = r"""
import json, sys
import pandas as pd
import whylogs as why
spec = json.loads(sys.argv[3])
cols = spec["numeric"] + spec["categorical"]
for path in sys.argv[1:3]:
    why.log(pd.read_parquet(path, columns=cols)).view()
print(json.dumps({}))
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one fresh process (``wait4``)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, env=env, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        err = proc.stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:5])} failed ({proc.returncode}):\n{err}")
    lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("BENCH_RSS_KB=")]
    return wall, int(lines[-1].split("=", 1)[1]) // 1024, proc.stdout.decode()


def _peer_python(env_var: str, default: Path | None = None) -> str | None:
    path = os.environ.get(env_var) or (str(default) if default and default.exists() else None)
    return path


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = dict(os.environ, PYTHONWARNINGS="ignore")
        paths = [str(ROOT), self.env.get("PYTHONPATH")]
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        self.results: dict[str, dict[str, list[dict]]] = {}
        self.agreement: list[str] = []
        self.failures: list[str] = []
        self.skipped: dict[str, str] = {}

    def record(self, case: str, who: str, wall: float, rss: int) -> None:
        self.results.setdefault(case, {}).setdefault(who, []).append({"s": wall, "rss_mib": rss})
        print(f"  {case:<14} {who:<22} {wall:7.2f} s {rss:6d} MiB", flush=True)

    def spec(self, case: Case) -> str:
        return json.dumps({"numeric": list(case.numeric), "categorical": list(case.categorical)})

    def divmon(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "flows.cli", *args]

    def round(self, case: Case, rnd: int, peers: bool, pandas: bool = True) -> None:
        ref_json = self.tmp / f"{case.name}-ref.json"
        out = self.tmp / f"{case.name}-out-{rnd}"
        wall, rss, text = _run(
            [sys.executable, "-c", FLOOR, str(case.reference), str(case.current), self.spec(case)],
            self.env,
        )
        self.record(case.name, "floor", wall, rss)
        floor_js = json.loads(text)["js"]
        wall, rss, _ = _run(
            self.divmon("reference", "build", "-i", str(case.reference), "-o", str(ref_json)),
            self.env,
        )
        self.record(case.name, "divmon build", wall, rss)
        check = self.divmon(
            "check", "--reference", str(ref_json), "--input", str(case.current),
            "--output", str(out), "--run-id", "bench",
        )  # fmt: skip
        wall, rss, _ = _run(check, self.env)
        self.record(case.name, "divmon check", wall, rss)
        if rnd == 0:
            self.agree(case, floor_js, out / "records-bench.parquet")
        if not pandas:
            if peers:
                self.peers(case, ref_json)
            return
        wall, rss, text = _run(
            [sys.executable, "-c", PANDAS, str(case.reference), str(case.current), self.spec(case)],
            self.env,
        )
        self.record(case.name, "pandas+scipy", wall, rss)
        if rnd == 0:
            self.compare_js(case, "pandas+scipy", json.loads(text)["js"], floor_js)
        if peers:
            self.peers(case, ref_json)

    def peers(self, case: Case, ref_json: Path) -> None:
        if os.environ.get("DIVMON_BENCH_BEAM"):
            beam = self.divmon("reference", "build", "-i", str(case.reference))
            beam += ["-o", str(self.tmp / "beam-ref.json"), "--runner=FnApiRunner"]
            wall, rss, _ = _run(beam, self.env)
            self.record(case.name, "divmon build (Beam)", wall, rss)
            beam = self.divmon("check", "--reference", str(ref_json), "--input", str(case.current))
            beam += ["--output", str(self.tmp / "beam-out"), "--runner=FnApiRunner"]
            wall, rss, _ = _run(beam, self.env)
            self.record(case.name, "divmon check (Beam)", wall, rss)
        if NO_PEERS:
            self.skipped["evidently, tfdv, whylogs"] = "DIVMON_BENCH_NO_PEERS is set"
            return
        for who, script, var, default in (
            ("evidently", EVIDENTLY, "DIVMON_BENCH_EVIDENTLY_PYTHON", ROOT / ".venv-evidently"),
            ("tfdv", TFDV, "DIVMON_BENCH_TFDV_PYTHON", ROOT / ".venv-tfdv"),
            ("whylogs", WHYLOGS, "DIVMON_BENCH_WHYLOGS_PYTHON", ROOT / ".venv-whylogs"),
        ):
            if case.name not in PEER_CASES[who]:
                continue
            python = _peer_python(var, default / "bin" / "python")
            if python is None:
                self.skipped[who] = (
                    f"no environment: set {var} to a Python with {who} installed "
                    f"(or create {default.relative_to(ROOT)})"
                )
                continue
            args = [python, "-c", script, str(case.reference), str(case.current), self.spec(case)]
            try:
                env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
                wall, rss, text = _run(args, env)
            except RuntimeError as exc:
                self.skipped[who] = f"failed: {str(exc).splitlines()[-1][:200]}"
                continue
            self.record(case.name, who, wall, rss)
            flagged = json.loads(text).get("flagged")
            if flagged is not None:
                wrong = sorted(set(flagged) ^ set(case.shifted))
                self.agreement.append(
                    f"{case.name}: {who} flagged {len(flagged)} columns, "
                    f"{len(wrong)} differ from the {len(case.shifted)} shifted ones"
                )

    def compare_js(self, case: Case, who: str, js: dict, floor_js: dict) -> None:
        worst = max(abs(js[f] - floor_js[f]) for f in case.features)
        ok = worst <= 1e-9
        self.agreement.append(f"{case.name}: {who} JS = floor JS, max |diff| {worst:.1e}")
        if not ok:
            self.failures.append(f"{case.name}: {who} JS differs from the floor's by {worst:.1e}")

    def agree(self, case: Case, floor_js: dict, records: Path) -> None:
        import numpy as np
        import pyarrow.parquet as pq
        from scipy.spatial.distance import jensenshannon

        rows = pq.read_table(records).to_pylist()
        js = {r["feature"]: r["js_divergence"] for r in rows}
        worst_scipy = max(
            abs(
                r["js_divergence"]
                - jensenshannon(np.array(r["counts"]), np.array(r["reference_counts"]), base=2) ** 2
            )
            for r in rows
        )
        self.agreement.append(
            f"{case.name}: divmon JS = scipy on the records' counts, max |diff| {worst_scipy:.1e}"
        )
        if worst_scipy > 1e-9:
            self.failures.append(f"{case.name}: divmon JS differs from scipy by {worst_scipy:.1e}")
        self.compare_js(case, "divmon", js, floor_js)
        flagged = sorted(r["feature"] for r in rows if r["severity"] not in (None, "ok"))
        wrong = sorted(set(flagged) ^ set(case.shifted))
        self.agreement.append(
            f"{case.name}: divmon flagged {len(flagged)} columns; "
            f"{'exactly the shifted ones' if not wrong else f'{len(wrong)} differ: {wrong[:5]}'}"
        )


def _summary(runs: list[dict], floor: list[dict]) -> dict:
    times = [r["s"] for r in runs]
    ratios = [r["s"] / f["s"] for r, f in zip(runs, floor, strict=False)]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rss_mib": max(r["rss_mib"] for r in runs),
        "runs": len(runs),
    }


def _table(bench: Bench) -> dict:
    out: dict[str, dict] = {}
    print()
    head = f"{'case':<14} {'contender':<22} {'median s':>9} {'spread s':>13} {'x floor':>7} "
    print(head + f"{'spread':>11} {'peak MiB':>9}")
    for case, by in bench.results.items():
        floor = by["floor"]
        rows = dict(by)
        if "divmon build" in by and "divmon check" in by:
            rows["divmon build+check"] = [
                {"s": b["s"] + c["s"], "rss_mib": max(b["rss_mib"], c["rss_mib"])}
                for b, c in zip(by["divmon build"], by["divmon check"], strict=True)
            ]
        out[case] = {}
        for who, runs in rows.items():
            s = _summary(runs, floor)
            out[case][who] = s
            print(
                f"{case:<14} {who:<22} {s['median_s']:9.2f} "
                f"{s['min_s']:6.2f}-{s['max_s']:<6.2f} {s['ratio_median']:7.2f} "
                f"{s['ratio_min']:5.2f}-{s['ratio_max']:<5.2f} {s['rss_mib']:9d}"
            )
    return out


def _targets(table: dict, bench: Bench) -> list[tuple[str, bool]]:
    checks = []
    for what, per_case in TARGETS.items():
        for case, target in per_case.items():
            s = table.get(case, {}).get(f"divmon {what}")
            if s:
                checks.append(
                    (
                        f"{case}: divmon {what} {s['ratio_median']:.2f}x floor "
                        f"(spread {s['ratio_min']:.2f}-{s['ratio_max']:.2f}; target <= {target}x)",
                        s["ratio_median"] <= target,
                    )
                )
    for case, by in table.items():
        for who in ("divmon build", "divmon check"):
            if who in by:
                rss = by[who]["rss_mib"]
                checks.append((f"{case}: {who} peak {rss} MiB (target < 1024 MiB)", rss < 1024))
    scale = sorted((int(c.split("-")[1]), by) for c, by in table.items() if c.startswith("scale"))
    pairs = [(f"{a:,} -> {b:,} rows", x, y) for (a, x), (b, y) in itertools.pairwise(scale)]
    if "cols-100" in table and "wide" in table:
        pairs.append(("100 -> 1,000 columns", table["cols-100"], table["wide"]))
    for label, small, large in pairs:
        for who in ("divmon build", "divmon check"):
            r = large[who]["rss_mib"] / small[who]["rss_mib"]
            t = large[who]["median_s"] / small[who]["median_s"]
            checks.append(
                (
                    f"{label}: {who} time x{t:.1f}, peak memory x{r:.2f} (target <= 1.25)",
                    r <= 1.25,
                )
            )
    for (peer, case, who), target in PEER_TARGETS.items():
        mine = bench.results.get(case, {})
        if peer not in mine or who not in table.get(case, {}):
            continue
        # the peers run in round 1 only: compare with divmon's round 1, the same conditions
        theirs = mine[peer][0]["s"]
        parts = [f"divmon {w}" for w in who.removeprefix("divmon ").split("+")]
        ours = sum(mine[w][0]["s"] for w in parts)
        checks.append(
            (
                f"{case}: {peer} {theirs:.1f} s / {who} {ours:.1f} s (round 1) = "
                f"{theirs / ours:.1f}x faster (target >= {target}x)",
                theirs / ours >= target,
            )
        )
    return checks


def running_mle_cost() -> dict[str, float]:
    """Seconds to fold and observe one more window after 1, 100 and 10,000 windows."""
    import numpy as np
    import pyarrow as pa

    from divtransforms import ReferenceProfile
    from divtransforms.running import RunningEstimates, WindowCumulation
    from divtransforms.window import feature_stats_of_batch

    rng = np.random.default_rng(5)
    data = pa.table({f"x{i}": rng.normal(size=2000) for i in range(25)})
    profile = ReferenceProfile.build(data)
    stats = feature_stats_of_batch(profile.features, data)
    cum = WindowCumulation(RunningEstimates.seed(profile.features))
    out = {}
    marks = {1, 100, 10_000}
    for w in range(1, 10_001):
        t0 = time.perf_counter()
        cum.fold(before=w)
        cum.observe(w, w + 1, 0, stats)
        dt = time.perf_counter() - t0
        if w in marks:
            reps = []
            for _ in range(20):  # the same step again, timed alone
                t0 = time.perf_counter()
                c2 = WindowCumulation(cum.folded, dict(cum.known))
                c2.fold(before=w + 1)
                c2.observe(w + 1, w + 2, 0, stats)
                reps.append(time.perf_counter() - t0)
            out[str(w)] = statistics.median(reps)
        del dt
    return out


def main() -> int:
    print("generating data (cached in", DATA_DIR, ")", flush=True)
    t0 = time.perf_counter()
    wide_rows = 2_000 if QUICK else 20_000

    def made(specs: list[tuple[str, int, int, int]]) -> list[Case]:
        return [
            make_case(name, DATA_DIR, *shape)
            for name, *shape in specs
            if not ONLY_CASES or name in ONLY_CASES
        ]

    cases = made(
        [("standard", 100_000 if QUICK else 1_000_000, 20, 5), ("wide", wide_rows, 1000, 0)]
    )
    once = made([("wide-500", wide_rows, 500, 0), ("cols-100", wide_rows, 100, 0)])
    scale = made([(f"scale-{n}", n, 5, 1) for n in SCALE_ROWS])
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="divmon-peers-") as tmp:
        bench = Bench(Path(tmp))
        for rnd in range(ROUNDS):
            print(f"round {rnd + 1}/{ROUNDS}", flush=True)
            for case in cases:
                bench.round(case, rnd, peers=rnd == 0)
            for case in once if rnd < SCALE_ROUNDS else ():
                bench.round(case, rnd, peers=rnd == 0, pandas=False)
            for case in scale if rnd < SCALE_ROUNDS else ():
                bench.round(case, rnd, peers=False, pandas=False)
        table = _table(bench)
    print()
    for line in bench.agreement:
        print("agree:", line)
    for who, why in sorted(bench.skipped.items()):
        print(f"skipped {who}: {why}")
    mle = running_mle_cost()
    print(
        "running-MLE update (fold + observe one window, 25 features): "
        + ", ".join(f"after {k} windows {v * 1e3:.2f} ms" for k, v in mle.items())
    )
    checks = _targets(table, bench)
    checks += [(f, False) for f in bench.failures]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    doc = {
        "machine": _machine(),
        "rounds": ROUNDS,
        "results": table,
        "raw": bench.results,
        "agreement": bench.agreement,
        "skipped": bench.skipped,
        "running_mle_seconds": mle,
        "checks": [{"text": t, "ok": ok} for t, ok in checks],
    }
    out = ROOT / "bench-output" / "peers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    return 0 if all(ok for _, ok in checks) else 1


def _machine() -> dict:
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu = ""
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
