"""Errors are one line without a traceback: bad input for ``divmon check`` and ``divmon reference
build`` (Beam's own error logging summarised), and read-only or full disks (a tmpfs mounted by
the test, as root) for ``divmon check`` and the monitor, which keeps a valid state."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from flows.config import load_config
from flows.demo import run as demo
from flows.monitor.history import read_history
from flows.monitor.run import run_monitor
from flows.monitor.state import StateStore

pytestmark = [pytest.mark.beam]


def _divmon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad-input")
    demo.write_reference_data(d / "refdata", n=2_000)
    table = pq.read_table(next(iter(sorted((d / "refdata").glob("*.parquet")))))
    pcsv.write_csv(table.select(["amount", "country"]), d / "good.csv")
    out = _divmon(
        "reference", "build", "-i", "refdata/*.parquet", "-o", "ref.json",
        "--features", "amount,country", cwd=d,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (d / "empty.csv").write_bytes(b"")
    (d / "empty.jsonl").write_bytes(b"")
    (d / "ragged.csv").write_text("amount,country\n1,DE\n2\n3,FR,x\n")
    (d / "broken.jsonl").write_text('{"amount": 1, "country": "DE"}\n{"amount":\n')
    (d / "long.csv").write_text("amount,country\n1,DE\n" + "9" * (50 << 20) + ",FR\n")
    rng = random.Random(5)
    good = pa.table(
        {
            "amount": [rng.gauss(0, 1) for _ in range(20_000)],
            "country": [rng.choice("ABCDE") for _ in range(20_000)],
        }
    )
    pq.write_table(good, d / "good.parquet", compression="snappy")
    data = (d / "good.parquet").read_bytes()
    noise = bytes(random.Random(3).randrange(256) for _ in range(400))
    (d / "corrupt.parquet").write_bytes(data[:8] + noise + data[408:])
    return d


CASES = {
    "empty.csv": "empty.csv: the file is empty (0 bytes)",
    "empty.jsonl": "empty.jsonl: the file is empty (0 bytes)",
    "ragged.csv": "ragged.csv: cannot read CSV (CSV parse error: Expected 2 columns, got 1",
    "broken.jsonl": "broken.jsonl: line 2 is not JSON",
    "long.csv": "long.csv: cannot read CSV (a row is longer than the reader's 4 MiB block)",
    "corrupt.parquet": "corrupt.parquet: corrupt Parquet data in row groups [0]",
}


def _error_lines(stderr: str) -> list[str]:
    """stderr without the INFO/WARNING log lines."""
    return [
        line for line in stderr.splitlines() if " INFO " not in line and " WARNING " not in line
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_input_errors_are_one_line(workdir: Path, name: str):
    out = _divmon("check", "-r", "ref.json", "-i", name, cwd=workdir)
    assert out.returncode == 2, out.stderr
    lines = _error_lines(out.stderr)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("divmon check: error: ") and CASES[name] in lines[0]
    assert "Traceback" not in out.stderr


def test_reference_build_input_error_is_one_line(workdir: Path):
    out = _divmon("reference", "build", "-i", "ragged.csv", "-o", "r2.json", cwd=workdir)
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert line.startswith("divmon reference: error: ragged.csv: cannot read CSV")
    verbose = _divmon("-v", "reference", "build", "-i", "ragged.csv", "-o", "r2.json", cwd=workdir)
    assert "Traceback" in verbose.stderr  # -v still shows everything


# ------------------------------------------------------------------ read-only and full disks


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """A 16 MiB tmpfs mounted for the test (needs root; under CI it must not skip)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk fault tests need root to mount a tmpfs")
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _remount(mnt: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True)


def _fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    block = b"\0" * 4096
    try:
        while True:
            os.write(fd, block)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_check_output_on_a_full_or_read_only_disk_names_the_file(workdir: Path, tmpfs: Path):
    _fill(tmpfs)
    out = _divmon(
        "check", "-r", "ref.json", "-i", "good.csv", "-o", str(tmpfs / "out"), cwd=workdir
    )
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert "No space left on device" in line and str(tmpfs) in line, line
    (tmpfs / "filler").unlink()
    _remount(tmpfs, "ro")
    out = _divmon(
        "check", "-r", "ref.json", "-i", "good.csv", "-o", str(tmpfs / "out"), cwd=workdir
    )
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert "Read-only file system" in line and str(tmpfs) in line, line


