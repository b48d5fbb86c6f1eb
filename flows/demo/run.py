"""``make demo``: the whole story on embedded defaults, in about a minute.

1. synthesize a reference dataset and a stream of hourly files that drifts partway;
2. build the reference profile (``build_reference`` flow);
3. run the ``drift_check`` flow three times, scheduled-style, each over the files that arrived
   since the previous run; alerts go to a local HTTP receiver on 127.0.0.1 that the demo starts
   and stops itself (it answers 503 during the second run: the alerts wait in the outbox and the
   third run delivers them, once);
4. render the dashboard and print where the history, alert log and dashboard are.

Runs on a temporary local Prefect API (``flows.cli.server.prefect_api``: SQLite under PREFECT_HOME,
stopped with the demo) unless PREFECT_API_URL is set; the reference is built and the checks run in
the flow's own process (local files, no runner option: ``pipelines.engine``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COUNTRIES = ["US", "DE", "FR", "JP"]
P_REFERENCE = [0.5, 0.3, 0.15, 0.05]
P_DRIFTED = [0.45, 0.3, 0.15, 0.1]
START = datetime(2026, 1, 5, tzinfo=UTC)
WEBHOOK_ENV = "DIVMON_DEMO_WEBHOOK_URL"


def prefect_defaults(home: Path | None = None) -> None:
    """The settings the project uses for its own runs, unless the user set them."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", str(home or Path.cwd() / ".prefect"))


def synth_frame(
    rng: np.random.Generator,
    n: int,
    start: datetime,
    *,
    shift_sigma: float = 0.0,
    drift_categories: bool = False,
    span: timedelta = timedelta(hours=1),
) -> pa.Table:
    """``n`` rows: ``ts`` spread over ``[start, start + span)``, ``amount`` ~ N(100 + 15 shift,
    15), ``country`` from the reference (or drifted) mix."""
    offsets = np.sort(rng.integers(0, int(span.total_seconds() * 1e6), n))
    base = np.datetime64(start.replace(tzinfo=None), "us")
    ts = pa.array(base + offsets.astype("timedelta64[us]"), type=pa.timestamp("us")).cast(
        pa.timestamp("us", tz="UTC")
    )
    amount = rng.normal(100.0 + 15.0 * shift_sigma, 15.0, n)
    probs = P_DRIFTED if drift_categories else P_REFERENCE
    country = np.array(COUNTRIES)[rng.choice(len(COUNTRIES), size=n, p=probs)]
    return pa.table({"ts": ts, "amount": amount, "country": pa.array(country.tolist())})


