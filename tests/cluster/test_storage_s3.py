"""The engine store on a real S3 server (the test bed's MinIO): round trips, the cache's view, GC, ciphertext only."""

from __future__ import annotations

import os
import pathlib
import time
import tracemalloc

import pytest

from kestrel import storage
from kestrel.storage import errors, layout, s3, store
from testbed import minio
from testbed.engines import PLAINTEXT_MARKER
from tests.cluster.storage_fixtures import (
    REF,
    Keys,
    keys,
    minio_connection,
    packed_engine,
    s3_store,
    tree,
)

__all__ = ["keys", "minio_connection", "s3_store"]  # fixtures, imported for pytest to find


def _objects(engines: s3.S3Store, prefix: str = "") -> dict[str, bytes]:
    client = engines._client  # the test reads the bucket behind the store's back, as an attacker would
    bucket = engines.location.container
    found = {}
    for obj in client.list_objects(bucket, prefix=engines.location.prefix + "/" + prefix, recursive=True):
        response = client.get_object(bucket, obj.object_name)
        try:
            found[obj.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return found


def test_round_trip_through_minio_and_exists_only_after_the_manifest(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    packed = packed_engine(tmp_path / "build", keys)
    assert not s3_store.exists(REF)
    sent = s3_store.upload(packed, REF)
    assert s3_store.exists(REF)
    got = s3_store.download(REF, tmp_path / "fetched")
    assert tree(tmp_path / "fetched") == tree(packed)
    assert sent == got
    assert [(e.key, e.complete) for e in s3_store.list_engines(REF.namespace, REF.name)] == [(REF.key, True)]

    # Without its manifest (an interrupted upload) the engine is not there, and is not downloadable.
    client = s3_store._client
    client.remove_object(s3_store.location.container, f"{s3_store.location.prefix}/{REF.path}/manifest.json")
    assert not s3_store.exists(REF)
    assert [(e.key, e.complete) for e in s3_store.list_engines(REF.namespace, REF.name)] == [(REF.key, False)]
    with pytest.raises(errors.EngineNotFoundError):
        s3_store.download(REF, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_reupload_leaves_exactly_the_new_artifact(s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path) -> None:
    first = packed_engine(tmp_path / "one", keys, weights_size=4096)
    (first / "files" / "stale.bin").write_bytes(b"stale")  # not in the manifest, but uploaded
    s3_store.upload(first, REF)
    second = packed_engine(tmp_path / "two", keys, weights_size=8192)
    s3_store.upload(second, REF)
    names = {name.split(f"{REF.path}/", 1)[1] for name in _objects(s3_store, REF.path)}
    assert names == set(tree(second))


def test_garbage_collection_keeps_what_revisions_reference(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    refs = [layout.EngineRef(REF.namespace, REF.name, key) for key in ("aa", "bb", "cc", "dd")]
    for ref in refs:
        s3_store.upload(packed_engine(tmp_path / ref.key, keys, ref, weights_size=1024), ref)
    neighbour = layout.EngineRef(REF.namespace, "other", "aa")
    s3_store.upload(packed_engine(tmp_path / "neighbour", keys, neighbour, weights_size=1024), neighbour)

    assert s3_store.collect_garbage(REF.namespace, REF.name, {"bb", "dd"}) == ["aa", "cc"]
    assert [e.key for e in s3_store.list_engines(REF.namespace, REF.name)] == ["bb", "dd"]
    assert not any("/aa/" in name or "/cc/" in name for name in _objects(s3_store, f"{REF.namespace}/{REF.name}/"))
    assert s3_store.exists(neighbour)
    assert s3_store.collect_garbage(REF.namespace, REF.name, {"bb", "dd"}) == []


def test_the_bucket_holds_only_ciphertext(s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path) -> None:
    packed = packed_engine(tmp_path / "build", keys)
    plaintext = tree(tmp_path / "build" / "repository")
    assert sum(data.count(PLAINTEXT_MARKER) for data in plaintext.values()) == 4  # the scan has something to find
    s3_store.upload(packed, REF)
    stored = _objects(s3_store)
    assert len(stored) == len(plaintext) + 1
    for name, data in stored.items():
        assert PLAINTEXT_MARKER not in data, name
        assert PLAINTEXT_MARKER[:16] not in data, name
        for original in plaintext.values():
            assert original[:64] not in data, name


def test_credentials_come_from_a_mounted_secret_and_never_appear_in_errors(
    minio_connection: minio.Connection, tmp_path: pathlib.Path
) -> None:
    secret = minio_connection.write_secret_dir(tmp_path / "secret")
    engines = storage.open_store(f"s3://{minio_connection.bucket}/creds", credentials_dir=secret, environ={})
    assert not engines.exists(REF)
    wrong = tmp_path / "wrong"
    minio.Connection(
        minio_connection.endpoint, minio_connection.access_key, "not-the-secret-key-0123456789", "engines"
    ).write_secret_dir(wrong)
    denied = storage.open_store(f"s3://{minio_connection.bucket}/creds", credentials_dir=wrong, environ={})
    with pytest.raises(errors.StoreAccessError) as refused:
        denied.exists(REF)
    for value in (minio_connection.access_key, minio_connection.secret_key, "not-the-secret-key-0123456789"):
        assert value not in str(refused.value)
        assert value not in repr(s3.Credentials.load(wrong, {}))
    with pytest.raises(errors.StoreConfigError, match="AWS_SECRET_ACCESS_KEY"):
        storage.open_store("s3://engines/x", environ={"AWS_ACCESS_KEY_ID": "only-half"})


def test_the_test_beds_minio_stops_with_its_data() -> None:
    server = minio.MinioServer(bucket="scratch")
    server.start()
    assert server.process is not None
    pid, root = server.process.pid, server.root
    server.stop()
    assert not pathlib.Path(f"/proc/{pid}").exists()
    assert not root.exists()


def test_an_unreachable_store_is_a_transient_error(minio_connection: minio.Connection) -> None:
    environment = {**minio_connection.environment(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    engines = storage.open_store("s3://engines/x", environ=environment)
    started = time.monotonic()
    with pytest.raises(errors.StoreUnavailableError):
        engines.exists(REF)
    assert time.monotonic() - started < 60


def test_memory_stays_at_one_part_whatever_the_engine_size(
    minio_connection: minio.Connection, tmp_path: pathlib.Path
) -> None:
    part = 5 << 20  # S3's smallest part: a 24 MiB file takes five
    engines = s3.S3Store(
        layout.parse_store_uri(f"s3://{minio_connection.bucket}/memory"),
        s3.Credentials.load(None, minio_connection.environment()),
        part_size=part,
    )
    source = tmp_path / "artifact"
    (source / "files").mkdir(parents=True)
    with (source / "files" / "model.plan").open("wb") as writer:
        for _ in range(24):
            writer.write(os.urandom(1 << 20))
    (source / "manifest.json").write_bytes(b"{}")
    tracemalloc.start()
    try:
        engines.upload(source, REF)
        uploaded_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        engines.download(REF, tmp_path / "fetched")
        downloaded_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tree(tmp_path / "fetched") == tree(source)
    assert uploaded_peak < 3 * part, uploaded_peak
    assert downloaded_peak < 4 * store.COPY_BLOCK, downloaded_peak


@pytest.mark.slow
def test_throughput_of_a_multipart_engine(s3_store: s3.S3Store, tmp_path: pathlib.Path) -> None:
    """A 64 MiB artifact crosses several 16 MiB parts; prints MB/s for the report, asserts only correctness."""
    source = tmp_path / "artifact"
    (source / "files").mkdir(parents=True)
    (source / "files" / "model.plan").write_bytes(bytes(64 << 20))
    (source / "manifest.json").write_bytes(b"{}")
    started = time.monotonic()
    s3_store.upload(source, REF)
    uploaded = time.monotonic() - started
    started = time.monotonic()
    got = s3_store.download(REF, tmp_path / "fetched")
    downloaded = time.monotonic() - started
    assert got == store.Transfer(2, (64 << 20) + 2)
    assert (tmp_path / "fetched" / "files" / "model.plan").stat().st_size == 64 << 20
    mib = (64 << 20) / (1 << 20)
    print(f"upload {mib / uploaded:.0f} MiB/s, download {mib / downloaded:.0f} MiB/s")