def _monitor_on(mnt: Path, tmp_path: Path) -> Path:
    root = mnt / "monitor"
    demo.write_reference_data(tmp_path / "reference-data", n=2_000)
    root.mkdir()
    shutil.copytree(tmp_path / "reference-data", root / "reference-data")
    demo.write_config(root, dashboard=False, notify_env=None)
    from flows.reference import build_reference_version

    build_reference_version(load_config(root / "monitor.toml"))
    for h in range(2):
        demo.write_stream_file(root / "landing", h, n=300, drifted=h == 1)
    return root


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_monitor_on_a_bad_disk_fails_cleanly_and_recovers(tmp_path: Path, tmpfs: Path, fault):
    from pipelines.errors import one_line

    root = _monitor_on(tmpfs, tmp_path)
    config = load_config(root / "monitor.toml")
    if fault == "full":
        filler = _fill(tmpfs)
    else:
        _remount(tmpfs, "ro")
    with pytest.raises(OSError) as info:
        run_monitor(config)
    line = one_line(info.value)
    assert str(root) in line and ("No space left" in line or "Read-only" in line), line
    if fault == "full":
        filler.unlink()
    else:
        _remount(tmpfs, "rw")
    summary = run_monitor(config)  # the state left behind is valid; nothing lost or doubled
    assert summary.ok and summary.n_rows_read == 600
    assert read_history(root / "history").num_rows == 4
    state = StateStore(config.state_dir, root=root).load()
    assert state.pending is None and len(state.ledger) == 2
    assert list((root / "history").rglob("*.tmp")) == []


def test_check_reads_a_semicolon_csv_and_names_the_file_when_the_dialect_is_wrong(workdir: Path):
    """Issue 26: ``feature 'ts' is not a column of the input (columns: ts;amount;country)``,
    without the file, was all a semicolon CSV got. The delimiter is now sniffed (and logged)
    when not given, set with --csv-delimiter, and a wrong one's error names the file."""
    table = pq.read_table(next(iter(sorted((workdir / "refdata").glob("*.parquet")))))
    lines = ["ts;amount;country"] + [
        f"{r['ts'].isoformat()};{r['amount']};{r['country']}"
        for r in table.slice(0, 500).to_pylist()
    ]
    (workdir / "semi.csv").write_text("\n".join(lines) + "\n", encoding="latin-1")
    args = ("check", "-r", "ref.json", "-i", "semi.csv", "--window", "1h", "--timestamp-column")
    out = _divmon(*args, "ts", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert "semi.csv: CSV delimiter ';' (sniffed from the first KiB" in out.stderr
    wrong = _divmon(*args, "ts", "--csv-delimiter", "|", "--csv-encoding", "latin-1", cwd=workdir)
    assert wrong.returncode == 2
    (line,) = _error_lines(wrong.stderr)
    want = "semi.csv: feature 'ts' is not a column of the input (columns: ts;amount;country)"
    assert line.startswith(f"divmon check: error: {want}; is the CSV delimiter right?"), line


def test_check_counts_rows_beyond_the_horizon_and_fails_a_file_of_only_those(workdir: Path):
    """``divmon check``: rows dated 2286 (epoch ms of 1e13) are in no window, counted and
    named; a file of nothing else is an error naming it."""
    table = pq.read_table(next(iter(sorted((workdir / "refdata").glob("*.parquet")))))
    rows = table.slice(0, 300).to_pylist()
    lines = ["ts,amount,country"] + [
        f"{int(r['ts'].timestamp() * 1000) if i < 290 else 10**13 + i},{r['amount']},{r['country']}"
        for i, r in enumerate(rows)
    ]
    (workdir / "ms.csv").write_text("\n".join(lines) + "\n")
    (workdir / "only-2286.csv").write_text("\n".join(lines[:1] + lines[-10:]) + "\n")
    args = ("check", "-r", "ref.json", "--window", "1h", "--timestamp-column", "ts")
    out = _divmon(*args, "-i", "ms.csv", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert "10 row(s) had an event time outside the plausibility horizon" in out.stdout
    assert "ms.csv: timestamp column 'ts': 10 row(s) with an implausible event time" in out.stderr
    bad = _divmon(*args, "-i", "only-2286.csv", cwd=workdir)
    assert bad.returncode == 2
    (line,) = _error_lines(bad.stderr)
    assert line.startswith("divmon check: error: only-2286.csv: all 10 row(s) have an event time")
