"""`kestrel load` and `kestrel keys rotate` with signed plaintext engines in a pvc:// store: no KEK needed to load,
nothing loaded when damaged, and refused outright where the spec requires encryption."""

from __future__ import annotations

import pathlib

import pytest

from kestrel import cli, loader
from kestrel.engine import rewrap
from kestrel.security import artifact, x25519
from kestrel.security import errors as security_errors
from kestrel.security import manifest as manifests
from kestrel.storage import layout, pvc
from testbed.engines import model_repository
from tests.cluster.storage_fixtures import REF, Keys, packed_engine, tree

STORE_URI = "pvc://engines/kestrel"
WEIGHTS = 64 << 10


def plaintext_engine(folder: pathlib.Path, keys: Keys, ref: layout.EngineRef = REF) -> pathlib.Path:
    """What a build packs when `spec.security.encryption.enabled` is false."""
    source = model_repository(folder / "repository", weights_size=WEIGHTS)
    artifact.pack(source, folder / "artifact", kek=None, signing_key=keys.signing_key, artifact_id=ref.artifact_id)
    return folder / "artifact"


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
    engines.upload(plaintext_engine(tmp_path / "build", keys), REF)
    return engines


@pytest.fixture
def key_files(tmp_path: pathlib.Path, keys: Keys) -> dict[str, pathlib.Path]:
    return keys.write(tmp_path / "keys")


def _load(mount: pathlib.Path, target: pathlib.Path, verify: pathlib.Path, *options: str) -> int:
    argv = ["load", f"--from={STORE_URI}/{REF.path}", f"--to={target}", f"--pvc-root={mount}"]
    return cli.main([*argv, f"--verify-key-file={verify}", *options])


