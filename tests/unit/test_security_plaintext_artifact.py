"""Signed plaintext artifacts: files as they are under a signed manifest; any change refused, no downgrade."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.api import errors as api_errors
from kestrel.security import artifact, errors, kms
from kestrel.security import manifest as manifests

SIGNING_KEY = manifests.generate_signing_key()
PUBLIC_KEY = SIGNING_KEY.public_key()
KEK = kms.LocalKek(bytes(range(1, 33)))
ARTIFACT_ID = "vision/cams/0123abcd"
PLAN = "yolo/1/model.plan"
REPOSITORY = {
    "yolo/config.pbtxt": b'name: "yolo"\nplatform: "tensorrt_plan"\nmax_batch_size: 8\n',
    PLAN: bytes((i * 13 + 5) % 256 for i in range(4099)),
    "yolo/1/labels.txt": b"circle\nsquare\ntriangle\n",
    "yolo/2/labels.txt": b"circle\nsquare\nhexagon\n",  # the same size as yolo/1's: only the hash tells them apart
    "empty.txt": b"",
}


@pytest.fixture
def source(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "repository"
    for path, data in REPOSITORY.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


@pytest.fixture
def packed(source: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    artifact.pack(
        source, tmp_path / "artifact", kek=None, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID, metadata={"v": 1}
    )
    return tmp_path / "artifact"


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    # The memory-backed volume of the serving pod, as in test_security_artifact.
    shm = pathlib.Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path, prefix="kestrel-test-") as volume:
        yield pathlib.Path(volume)


def unpack(
    packed: pathlib.Path,
    target: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey | kms.KeyRing | None = None,
    verify_key: ed25519.Ed25519PublicKey = PUBLIC_KEY,
    require_encryption: bool = False,
) -> manifests.AnyManifest:
    return artifact.unpack(
        packed,
        target,
        kek=kek,
        verify_key=verify_key,
        require_encryption=require_encryption,
        expected_artifact_id=ARTIFACT_ID,
    )


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_volume_empty(serve: pathlib.Path) -> None:
    # No target, no staging directory, no partial file.
    assert list(serve.iterdir()) == []


def test_round_trip(packed: pathlib.Path, serve: pathlib.Path) -> None:
    result = unpack(packed, serve / "repository")
    assert isinstance(result, manifests.PlaintextManifest)
    assert tree(serve / "repository") == REPOSITORY
    assert sorted(p.name for p in serve.iterdir()) == ["repository"]
    assert (serve / "repository" / PLAN).stat().st_mode & 0o777 == 0o640


def test_pack_returns_the_plaintext_manifest_it_signed(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = artifact.pack(source, tmp_path / "a", kek=None, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    assert result == artifact.verify(tmp_path / "a", PUBLIC_KEY)


def test_the_files_are_stored_as_they_are_under_a_manifest_that_says_so(packed: pathlib.Path) -> None:
    assert tree(packed / "files") == REPOSITORY
    document = json.loads((packed / "manifest.json").read_bytes())
    body = document["manifest"]
    assert set(body) == {"schema", "artifactId", "encryption", "files", "metadata"}
    assert (body["schema"], body["encryption"]) == ("kestrel.dev/artifact-manifest/v2", "none")
    assert body["files"] == [
        {"path": path, "size": len(REPOSITORY[path]), "sha256": hashlib.sha256(REPOSITORY[path]).hexdigest()}
        for path in sorted(REPOSITORY)
    ]
    assert artifact.verify(packed, PUBLIC_KEY).metadata == {"v": 1}


def test_a_kek_given_for_a_plaintext_artifact_is_unused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    unpack(packed, serve / "one", kek=KEK)
    unpack(packed, serve / "ring", kek=kms.KeyRing(kms.LocalKek.generate(), [KEK]))
    assert tree(serve / "one") == tree(serve / "ring") == REPOSITORY


def test_an_empty_repository_round_trips(tmp_path: pathlib.Path, serve: pathlib.Path) -> None:
    (tmp_path / "empty").mkdir()
    artifact.pack(tmp_path / "empty", tmp_path / "a", kek=None, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    unpack(tmp_path / "a", serve / "repository")
    assert list((serve / "repository").iterdir()) == []


def test_pack_refuses_a_non_empty_artifact_directory_and_a_symlink(
    source: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied/x").write_bytes(b"")
    with pytest.raises(errors.TargetNotEmptyError):
        artifact.pack(source, tmp_path / "occupied", kek=None, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    (source / "yolo/1/secret").symlink_to("/etc/hostname")
    with pytest.raises(errors.UnsafePathError, match="yolo/1/secret"):
        artifact.pack(source, tmp_path / "a", kek=None, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)


def test_a_non_empty_target_is_refused_and_kept(packed: pathlib.Path, serve: pathlib.Path) -> None:
    (serve / "repository").mkdir()
    (serve / "repository/old").write_bytes(b"previous revision")
    with pytest.raises(errors.TargetNotEmptyError):
        unpack(packed, serve / "repository")
    assert tree(serve) == {"repository/old": b"previous revision"}


# --- every damaged artifact is refused, and the volume stays empty -----------------------------------------------

Damage = Callable[[pathlib.Path], None]


def flip(path: str, position: int) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        data = bytearray((packed / "files" / path).read_bytes())
        data[position] ^= 0x01
        (packed / "files" / path).write_bytes(bytes(data))

    return damage


def truncate(path: str, keep: int) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        (packed / "files" / path).write_bytes((packed / "files" / path).read_bytes()[:keep])

    return damage


def append(path: str, extra: bytes) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        with (packed / "files" / path).open("ab") as file:
            file.write(extra)

    return damage


def swap(first: str, second: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        a, b = packed / "files" / first, packed / "files" / second
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)

    return damage


def rename(old: str, new: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        (packed / "files" / new).parent.mkdir(parents=True, exist_ok=True)
        (packed / "files" / old).rename(packed / "files" / new)

    return damage


def remove(path: str) -> Damage:
    return lambda packed: (packed / path).unlink()


def add(path: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        (packed / path).parent.mkdir(parents=True, exist_ok=True)
        (packed / path).write_bytes(b"#!/bin/sh\n")

    return damage


def link(path: str, to: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        (packed / "files" / path).unlink()
        (packed / "files" / path).symlink_to(to)

    return damage


def edit_manifest(edit: Callable[[dict[str, Any]], None]) -> Damage:
    """Change the manifest body without re-signing it (what store write access alone allows)."""

    def damage(packed: pathlib.Path) -> None:
        document = json.loads((packed / "manifest.json").read_bytes())
        edit(document["manifest"])
        (packed / "manifest.json").write_text(json.dumps(document))

    return damage


def _hash_of_a_substitute(body: dict[str, Any]) -> None:
    # The attacker replaces a file and fixes its listed hash; only the signature stops this.
    body["files"][0]["sha256"] = hashlib.sha256(b"substitute").hexdigest()


# name -> (damage, what the error must name)
DAMAGES: dict[str, tuple[Damage, str]] = {
    "flip-first-byte": (flip(PLAN, 0), PLAN),
    "flip-middle-byte": (flip(PLAN, 2048), PLAN),
    "flip-last-byte": (flip(PLAN, -1), PLAN),
    "flip-last-file-in-order": (flip("yolo/config.pbtxt", -2), "yolo/config.pbtxt"),
    "truncate": (truncate(PLAN, 4098), PLAN),
    "truncate-to-nothing": (truncate("yolo/1/labels.txt", 0), "yolo/1/labels.txt"),
    "append-byte": (append(PLAN, b"\x00"), PLAN),
    "append-to-empty-file": (append("empty.txt", b"x"), "empty.txt"),
    "swap-same-size-files": (swap("yolo/1/labels.txt", "yolo/2/labels.txt"), "yolo/1/labels.txt"),
    "delete-file": (remove("files/yolo/1/labels.txt"), "yolo/1/labels.txt"),
    "delete-empty-file": (remove("files/empty.txt"), "empty.txt"),
    "unlisted-file": (add("files/yolo/1/libexploit.so"), "yolo/1/libexploit.so"),
    "unlisted-top-level-file": (add("README"), "README"),
    "rename-file": (rename(PLAN, "yolo/1/model.plan.bak"), PLAN),
    "move-file-to-another-folder": (rename("yolo/1/labels.txt", "yolo/3/labels.txt"), "yolo/1/labels.txt"),
    "symlink-instead-of-file": (link("yolo/1/labels.txt", "/etc/hostname"), "not a regular file"),
    "missing-manifest": (remove("manifest.json"), "manifest.json"),
    "manifest-size-edited": (edit_manifest(lambda m: m["files"][1].update(size=1)), "does not verify"),
    "manifest-hash-edited": (edit_manifest(_hash_of_a_substitute), "does not verify"),
    "manifest-file-dropped": (edit_manifest(lambda m: m["files"].pop()), "does not verify"),
    "manifest-id-edited": (edit_manifest(lambda m: m.update(artifactId="vision/cams/x")), "does not verify"),
    "manifest-encryption-edited": (edit_manifest(lambda m: m.update(encryption="aes")), "does not verify"),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_damaged_artifacts_are_refused_and_the_volume_stays_empty(
    packed: pathlib.Path, serve: pathlib.Path, tmp_path: pathlib.Path, name: str
) -> None:
    unpack(packed, tmp_path / "pristine")  # the same artifact loads before the damage
    damage, named = DAMAGES[name]
    damage(packed)
    with pytest.raises(api_errors.IntegrityError) as caught:
        unpack(packed, serve / "repository", kek=KEK)
    assert named in str(caught.value)
    assert_volume_empty(serve)
    with pytest.raises(api_errors.IntegrityError):  # the keyless store check refuses it too
        artifact.verify(packed, PUBLIC_KEY)


def test_a_wrong_verify_key_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    other = manifests.generate_signing_key().public_key()
    with pytest.raises(errors.SignatureError, match="not by the trusted key"):
        unpack(packed, serve / "repository", verify_key=other)
    assert_volume_empty(serve)


def test_a_manifest_re_signed_by_another_key_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    body = manifests.verify((packed / "manifest.json").read_bytes(), PUBLIC_KEY)
    (packed / "manifest.json").write_bytes(manifests.sign(body, manifests.generate_signing_key()))
    with pytest.raises(errors.SignatureError):
        unpack(packed, serve / "repository")
    assert_volume_empty(serve)


def test_a_failure_after_some_files_were_copied_leaves_nothing(packed: pathlib.Path, serve: pathlib.Path) -> None:
    # Files are copied in path order and yolo/config.pbtxt comes last: earlier files exist in staging when it fails.
    flip("yolo/config.pbtxt", 0)(packed)
    with pytest.raises(errors.ManifestMismatchError, match=r"config\.pbtxt.*SHA-256"):
        unpack(packed, serve / "repository")
    assert_volume_empty(serve)


def test_every_byte_of_the_manifest_is_protected(packed: pathlib.Path, serve: pathlib.Path) -> None:
    original = (packed / "manifest.json").read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        with pytest.raises(errors.SignatureError):
            manifests.verify(bytes(damaged), PUBLIC_KEY)
    (packed / "manifest.json").write_bytes(original)
    unpack(packed, serve / "repository")  # the restored manifest loads: the loop damaged real bytes


# --- the downgrade rule ------------------------------------------------------------------------------------------


def test_a_validly_signed_plaintext_artifact_is_refused_where_encryption_is_required(
    source: pathlib.Path, packed: pathlib.Path, tmp_path: pathlib.Path, serve: pathlib.Path
) -> None:
    # The signer signed a plaintext artifact under this id before the spec enabled encryption, then an encrypted
    # one. Someone who can write the store puts the plaintext one back: its signature is valid and its hashes match,
    # so only the caller's requirement stops it.
    encrypted = tmp_path / "encrypted"
    artifact.pack(source, encrypted, kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    assert isinstance(unpack(encrypted, tmp_path / "enc", kek=KEK, require_encryption=True), manifests.Manifest)

    with pytest.raises(errors.EncryptionRequiredError, match="not encrypted") as caught:
        unpack(packed, serve / "repository", kek=KEK, require_encryption=True)
    assert isinstance(caught.value, api_errors.IntegrityError)  # `kestrel load` exits 3: nothing served
    assert_volume_empty(serve)
    with pytest.raises(errors.EncryptionRequiredError):
        artifact.verify(packed, PUBLIC_KEY, require_encryption=True)
    # Without the requirement the same artifact loads: the rule lives in the caller's flag, not in the signature.
    unpack(packed, serve / "repository", kek=KEK)


def test_an_encrypted_manifest_cannot_be_relabelled_as_plaintext(
    source: pathlib.Path, tmp_path: pathlib.Path, serve: pathlib.Path
) -> None:
    # Rewriting the manifest of an encrypted artifact into the plaintext schema, keeping its signature, fails.
    encrypted = tmp_path / "encrypted"
    artifact.pack(source, encrypted, kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    document = json.loads((encrypted / "manifest.json").read_bytes())
    body = document["manifest"]
    document["manifest"] = {
        "schema": manifests.SCHEMA_V2,
        "artifactId": body["artifactId"],
        "encryption": "none",
        "files": [{key: entry[key] for key in ("path", "size", "sha256")} for entry in body["files"]],
        "metadata": body["metadata"],
    }
    (encrypted / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(errors.SignatureError, match="does not verify"):
        unpack(encrypted, serve / "repository")
    assert_volume_empty(serve)


def test_an_encrypted_artifact_without_a_kek_is_refused(
    source: pathlib.Path, tmp_path: pathlib.Path, serve: pathlib.Path
) -> None:
    encrypted = tmp_path / "encrypted"
    artifact.pack(source, encrypted, kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    with pytest.raises(errors.KeyUnwrapError, match="no key-encryption key"):
        unpack(encrypted, serve / "repository")
    assert_volume_empty(serve)


# --- what the signer may put in a plaintext manifest -------------------------------------------------------------


def _resigned(packed: pathlib.Path, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """Edit the body and sign it under the plaintext domain with the trusted key (a compromised builder)."""
    document = json.loads((packed / "manifest.json").read_bytes())
    edit(document["manifest"])
    record = SIGNING_KEY.sign(b"kestrel.dev/artifact-manifest/v2\n" + manifests.canonical_json(document["manifest"]))
    document["signature"]["value"] = base64.b64encode(record).decode()
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("encryption"), "encryption"),
        (lambda m: m.update(encryption="AES256-GCM"), "encryption"),
        (lambda m: m["files"][0].update(ciphertextSize=0), "files.0.ciphertextSize"),
        (lambda m: m.update(wrappedKey={"kekId": "local/0", "ciphertext": ""}), "wrappedKey"),
        (lambda m: m["files"][0].update(path="../etc/passwd"), "files.0.path"),
        (lambda m: m.update(schema="kestrel.dev/artifact-manifest/v3"), "schema"),
    ],
    ids=["no-encryption-field", "other-encryption", "ciphertext-field", "wrapped-key", "unsafe-path", "unknown-schema"],
)
def test_a_malformed_plaintext_manifest_is_refused_even_when_signed(
    packed: pathlib.Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(errors.SignatureError, match=message):
        manifests.verify(_resigned(packed, edit), PUBLIC_KEY)


def test_a_plaintext_body_signed_under_the_encrypted_domain_is_refused(packed: pathlib.Path) -> None:
    document = json.loads((packed / "manifest.json").read_bytes())
    record = SIGNING_KEY.sign(b"kestrel.dev/artifact-manifest/v1\n" + manifests.canonical_json(document["manifest"]))
    document["signature"]["value"] = base64.b64encode(record).decode()
    with pytest.raises(errors.SignatureError, match="does not verify"):
        manifests.verify(json.dumps(document).encode(), PUBLIC_KEY)


def test_the_re_signing_helper_produces_a_valid_document(packed: pathlib.Path) -> None:
    # Guards the test above: an unedited body re-signed by the helper verifies, so its refusals are the edits'.
    assert manifests.verify(_resigned(packed, lambda m: None), PUBLIC_KEY) == artifact.verify(packed, PUBLIC_KEY)


# --- key rotation ------------------------------------------------------------------------------------------------


def test_rewrap_leaves_a_plaintext_artifact_as_it_is(packed: pathlib.Path) -> None:
    before = tree(packed)
    result = artifact.rewrap(
        packed, old=KEK, new=kms.LocalKek.generate(), signing_key=SIGNING_KEY, verify_key=PUBLIC_KEY
    )
    assert isinstance(result, manifests.PlaintextManifest)
    assert tree(packed) == before
