"""`kestrel load` and `kestrel keys rotate` against a pvc:// store: whole engines load, damaged ones load nothing."""

from __future__ import annotations

import base64
import json
import os
import pathlib

import pytest

from kestrel import cli, loader
from kestrel.api import errors as api_errors
from kestrel.engine import rewrap
from kestrel.security import keyfiles, kms, x25519
from kestrel.security import manifest as manifests
from kestrel.storage import errors, layout, pvc
from tests.cluster.storage_fixtures import REF, Keys, packed_engine, tree

STORE_URI = "pvc://engines/kestrel"


@pytest.fixture
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)  # the claim's mount point
    return tmp_path / "mnt"


@pytest.fixture
def stored(tmp_path: pathlib.Path, mount: pathlib.Path, keys: Keys) -> pvc.PvcStore:
    engines = pvc.PvcStore(layout.parse_store_uri(STORE_URI), mount)
    engines.upload(packed_engine(tmp_path / "build", keys, weights_size=1 << 20), REF)
    return engines


def _engine_dir(engines: pvc.PvcStore, ref: layout.EngineRef = REF) -> pathlib.Path:
    return engines.root / ref.namespace / ref.name / ref.key


def _load(
    mount: pathlib.Path, target: pathlib.Path, *kek_files: pathlib.Path, verify: pathlib.Path, **extra: str
) -> int:
    argv = ["load", f"--from={STORE_URI}/{REF.path}", f"--to={target}", f"--pvc-root={mount}"]
    argv += [f"--kek-file={path}" for path in kek_files] + [f"--verify-key-file={verify}"]
    argv += [f"--{option.replace('_', '-')}={value}" for option, value in extra.items()]
    return cli.main(argv)


