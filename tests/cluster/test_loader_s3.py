"""`kestrel load` and `kestrel keys rotate` against the test bed's MinIO, through the command line a pod runs."""

from __future__ import annotations

import io
import pathlib

import pytest

from kestrel import cli, loader
from kestrel.storage import s3
from testbed import minio
from tests.cluster.storage_fixtures import REF, Keys, keys, minio_connection, packed_engine, s3_store, tree

__all__ = ["keys", "minio_connection", "s3_store"]  # fixtures, imported for pytest to find


@pytest.fixture
def secret(minio_connection: minio.Connection, tmp_path: pathlib.Path) -> pathlib.Path:
    return minio_connection.write_secret_dir(tmp_path / "s3-secret")


@pytest.fixture
def engine_uri(s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path) -> str:
    s3_store.upload(packed_engine(tmp_path / "build", keys), REF)
    return s3_store.location.engine_uri(REF)


def _load(uri: str, target: pathlib.Path, secret: pathlib.Path, *keks: pathlib.Path, verify: pathlib.Path) -> int:
    argv = ["load", f"--from={uri}", f"--to={target}", f"--credentials-dir={secret}", f"--verify-key-file={verify}"]
    return cli.main(argv + [f"--kek-file={kek}" for kek in keks])


def _objects(engines: s3.S3Store) -> dict[str, bytes]:
    client, bucket = engines._client, engines.location.container
    found = {}
    for obj in client.list_objects(bucket, prefix=engines.location.prefix + "/", recursive=True):
        response = client.get_object(bucket, obj.object_name)
        try:
            found[obj.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return found


def _overwrite(engines: s3.S3Store, name: str, data: bytes) -> None:
    engines._client.put_object(engines.location.container, name, io.BytesIO(data), len(data))


def test_load_from_minio_into_the_target(
    engine_uri: str, secret: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    target = tmp_path / "models" / "repo"
    assert _load(engine_uri, target, secret, files["kek"], verify=files["verify-key"]) == loader.EXIT_OK
    assert tree(target) == tree(tmp_path / "build" / "repository")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_objects_are_refused_and_nothing_is_loaded(
    engine_uri: str, s3_store: s3.S3Store, secret: pathlib.Path, keys: Keys, tmp_path: pathlib.Path, damage: str
) -> None:
    name, data = next((n, d) for n, d in _objects(s3_store).items() if n.endswith("model.onnx"))
    if damage == "flip":
        changed = bytearray(data)
        changed[len(changed) // 3] ^= 0x80
        _overwrite(s3_store, name, bytes(changed))
    else:
        _overwrite(s3_store, name, data[: len(data) - 100])
    files = keys.write(tmp_path / "keys")
    target = tmp_path / "models" / "repo"
    target.mkdir(parents=True)
    assert _load(engine_uri, target, secret, files["kek"], verify=files["verify-key"]) == loader.EXIT_INTEGRITY
    assert list(target.parent.iterdir()) == [target]
    assert list(target.iterdir()) == []


def test_rotation_in_the_bucket_rewraps_and_keeps_ciphertext_byte_identical(
    engine_uri: str, s3_store: s3.S3Store, secret: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    before = _objects(s3_store)
    argv = ["keys", "rotate", f"--store={s3_store.location.uri}", "--namespace=vision", "--name=cams"]
    argv += [f"--old-kek-file={files['kek']}", f"--new-kek-file={files['new-kek']}"]
    argv += [f"--signing-key-file={files['signing-key']}", f"--credentials-dir={secret}"]
    assert cli.main(argv) == loader.EXIT_OK
    after = _objects(s3_store)
    assert after.keys() == before.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {f"{s3_store.location.prefix}/{REF.path}/manifest.json"}

    assert _load(engine_uri, tmp_path / "old", secret, files["kek"], verify=files["verify-key"]) == 3
    assert _load(engine_uri, tmp_path / "new", secret, files["new-kek"], verify=files["verify-key"]) == 0
    assert tree(tmp_path / "new") == tree(tmp_path / "build" / "repository")
    assert cli.main(argv) == loader.EXIT_OK  # idempotent
    assert _objects(s3_store) == after