def write_reference_data(directory: Path, n: int = 10_000, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "reference.parquet"
    pq.write_table(synth_frame(rng, n, START - timedelta(days=7), span=timedelta(days=7)), path)
    return path


def write_stream_file(
    directory: Path, hour: int, *, n: int = 2_000, drifted: bool, seed: int = 100
) -> Path:
    """One hourly file (hour ``hour`` after START); drifted files shift amount by 0.5 sigma and
    move 5% of the mass from US to JP."""
    rng = np.random.default_rng(seed + hour)
    directory.mkdir(parents=True, exist_ok=True)
    table = synth_frame(
        rng,
        n,
        START + timedelta(hours=hour),
        shift_sigma=0.5 if drifted else 0.0,
        drift_categories=drifted,
    )
    path = directory / f"events-{hour:03d}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_config(
    root: Path, *, dashboard: bool = True, notify_env: str | None = WEBHOOK_ENV, extra: str = ""
) -> Path:
    notify = ""
    if notify_env:
        notify = f"""
[[notify]]
name = "local-webhook"
type = "webhook"
url_env = "{notify_env}"
retries = 1
retry_delay_seconds = 0.2
timeout = 5
"""
    dash = (
        '\n[dashboard]\npath = "dashboard.html"\ntitle = "divtransforms demo"\n'
        if dashboard
        else ""
    )
    text = f"""name = "demo"

[source]
paths = ["landing/*.parquet"]
timestamp_column = "ts"

[reference]
path = "reference/reference.json"
inputs = ["reference-data/*.parquet"]
n_bins = 32

[features]
amount = {{ kind = "numeric", family = "normal" }}
country = {{ kind = "categorical" }}

[window]
size = "1h"

[history]
dir = "history"
{notify}{dash}{extra}"""
    path = root / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output", default="demo-output", help="demo directory (recreated)")
    parser.add_argument("--hours", type=int, default=6, help="hourly files in the stream")
    parser.add_argument("--drift-from", type=int, default=3, help="first drifted hour")
    parser.add_argument("--runs", type=int, default=3, help="scheduled-style check runs")
    parser.add_argument(
        "--outage-run", type=int, default=2, help="run during which the receiver answers 503"
    )
    args = parser.parse_args(argv)
    root = Path(args.output).resolve()
    prefect_defaults()
    t0 = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    write_reference_data(root / "reference-data")
    config_path = write_config(root)
    print(f"[demo] config: {config_path}")

    from flows.cli.server import prefect_api
    from flows.demo.receiver import AlertReceiver

    with AlertReceiver() as receiver, prefect_api():
        os.environ[WEBHOOK_ENV] = receiver.url
        from flows.check import DriftCheckFailed, drift_check
        from flows.reference import build_reference

        ref = build_reference(str(config_path))
        print(f"[demo] reference {ref['reference_id']} built -> {ref['path']}")
        per_run = max(1, -(-args.hours // args.runs))
        hour = 0
        for run in range(1, args.runs + 1):
            arrived = []
            for _ in range(per_run):
                if hour >= args.hours:
                    break
                arrived.append(
                    write_stream_file(root / "landing", hour, drifted=hour >= args.drift_from)
                )
                hour += 1
            receiver.fail_status = 503 if run == args.outage_run else None
            try:
                out = drift_check(str(config_path))
            except DriftCheckFailed as failed:  # the planned outage: the flow run ends Failed
                out = failed.result
            print(run_line(run, len(arrived), out, outage=receiver.fail_status is not None))
        alerts = receiver.alerts()
    return report(root, alerts, time.perf_counter() - t0)


def run_line(run: int, n_files: int, out: dict, *, outage: bool) -> str:
    """One line per check run: what arrived, what was recorded and what became of the alerts."""
    line = (
        f"[demo] run {run}: {n_files} new file(s), {out['records']} records, "
        f"{out['alerts']} new alert(s), {out['delivered']} delivered, {out['failed']} failed"
    )
    if outage:
        return line + " (receiver down: the run ends Failed, the alerts wait in the outbox)"
    if out["delivered"] > out["alerts"]:
        return line + f" ({out['delivered'] - out['alerts']} from the outbox)"
    return line


def report(root: Path, alerts: list[dict], seconds: float) -> int:
    """Prints what the receiver got and where the outputs are; 0 when every alert in the alert
    log reached the receiver exactly once, 1 (with the reason) otherwise."""
    from flows.alerts.outbox import AlertLog

    history = root / "history"
    print(f"[demo] the local receiver got {len(alerts)} alert(s):")
    for a in alerts:
        print(f"         {a.get('severity'):9s} {a.get('feature'):8s} {a.get('window_start')}")
    logged = sorted(e["dedup_key"] for e in AlertLog.open(history).entries)
    received = sorted(a["dedup_key"] for a in alerts)
    print(f"[demo] history:   {history}  (Parquet, partitioned by date)")
    print(f"[demo] alert log: {history / '_alerts.json'}")
    dashboard = root / "dashboard.html"
    if dashboard.exists():
        print(f"[demo] dashboard: {dashboard}")
    if received != logged:
        print(
            f"[demo] FAILED: the alert log holds {len(logged)} alert(s) but the receiver got "
            f"{len(received)} ({len(set(received))} distinct)"
        )
        return 1
    print(f"[demo] each of the {len(logged)} alert(s) was delivered exactly once")
    print(f"[demo] done in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
