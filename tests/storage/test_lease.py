"""The bucket run lock (flows.monitor.lease.LeaseRunLock) on a real storage API: the GCS emulator
and moto's S3 server. Several processes contend for one lease; one of them dies holding it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from divtransforms import storage
from flows.monitor.lease import LeaseLost, LeaseRunLock
from flows.monitor.state import LockHeld, StateStore

ROOT = Path(__file__).resolve().parents[2]


def test_acquire_release_and_the_holder_named(object_store):
    path = f"{object_store.bucket()}/state/run.lock"
    a, b = LeaseRunLock(path, ttl=30), LeaseRunLock(path, ttl=30)
    a.acquire("run A")
    with pytest.raises(LockHeld, match=r"another run holds the run lock .*run A, pid \d+"):
        b.acquire("run B")
    a.check()
    a.release()
    assert json.loads(storage.read_bytes(path))["released"] is True
    b.acquire("run B")  # a released lease is taken at once
    assert json.loads(storage.read_bytes(path))["owner"] == "run B"
    b.release()
    a.release()  # not holding: nothing happens


def test_renewal_keeps_it_and_expiry_hands_it_over(object_store):
    path = f"{object_store.bucket()}/run.lock"
    holder = LeaseRunLock(path, ttl=2, renew_every=0.3)
    holder.acquire("long run")
    time.sleep(3)  # longer than the ttl: renewals keep it
    with pytest.raises(LockHeld):
        LeaseRunLock(path, ttl=2).acquire("other")
    holder.check()
    # the holder stalls (its renewals stop, as in a frozen process) ...
    holder._stop.set()
    holder._thread.join()
    time.sleep(2.5)
    with pytest.raises(LeaseLost, match="not renewed"):
        holder.check()  # ... and knows it before anyone could take over
    taker = LeaseRunLock(path, ttl=2)
    taker.acquire("next run")
    holder._stop.clear()
    holder.release()  # a stale owner's release cannot touch the new lease
    assert json.loads(storage.read_bytes(path))["owner"] == "next run"
    taker.check()
    taker.release()


def test_a_takeover_is_seen_by_the_old_holder(object_store):
    path = f"{object_store.bucket()}/run.lock"
    holder = LeaseRunLock(path, ttl=1.5, renew_every=0.2)
    holder.acquire("slow run")
    # another host takes the lease over (as after an expiry it did not see in time)
    raw, info = storage.read_versioned(path)
    doc = {**json.loads(raw), "owner": "thief", "token": "x", "renewed_at": "now"}
    storage.write_atomic(path, json.dumps(doc).encode(), if_version=info.version)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            holder.check()
        except LeaseLost as exc:
            assert "took it over" in str(exc)
            break
        time.sleep(0.1)
    else:
        pytest.fail("the old holder never noticed the takeover")
    holder.release()
    assert json.loads(storage.read_bytes(path))["owner"] == "thief"


def test_state_commit_refused_after_the_lease_is_lost(object_store, tmp_path):
    state_dir = f"{object_store.bucket()}/state"
    store = StateStore(state_dir, lease_seconds=1)
    store.acquire("run")
    state = store.load()
    store.save(state)
    store.lock._stop.set()  # stalls
    store.lock._thread.join()
    time.sleep(1.2)
    with pytest.raises(LeaseLost):
        store.save(state)
    store.lock._stop.clear()
    store.release()


WORKER = r"""
import json, os, random, sys, time
from divtransforms import storage
from flows.monitor.lease import LeaseRunLock
from flows.monitor.state import LockHeld

lock_path, base = sys.argv[1], sys.argv[2]
worker, rounds, crash = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
rng = random.Random(worker)
done = 0
while done < rounds:
    # ttl: a loaded 2-core machine can stall a process for over 2 s (LeaseLost, correctly)
    lock = LeaseRunLock(lock_path, ttl=6.0, renew_every=0.5)
    try:
        lock.acquire(f"worker {worker}")
    except LockHeld:
        time.sleep(rng.uniform(0.02, 0.15))
        continue
    if crash:  # dies holding the lease: the others must wait for its expiry, then one takes it
        os._exit(0)
    # the critical section: an unconditional read-modify-write that mutual exclusion protects
    holder = f"{base}/holder"
    seen = storage.read_bytes(holder) if storage.exists(holder) else b""
    assert seen in (b"", b"free"), f"worker {worker} entered while {seen!r} was inside"
    storage.write_atomic(holder, str(worker).encode())
    count = int(storage.read_bytes(f"{base}/counter")) if storage.exists(f"{base}/counter") else 0
    time.sleep(rng.uniform(0.0, 0.05))
    storage.write_atomic(f"{base}/counter", str(count + 1).encode())
    assert storage.read_bytes(holder) == str(worker).encode(), "another worker got in"
    storage.write_atomic(holder, b"free")
    lock.check()
    lock.release()
    done += 1
print("OK", worker)
"""


@pytest.mark.slow
def test_processes_contending_for_one_lease(object_store, tmp_path):
    """4 processes x 5 critical sections each, plus one that dies holding the lease: the
    unprotected counter ends exact (no two holders ever overlapped) and the dead holder's lease
    is taken over once (by exactly one of the waiting processes)."""
    bucket = object_store.bucket()
    lock_path, base = f"{bucket}/state/run.lock", f"{bucket}/cs"
    env = {**__import__("os").environ, **object_store.env}
    crasher = subprocess.run(
        [sys.executable, "-c", WORKER, lock_path, base, "99", "1", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crasher.returncode == 0, crasher.stderr[-2000:]
    assert json.loads(storage.read_bytes(lock_path))["owner"] == "worker 99"
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, lock_path, base, str(w), "5", "0"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("OK")
    assert int(storage.read_bytes(f"{base}/counter")) == 20
    takeovers = sum(err.count("took over the expired run lease") for _, err in outs)
    assert takeovers == 1, [err for _, err in outs]
    print(
        f"lease stress ({object_store.scheme}): 21 acquisitions, 1 takeover, "
        f"{time.monotonic() - t0:.1f} s"
    )
    assert json.loads(storage.read_bytes(lock_path))["released"] is True
