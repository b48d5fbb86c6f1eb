"""Real servers for the monitoring-stack tests, started on 127.0.0.1 with free ports.

PostgreSQL (a throwaway cluster in a temp folder, run as the dedicated non-root user
``divtransforms-test``: PostgreSQL refuses to run as root), Prometheus, the Pushgateway and
Alertmanager (Debian's packages; ``.ci/run`` installs them). Without a tool the tests skip locally
and fail under ``CI=true``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli.server import free_port

PG_USER = "divtransforms-test"


def need(*candidates: str) -> str:
    """The first of ``candidates`` found (on PATH or as a path); skip (fail under CI) otherwise."""
    for c in candidates:
        found = shutil.which(c) if "/" not in c else (c if os.access(c, os.X_OK) else None)
        if found:
            return found
    msg = f"{candidates[0]} is not installed (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, workdir: Path):
        self.proc, self.url, self.workdir = proc, url, workdir


def start_server(args: list[str], health: str, workdir: Path, log_name: str) -> Server:
    log = open(workdir / log_name, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()
    base = health.rsplit("/-/", 1)[0] if "/-/" in health else health
    try:
        wait_http(health, proc)
    except BaseException:
        stop(proc)
        raise
    return Server(proc, base, workdir)


@pytest.fixture()
def pushgateway(tmp_path: Path) -> Iterator[Server]:
    exe = need("prometheus-pushgateway", "pushgateway")
    port = free_port()
    server = start_server(
        [exe, f"--web.listen-address=127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/-/ready",
        tmp_path,
        "pushgateway.log",
    )
    yield server
    stop(server.proc)


@pytest.fixture()
def alertmanager(tmp_path: Path) -> Iterator[Server]:
    exe = need("prometheus-alertmanager", "alertmanager")
    port = free_port()
    (tmp_path / "alertmanager.yml").write_text(
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n"
    )
    (tmp_path / "am-data").mkdir()
    server = start_server(
        [
            exe,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        f"http://127.0.0.1:{port}/-/ready",
        tmp_path,
        "alertmanager.log",
    )
    yield server
    stop(server.proc)


def start_prometheus(workdir: Path, scrape_targets: list[str], interval: str = "1s") -> Server:
    exe = need("prometheus")
    port = free_port()
    targets = ", ".join(f'"{t}"' for t in scrape_targets)
    (workdir / "prometheus.yml").write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: divmon\n"
        f"    static_configs:\n      - targets: [{targets}]\n"
    )
    (workdir / "prom-data").mkdir(exist_ok=True)
    return start_server(
        [
            exe,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        f"http://127.0.0.1:{port}/-/ready",
        workdir,
        "prometheus.log",
    )


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return need(*(found[-1:] or []), name)


def _pg_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        if os.geteuid() != 0:
            pytest.skip(f"no user {PG_USER} and not root to create it")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
        )
        pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


@pytest.fixture()
def postgres_url(postgres_cluster: str) -> str:
    """A new, empty database in the session's PostgreSQL cluster (SQLAlchemy URL)."""
    import uuid

    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{postgres_cluster}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{postgres_cluster}/{name}"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (temp folder, non-root user); yields its base URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="divtransforms-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        uid, gid = _pg_user()
        os.chown(root, uid, gid)
        run_as = ["runuser", "-u", PG_USER, "--"]
    data, port = root / "data", free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "divtransforms", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        env=env,
    )
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "start"],
        check=True,
        capture_output=True,
        env=env,
    )
    try:
        yield f"postgresql+psycopg://divtransforms@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            env=env,
        )
        shutil.rmtree(root, ignore_errors=True)
