"""divtransforms.storage: the same semantics on a local folder, the GCS emulator and moto's S3."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtransforms import storage
from divtransforms.storage import PreconditionFailed, StorageError, StorageNotFound


@pytest.fixture(params=["local", "gs", "s3"])
def base(request, tmp_path):
    """A fresh empty folder: local, or a new bucket on each store."""
    if request.param == "local":
        return tmp_path / "root"
    server = request.getfixturevalue("gcs_server" if request.param == "gs" else "s3_server")
    return server.bucket()


def test_conditional_commits(base):
    path = storage.join(base, "state", "state.json")
    with pytest.raises(StorageNotFound):
        storage.read_versioned(path)
    v1 = storage.write_atomic(path, b"one", if_version=None)  # create only
    with pytest.raises(PreconditionFailed, match="already exists"):
        storage.write_atomic(path, b"other", if_version=None)
    data, info = storage.read_versioned(path)
    assert data == b"one" and info.version == v1 and info.size == 3
    v2 = storage.write_atomic(path, b"two", if_version=v1)  # replace what was read
    assert v2 != v1
    with pytest.raises(PreconditionFailed, match="changed since it was read"):
        storage.write_atomic(path, b"lost update", if_version=v1)
    assert storage.read_bytes(path) == b"two"
    storage.write_atomic(path, b"three")  # unconditional
    with pytest.raises(PreconditionFailed):
        storage.remove(path, if_version=v2)
    storage.remove(path)
    assert not storage.exists(path)
    storage.remove(path)  # missing is fine ...
    with pytest.raises(StorageNotFound):
        storage.remove(path, missing_ok=False)  # ... unless asked


def test_listing_and_glob(base):
    for key in ("in/a.parquet", "in/b.csv", "in/_SUCCESS", "in/sub/c.parquet", "other/d.parquet"):
        storage.write_atomic(storage.join(base, key), b"x")

    def names(infos):
        return [str(i.path).rsplit(str(base).rstrip("/") + "/", 1)[-1] for i in infos]

    assert names(storage.glob(storage.join(base, "in", "*.parquet"))) == ["in/a.parquet"]
    assert names(storage.glob(storage.join(base, "in", "?.*"))) == ["in/a.parquet", "in/b.csv"]
    assert names(storage.glob(storage.join(base, "**", "*.parquet"))) == [
        "in/a.parquet",
        "in/sub/c.parquet",
        "other/d.parquet",
    ]
    assert names(storage.glob(storage.join(base, "in", "[ab].*"))) == ["in/a.parquet", "in/b.csv"]
    assert names(storage.glob(storage.join(base, "in", "b.csv"))) == ["in/b.csv"]
    assert storage.glob(storage.join(base, "in", "nothing.csv")) == []
    assert len(storage.walk(storage.join(base, "in"))) == 4
    assert storage.walk(storage.join(base, "missing")) == []
    assert storage.isdir(storage.join(base, "in")) and not storage.isdir(storage.join(base, "no"))
    assert storage.remove_tree(storage.join(base, "in")) == 4
    assert storage.walk(storage.join(base, "in")) == []


def test_parquet_through_ranged_reads(base):
    table = pa.table({"x": list(range(50_000)), "y": [str(i) for i in range(50_000)]})
    path = storage.join(base, "data", "t.parquet")
    storage.write_atomic(path, lambda fh: pq.write_table(table, fh, row_group_size=10_000))
    with storage.open_read(path) as fh:
        pf = pq.ParquetFile(fh)
        assert pf.num_row_groups == 5
        assert pf.read_row_group(3, columns=["x"]).column("x")[0].as_py() == 30_000
    assert storage.fingerprint(path)[0] == storage.stat(path).size


def test_a_replaced_object_is_never_read_half_old_half_new(object_store):
    path = f"{object_store.bucket()}/f.bin"
    storage.write_atomic(path, b"a" * (3 << 20))
    fh = storage.open_read(path)
    assert fh.read(10) == b"a" * 10
    storage.write_atomic(path, b"b" * (3 << 20))
    with pytest.raises(StorageError, match="replaced while it was being read"):
        fh.read()


def test_errors_name_the_path_in_one_line(object_store, tmp_path):
    missing = f"{object_store.scheme}://no-such-bucket-{id(tmp_path)}"
    for call in (
        lambda: storage.write_atomic(f"{missing}/state.json", b"{}"),
        lambda: storage.glob(f"{missing}/in/*.csv"),
    ):
        with pytest.raises(StorageError) as err:
            call()
        assert "does not exist" in str(err.value) and missing in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(StorageNotFound, match="no-such-bucket"):
        storage.read_bytes(f"{missing}/x")
    with pytest.raises(StorageError, match="unsupported storage scheme hdfs://"):
        storage.location("hdfs://cluster/x")


def test_permission_and_credential_errors_are_one_line_without_secrets():
    from divtransforms.storage import _gcs, _s3

    err = _gcs._error(type("Forbidden", (Exception,), {"code": 403})(), "cannot read", "gs://b/k")
    assert "permission denied" in str(err) and "gs://b/k" in str(err)
    creds = type("DefaultCredentialsError", (Exception,), {})("token=abc secret")
    err = _gcs._error(creds, "cannot read", "gs://b/k")
    assert "credentials" in str(err) and "secret" not in str(err) and "abc" not in str(err)
    denied = type("ClientError", (Exception,), {})()
    denied.response = {
        "Error": {"Code": "AccessDenied"},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }
    err = _s3._error(denied, "cannot write", "s3://b/k")
    assert "permission denied" in str(err) and "\n" not in str(err)


def test_a_write_whose_answer_was_lost_is_recognised(object_store):
    """A conditional write that landed but whose answer was lost is retried by the client and
    refused (the object changed: by us). The layer reads it back and takes it as done."""
    from divtransforms.storage._backends import backend

    path = f"{object_store.bucket()}/state.json"
    v1 = storage.write_atomic(path, b"old", if_version=None)
    v2 = storage.write_atomic(path, b"new", if_version=v1)
    scheme, rest = path.split("://")
    bucket, key = rest.split("/", 1)
    # the retry of the write that produced v2: same bytes, same (now stale) condition
    assert backend(scheme).write(bucket, key, b"new", v1, "application/json") == v2
    with pytest.raises(PreconditionFailed):
        backend(scheme).write(bucket, key, b"other", v1, "application/json")


def test_local_writes_keep_their_behaviour(tmp_path):
    path = tmp_path / "a" / "b.json"
    assert storage.location(str(path)) == path and storage.join(tmp_path, "a", "b.json") == path
    storage.write_atomic(path, lambda fh: fh.write(b"{}"))
    assert path.read_bytes() == b"{}"
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temp file left
    buf = io.BytesIO(b"x")
    assert storage.location(f"file://{path}") == path and buf.read() == b"x"
    assert storage.browser_url(path).startswith("file://")
    assert storage.browser_url("gs://b/k.html") == "https://storage.cloud.google.com/b/k.html"
    assert (
        storage.parent("gs://b/x/y.json") == "gs://b/x" and storage.parent("gs://b/y") == "gs://b"
    )