def test_load_decrypts_the_engine_into_the_target(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    manifest = loader.load(
        f"{STORE_URI}/{REF.path}",
        tmp_path / "models" / "repo",
        kek_provider=keys.kek,
        verify_key=keys.verify_key,
        pvc_root=mount,
        scratch_root=scratch,
    )
    assert manifest.artifact_id == REF.path
    assert tree(tmp_path / "models" / "repo") == tree(tmp_path / "build" / "repository")
    assert list(scratch.iterdir()) == []  # the ciphertext copy is gone


def test_cli_load_reads_mounted_key_files(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    target = tmp_path / "models" / "repo"
    target.mkdir(parents=True)  # an existing empty folder is fine
    assert _load(mount, target, files["kek"], verify=files["verify-key"]) == loader.EXIT_OK
    assert tree(target) == tree(tmp_path / "build" / "repository")


def _flip_a_byte(engines: pvc.PvcStore) -> None:
    path = _engine_dir(engines) / "files" / "yolo" / "1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(engines: pvc.PvcStore) -> None:
    path = _engine_dir(engines) / "files" / "yolo" / "1" / "model.onnx"
    os.truncate(path, path.stat().st_size - 17)


def _add_a_file(engines: pvc.PvcStore) -> None:
    (_engine_dir(engines) / "files" / "yolo" / "1" / "extra.so").write_bytes(b"\x7fELF")


def _resign_with_another_key(engines: pvc.PvcStore) -> None:
    body = json.loads(engines.read_manifest(REF))["manifest"]
    engines.replace_manifest(REF, manifests.sign(manifests.Manifest.model_validate(body), Keys.generate().signing_key))


@pytest.mark.parametrize(
    "damage", [_flip_a_byte, _truncate, _add_a_file, _resign_with_another_key], ids=lambda f: f.__name__.strip("_")
)
def test_damaged_engines_are_refused_and_the_target_stays_empty(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path, damage: object
) -> None:
    assert callable(damage)
    damage(stored)
    files = keys.write(tmp_path / "keys")
    models = tmp_path / "models"
    target = models / "repo"
    target.mkdir(parents=True)
    assert _load(mount, target, files["kek"], verify=files["verify-key"]) == loader.EXIT_INTEGRITY
    assert list(models.iterdir()) == [target]  # no staging folder left beside it
    assert list(target.iterdir()) == []


def test_a_wrong_kek_or_a_substituted_engine_is_refused(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    target = tmp_path / "models" / "repo"
    assert _load(mount, target, files["new-kek"], verify=files["verify-key"]) == loader.EXIT_INTEGRITY
    assert not target.exists()
    # A validly signed older engine of the same ModelDeployment, put where the current one should be.
    older = layout.EngineRef(REF.namespace, REF.name, "older")
    stored.upload(packed_engine(tmp_path / "older", keys, older, weights_size=4096), REF)
    with pytest.raises(api_errors.IntegrityError, match="not the expected"):
        loader.load(
            f"{STORE_URI}/{REF.path}", target, kek_provider=keys.kek, verify_key=keys.verify_key, pvc_root=mount
        )
    assert not target.exists()


def test_bad_input_and_a_missing_engine_have_their_own_exit_codes(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_bytes(b"x")
    assert _load(mount, busy, files["kek"], verify=files["verify-key"]) == loader.EXIT_BAD_INPUT
    short = tmp_path / "short-kek"
    short.write_bytes(b"too short")
    assert _load(mount, tmp_path / "t1", short, verify=files["verify-key"]) == loader.EXIT_BAD_INPUT
    assert _load(mount, tmp_path / "t2", files["kek"], verify=files["kek"]) == loader.EXIT_BAD_INPUT
    stored.delete_engine(REF)
    assert _load(mount, tmp_path / "t3", files["kek"], verify=files["verify-key"]) == loader.EXIT_STORE
    with pytest.raises(errors.EngineNotFoundError):
        loader.load(
            f"{STORE_URI}/{REF.path}",
            tmp_path / "t4",
            kek_provider=keys.kek,
            verify_key=keys.verify_key,
            pvc_root=mount,
        )


def test_key_files_may_be_raw_hex_or_base64(tmp_path: pathlib.Path) -> None:
    key = bytes(range(32))
    expected = x25519.PrivateKek(key).key_id, kms.LocalKek(key).key_id
    for name, data in (("raw", key), ("hex", key.hex().encode() + b"\n"), ("b64", base64.b64encode(key) + b"\n")):
        (tmp_path / name).write_bytes(data)
        read = keyfiles.read_kek(tmp_path / name)
        assert (read.key_id, read.legacy.key_id) == expected
    (tmp_path / "bad").write_bytes(b"0" * 63)
    with pytest.raises(keyfiles.KeyFileError) as refused:
        keyfiles.read_kek(tmp_path / "bad")
    assert "0" * 8 not in str(refused.value)  # the message never repeats the file's content


def test_rotation_rewraps_without_touching_ciphertext(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, tmp_path: pathlib.Path
) -> None:
    files = keys.write(tmp_path / "keys")
    ciphertext = tree(_engine_dir(stored) / "files")
    argv = ["keys", "rotate", f"--store={STORE_URI}", "--namespace=vision", "--name=cams", f"--pvc-root={mount}"]
    argv += [f"--old-kek-file={files['kek']}", f"--new-kek-file={files['new-kek']}"]
    argv += [f"--signing-key-file={files['signing-key']}"]
    assert cli.main(argv) == loader.EXIT_OK
    assert tree(_engine_dir(stored) / "files") == ciphertext

    # Loaders holding only the old KEK now fail; the new one, or both (a rolling rotation), load.
    assert _load(mount, tmp_path / "old", files["kek"], verify=files["verify-key"]) == loader.EXIT_INTEGRITY
    assert _load(mount, tmp_path / "new", files["new-kek"], verify=files["verify-key"]) == loader.EXIT_OK
    assert _load(mount, tmp_path / "both", files["new-kek"], files["kek"], verify=files["verify-key"]) == 0
    assert tree(tmp_path / "new") == tree(tmp_path / "build" / "repository")

    # Idempotent: a second run changes nothing.
    manifest = stored.read_manifest(REF)
    new = x25519.PrivateKek(keys.new_kek_bytes)  # what `keys rotate` made of the new key file
    again = rewrap.rotate(stored, "vision", "cams", keys.kek, new, signing_key=keys.signing_key)
    assert [(r.key, r.changed) for r in again] == [(REF.key, False)]
    assert stored.read_manifest(REF) == manifest