def test_cli_load_without_a_kek_file(
    stored: pvc.PvcStore,
    mount: pathlib.Path,
    key_files: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "models" / "repo"
    assert _load(mount, target, key_files["verify-key"]) == loader.EXIT_OK
    assert tree(target) == tree(tmp_path / "build" / "repository")
    assert "(signed, not encrypted)" in capsys.readouterr().out


def test_load_with_and_without_a_kek(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, key_files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    uri = f"{STORE_URI}/{REF.path}"
    manifest = loader.load(uri, tmp_path / "none", verify_key=keys.verify_key, pvc_root=mount, scratch_root=scratch)
    assert isinstance(manifest, manifests.PlaintextManifest)
    assert manifest.artifact_id == REF.artifact_id
    assert list(scratch.iterdir()) == []  # the downloaded copy is gone
    # A loader that holds a KEK (its spec encrypts, or it was left mounted) still loads it; the KEK is unused.
    loader.load(uri, tmp_path / "kek", kek_provider=keys.kek, verify_key=keys.verify_key, pvc_root=mount)
    assert _load(mount, tmp_path / "cli", key_files["verify-key"], f"--kek-file={key_files['kek']}") == 0
    expected = tree(tmp_path / "build" / "repository")
    assert tree(tmp_path / "none") == tree(tmp_path / "kek") == tree(tmp_path / "cli") == expected


def test_require_encryption_refuses_a_plaintext_engine(
    stored: pvc.PvcStore, mount: pathlib.Path, key_files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    options = (f"--kek-file={key_files['kek']}", "--require-encryption")
    assert _load(mount, models / "repo", key_files["verify-key"], *options) == loader.EXIT_INTEGRITY
    assert list(models.iterdir()) == []


def test_require_encryption_without_a_kek_is_bad_input_before_any_download(
    stored: pvc.PvcStore, mount: pathlib.Path, key_files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    stored.delete_engine(REF)  # a download would fail with EXIT_STORE; the check comes first
    assert _load(mount, tmp_path / "t", key_files["verify-key"], "--require-encryption") == loader.EXIT_BAD_INPUT
    assert not (tmp_path / "t").exists()


def test_an_attacker_with_store_access_cannot_downgrade_an_encrypted_engine(
    stored: pvc.PvcStore,
    mount: pathlib.Path,
    keys: Keys,
    key_files: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    # The spec enabled encryption after this engine key was first built in plaintext: the store now holds the
    # encrypted engine, and the attacker kept a copy of the validly signed plaintext one to put back.
    kept = tmp_path / "kept"
    stored.download(REF, kept)
    stored.upload(packed_engine(tmp_path / "encrypted", keys, weights_size=WEIGHTS), REF)
    options = (f"--kek-file={key_files['kek']}", "--require-encryption")
    assert _load(mount, tmp_path / "before", key_files["verify-key"], *options) == loader.EXIT_OK

    stored.upload(kept, REF)
    models = tmp_path / "models"
    models.mkdir()
    assert _load(mount, models / "repo", key_files["verify-key"], *options) == loader.EXIT_INTEGRITY
    assert list(models.iterdir()) == []  # neither the target nor a staging folder


def test_an_encrypted_engine_without_a_kek_file_is_refused(
    stored: pvc.PvcStore, mount: pathlib.Path, keys: Keys, key_files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    stored.upload(packed_engine(tmp_path / "encrypted", keys, weights_size=WEIGHTS), REF)
    assert _load(mount, tmp_path / "repo", key_files["verify-key"]) == loader.EXIT_INTEGRITY
    assert not (tmp_path / "repo").exists()


def _engine_file(engines: pvc.PvcStore, path: str) -> pathlib.Path:
    return engines.root / REF.namespace / REF.name / REF.key / "files" / path


@pytest.mark.parametrize("damage", ["flip", "truncate", "extra-file", "other-signer"])
def test_a_damaged_plaintext_engine_loads_nothing(
    stored: pvc.PvcStore,
    mount: pathlib.Path,
    keys: Keys,
    key_files: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    damage: str,
) -> None:
    weights = _engine_file(stored, "yolo/1/model.onnx")
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-1])
    elif damage == "extra-file":
        _engine_file(stored, "yolo/1/extra.so").write_bytes(b"\x7fELF")
    else:
        body = manifests.verify(stored.read_manifest(REF), keys.verify_key)
        stored.replace_manifest(REF, manifests.sign(body, Keys.generate().signing_key))
    models = tmp_path / "models"
    models.mkdir()
    assert _load(mount, models / "repo", key_files["verify-key"]) == loader.EXIT_INTEGRITY
    assert list(models.iterdir()) == []


def test_rotation_rewraps_encrypted_engines_and_leaves_plaintext_ones(
    stored: pvc.PvcStore,
    mount: pathlib.Path,
    keys: Keys,
    key_files: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    encrypted = layout.EngineRef(REF.namespace, REF.name, "1e" * 32)
    stored.upload(packed_engine(tmp_path / "encrypted", keys, encrypted, weights_size=WEIGHTS), encrypted)
    plaintext_manifest = stored.read_manifest(REF)
    argv = ["keys", "rotate", f"--store={STORE_URI}", "--namespace=vision", "--name=cams", f"--pvc-root={mount}"]
    argv += [f"--old-kek-file={key_files['kek']}", f"--new-kek-file={key_files['new-kek']}"]
    argv += [f"--signing-key-file={key_files['signing-key']}"]
    assert cli.main(argv) == loader.EXIT_OK
    printed = capsys.readouterr().out
    assert f"Left vision/cams/{REF.key} unchanged: not encrypted" in printed
    new = x25519.PrivateKek(keys.new_kek_bytes)  # the new key file, in the X25519 form `keys rotate` wraps with
    assert f"Re-wrapped vision/cams/{encrypted.key} under KEK {new.key_id}" in printed
    assert stored.read_manifest(REF) == plaintext_manifest

    results = rewrap.rotate(stored, "vision", "cams", keys.kek, new, signing_key=keys.signing_key)
    assert sorted((r.key, r.kek_id, r.changed) for r in results) == sorted(
        [(REF.key, None, False), (encrypted.key, new.key_id, False)]
    )


def test_a_forged_plaintext_manifest_fails_rotation(stored: pvc.PvcStore, keys: Keys) -> None:
    # Rotation verifies what it skips: a plaintext manifest signed by someone else is an integrity failure.
    body = manifests.verify(stored.read_manifest(REF), keys.verify_key)
    stored.replace_manifest(REF, manifests.sign(body, Keys.generate().signing_key))
    with pytest.raises(security_errors.SignatureError):
        rewrap.rotate(stored, "vision", "cams", keys.kek, keys.new_kek, signing_key=keys.signing_key)
