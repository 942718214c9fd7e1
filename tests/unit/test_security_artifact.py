"""Packing encrypts a model repository; unpacking refuses any damaged artifact and leaves the target untouched."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from kestrel.api import errors as api_errors
from kestrel.security import artifact, envelope, errors, kms, streaming
from kestrel.security import manifest as manifests

SIGNING_KEY = manifests.generate_signing_key()
PUBLIC_KEY = SIGNING_KEY.public_key()
KEK = kms.LocalKek(bytes(range(1, 33)))
ARTIFACT_ID = "vision/cams/0123abcd"
CHUNK = 64
REPOSITORY = {
    "yolo/config.pbtxt": b'name: "yolo"\nplatform: "tensorrt_plan"\nmax_batch_size: 8\n',
    "yolo/1/model.plan": bytes((i * 13 + 5) % 256 for i in range(5 * CHUNK + 9)),
    "yolo/1/labels.txt": b"circle\nsquare\ntriangle\n",
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
        source,
        tmp_path / "artifact",
        kek=KEK,
        signing_key=SIGNING_KEY,
        artifact_id=ARTIFACT_ID,
        metadata={"format": "tensorrt"},
        chunk_size=CHUNK,
    )
    return tmp_path / "artifact"


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    # The memory-backed volume of the serving pod (tmpfs, as its emptyDir is); Triton's repository goes inside it.
    shm = pathlib.Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path, prefix="kestrel-test-") as volume:
        yield pathlib.Path(volume)


def unpack(packed: pathlib.Path, target: pathlib.Path, kek: kms.KeyEncryptionKey | kms.KeyRing = KEK) -> None:
    artifact.unpack(packed, target, kek=kek, verify_key=PUBLIC_KEY, expected_artifact_id=ARTIFACT_ID)


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_no_plaintext(serve: pathlib.Path) -> None:
    # Nothing at all is left in the volume: no target, no staging directory, no partial file.
    assert list(serve.iterdir()) == []


def test_round_trip(packed: pathlib.Path, serve: pathlib.Path) -> None:
    unpack(packed, serve / "repository")
    assert tree(serve / "repository") == REPOSITORY
    assert sorted(p.name for p in serve.iterdir()) == ["repository"]


def test_the_artifact_holds_only_ciphertext(packed: pathlib.Path) -> None:
    stored = b"".join(tree(packed).values())
    for data in REPOSITORY.values():
        if len(data) >= 16:
            assert data[:16] not in stored
    assert sorted(tree(packed)) == ["files/" + path for path in sorted(REPOSITORY)] + ["manifest.json"]


def test_the_manifest_lists_sizes_and_hashes_of_both_forms(packed: pathlib.Path) -> None:
    found = artifact.verify(packed, PUBLIC_KEY)
    assert isinstance(found, manifests.Manifest)
    assert found.artifact_id == ARTIFACT_ID
    assert found.metadata == {"format": "tensorrt"}
    for item in found.files:
        plaintext = REPOSITORY[item.path]
        ciphertext = (packed / "files" / item.path).read_bytes()
        assert (item.size, item.sha256) == (len(plaintext), hashlib.sha256(plaintext).hexdigest())
        assert (item.ciphertext_size, item.ciphertext_sha256) == (
            len(ciphertext),
            hashlib.sha256(ciphertext).hexdigest(),
        )


def test_unpack_into_an_existing_empty_directory(packed: pathlib.Path, serve: pathlib.Path) -> None:
    (serve / "repository").mkdir()
    unpack(packed, serve / "repository")
    assert tree(serve / "repository") == REPOSITORY


def test_unpacked_files_are_group_readable_only(packed: pathlib.Path, serve: pathlib.Path) -> None:
    unpack(packed, serve / "repository")
    assert (serve / "repository/yolo/1/model.plan").stat().st_mode & 0o777 == 0o640
    assert (serve / "repository").stat().st_mode & 0o777 == 0o750


def test_a_non_empty_target_is_refused_and_kept(packed: pathlib.Path, serve: pathlib.Path) -> None:
    (serve / "repository").mkdir()
    (serve / "repository/old").write_bytes(b"previous revision")
    with pytest.raises(errors.TargetNotEmptyError):
        unpack(packed, serve / "repository")
    assert tree(serve) == {"repository/old": b"previous revision"}


def test_a_symlink_in_the_source_is_refused(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (source / "yolo/1/secret").symlink_to("/etc/hostname")
    with pytest.raises(errors.UnsafePathError, match="yolo/1/secret"):
        artifact.pack(source, tmp_path / "a", kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)


# --- every damaged artifact is refused, and the volume stays empty -----------------------------------------------

Damage = Callable[[pathlib.Path], None]


def flip(path: str, position: int) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        data = bytearray((packed / "files" / path).read_bytes())
        data[position] ^= 0x10
        (packed / "files" / path).write_bytes(bytes(data))

    return damage


def truncate(path: str, keep: int) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        data = (packed / "files" / path).read_bytes()
        (packed / "files" / path).write_bytes(data[:keep])

    return damage


def append(path: str, extra: bytes) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        with (packed / "files" / path).open("ab") as file:
            file.write(extra)

    return damage


def swap_files(first: str, second: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        a, b = packed / "files" / first, packed / "files" / second
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)

    return damage


def remove(path: str) -> Damage:
    return lambda packed: (packed / path).unlink()


def add(path: str) -> Damage:
    def damage(packed: pathlib.Path) -> None:
        (packed / path).parent.mkdir(parents=True, exist_ok=True)
        (packed / path).write_bytes(b"#!/bin/sh\n")

    return damage


def edit_manifest(packed: pathlib.Path) -> None:
    document = json.loads((packed / "manifest.json").read_bytes())
    document["manifest"]["files"][0]["size"] += 1
    (packed / "manifest.json").write_text(json.dumps(document))


PLAN = "yolo/1/model.plan"
PLAN_CIPHERTEXT = streaming.ciphertext_size(len(REPOSITORY[PLAN]), CHUNK)

# name -> (damage, what the error must name)
DAMAGES: dict[str, tuple[Damage, str]] = {
    "flip-header": (flip(PLAN, 20), PLAN),
    "flip-first-chunk": (flip(PLAN, streaming.HEADER_SIZE + 1), PLAN),
    "flip-last-tag": (flip(PLAN, PLAN_CIPHERTEXT - 1), PLAN),
    "flip-last-file": (flip("yolo/config.pbtxt", -3), "yolo/config.pbtxt"),
    "truncate-mid-chunk": (truncate(PLAN, PLAN_CIPHERTEXT - 30), PLAN),
    "truncate-at-chunk-boundary": (truncate(PLAN, streaming.HEADER_SIZE + 2 * (CHUNK + 16)), PLAN),
    "truncate-empty-file": (truncate("empty.txt", 0), "empty.txt"),
    "append-byte": (append(PLAN, b"\x00"), PLAN),
    "append-chunk": (append(PLAN, bytes(CHUNK + 16)), PLAN),
    "swap-files": (swap_files("yolo/1/labels.txt", "yolo/config.pbtxt"), "yolo/1/labels.txt"),
    "missing-file": (remove("files/yolo/1/labels.txt"), "yolo/1/labels.txt"),
    "unlisted-file": (add("files/yolo/1/libexploit.so"), "yolo/1/libexploit.so"),
    "unlisted-top-level-file": (add("README"), "README"),
    "missing-manifest": (remove("manifest.json"), "manifest.json"),
    "edited-manifest": (edit_manifest, "manifest signature"),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_damaged_artifacts_are_refused_naming_the_file_and_the_volume_stays_empty(
    packed: pathlib.Path, serve: pathlib.Path, name: str
) -> None:
    damage, named = DAMAGES[name]
    damage(packed)
    with pytest.raises(api_errors.IntegrityError) as caught:
        unpack(packed, serve / "repository")
    assert named in str(caught.value)
    assert_no_plaintext(serve)


def test_a_chunk_moved_between_files_under_a_resigned_manifest_is_refused(
    source: pathlib.Path, tmp_path: pathlib.Path, serve: pathlib.Path
) -> None:
    # Even a signer gone rogue (valid signature, consistent hashes) cannot splice ciphertext across paths:
    # the path is bound into every chunk.
    (source / "yolo/2").mkdir()
    (source / "yolo/2/model.plan").write_bytes(REPOSITORY[PLAN][::-1])
    packed = tmp_path / "two"
    artifact.pack(source, packed, kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID, chunk_size=CHUNK)
    swap_files(PLAN, "yolo/2/model.plan")(packed)
    document = json.loads((packed / "manifest.json").read_bytes())
    body = manifests.Manifest.model_validate(document["manifest"])
    fixed = []
    for item in body.files:
        data = (packed / "files" / item.path).read_bytes()
        fixed.append(item.model_copy(update={"ciphertext_sha256": hashlib.sha256(data).hexdigest()}))
    resigned = manifests.sign(body.model_copy(update={"files": tuple(fixed)}), SIGNING_KEY)
    (packed / "manifest.json").write_bytes(resigned)
    with pytest.raises(errors.DecryptionError, match=r"model\.plan"):
        unpack(packed, serve / "repository")
    assert_no_plaintext(serve)


def test_every_byte_of_a_small_artifact_is_protected(tmp_path: pathlib.Path, serve: pathlib.Path) -> None:
    source = tmp_path / "small"
    (source / "m/1").mkdir(parents=True)
    (source / "m/1/model.onnx").write_bytes(bytes(range(150)))
    packed = tmp_path / "packed"
    artifact.pack(source, packed, kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID, chunk_size=CHUNK)
    pristine = tmp_path / "pristine"
    shutil.copytree(packed, pristine)
    for position in range((packed / "files/m/1/model.onnx").stat().st_size):
        flip("m/1/model.onnx", position)(packed)
        with pytest.raises(api_errors.IntegrityError):
            unpack(packed, serve / "repository")
        flip("m/1/model.onnx", position)(packed)
        assert_no_plaintext(serve)
    unpack(packed, serve / "repository")  # the restored artifact is fine again, so the loop mutated real bytes


def test_a_wrong_kek_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    with pytest.raises(errors.KeyUnwrapError):
        unpack(packed, serve / "repository", kek=kms.LocalKek.generate())
    assert_no_plaintext(serve)


def test_a_wrong_signature_key_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    other = manifests.generate_signing_key().public_key()
    with pytest.raises(errors.SignatureError):
        artifact.unpack(packed, serve / "repository", kek=KEK, verify_key=other)
    assert_no_plaintext(serve)


def test_another_validly_signed_artifact_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    with pytest.raises(errors.ManifestMismatchError, match="not the expected"):
        artifact.unpack(
            packed, serve / "repository", kek=KEK, verify_key=PUBLIC_KEY, expected_artifact_id="vision/cams/older"
        )
    assert_no_plaintext(serve)


def test_failure_after_some_files_were_decrypted_leaves_nothing(packed: pathlib.Path, serve: pathlib.Path) -> None:
    # Files are decrypted in path order; damage the last one so that earlier plaintext exists in staging first.
    flip("yolo/config.pbtxt", -1)(packed)
    with pytest.raises(errors.DecryptionError, match=r"config\.pbtxt"):
        unpack(packed, serve / "repository")
    assert_no_plaintext(serve)


# --- key rotation ------------------------------------------------------------------------------------------------


def test_rewrap_changes_only_the_manifest(packed: pathlib.Path, serve: pathlib.Path) -> None:
    before = tree(packed)
    new = kms.LocalKek.generate()
    result = artifact.rewrap(packed, old=KEK, new=new, signing_key=SIGNING_KEY, verify_key=PUBLIC_KEY)
    after = tree(packed)
    assert isinstance(result, manifests.Manifest)
    assert result.wrapped_key.kek_id == new.key_id
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert after["manifest.json"] != before["manifest.json"]
    with pytest.raises(errors.KeyUnwrapError):
        unpack(packed, serve / "old-kek", kek=KEK)
    unpack(packed, serve / "repository", kek=new)
    assert tree(serve / "repository") == REPOSITORY


def test_rewrap_is_idempotent(packed: pathlib.Path) -> None:
    new = kms.LocalKek.generate()
    artifact.rewrap(packed, old=KEK, new=new, signing_key=SIGNING_KEY, verify_key=PUBLIC_KEY)
    once = (packed / "manifest.json").read_bytes()
    artifact.rewrap(packed, old=KEK, new=new, signing_key=SIGNING_KEY, verify_key=PUBLIC_KEY)
    assert (packed / "manifest.json").read_bytes() == once


def test_a_loader_with_a_key_ring_serves_during_rotation(packed: pathlib.Path, serve: pathlib.Path) -> None:
    new = kms.LocalKek.generate()
    ring = kms.KeyRing(new, [KEK])
    unpack(packed, serve / "before", kek=ring)
    artifact.rewrap(packed, old=KEK, new=new, signing_key=SIGNING_KEY, verify_key=PUBLIC_KEY)
    unpack(packed, serve / "after", kek=ring)
    assert tree(serve / "before") == tree(serve / "after") == REPOSITORY


def test_pack_refuses_a_non_empty_artifact_directory(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied/x").write_bytes(b"")
    with pytest.raises(errors.TargetNotEmptyError):
        artifact.pack(source, tmp_path / "occupied", kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)


def test_an_empty_repository_round_trips(tmp_path: pathlib.Path, serve: pathlib.Path) -> None:
    (tmp_path / "empty").mkdir()
    artifact.pack(tmp_path / "empty", tmp_path / "a", kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
    unpack(tmp_path / "a", serve / "repository")
    assert list((serve / "repository").iterdir()) == []


def test_every_byte_of_the_manifest_is_protected(packed: pathlib.Path, serve: pathlib.Path) -> None:
    original = (packed / "manifest.json").read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        with pytest.raises(errors.SignatureError):
            manifests.verify(bytes(damaged), PUBLIC_KEY)
        if position % 97 == 0:  # and through the loader, at a sample of positions
            (packed / "manifest.json").write_bytes(bytes(damaged))
            with pytest.raises(errors.SignatureError):
                unpack(packed, serve / "repository")
            assert_no_plaintext(serve)
    (packed / "manifest.json").write_bytes(original)
    unpack(packed, serve / "repository")


def test_verify_without_any_key_catches_a_same_size_ciphertext_change(packed: pathlib.Path) -> None:
    artifact.verify(packed, PUBLIC_KEY)
    flip(PLAN, streaming.HEADER_SIZE + 5)(packed)
    with pytest.raises(errors.ManifestMismatchError, match=r"model\.plan.*ciphertext SHA-256"):
        artifact.verify(packed, PUBLIC_KEY)


def test_a_file_as_target_is_refused(packed: pathlib.Path, serve: pathlib.Path) -> None:
    (serve / "repository").write_bytes(b"")
    with pytest.raises(errors.TargetNotEmptyError):
        unpack(packed, serve / "repository")
    assert [p.name for p in serve.iterdir()] == ["repository"]


def test_a_kek_holder_cannot_substitute_content_without_the_signing_key(
    packed: pathlib.Path, serve: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # Whoever holds the KEK can unwrap the data key and produce chunks that authenticate; only the signed plaintext
    # hash stops them from swapping in other weights of the same size.
    document = manifests.verify((packed / "manifest.json").read_bytes(), PUBLIC_KEY)
    assert isinstance(document, manifests.Manifest)
    data_key = envelope.unwrap(KEK, document.wrapped_key.to_wrapped(), ARTIFACT_ID.encode())
    forged = tmp_path / "forged.plan"
    forged.write_bytes(bytes(len(REPOSITORY[PLAN])))
    streaming.encrypt_file(data_key, PLAN, forged, packed / "files" / PLAN, chunk_size=CHUNK)
    with pytest.raises(errors.ManifestMismatchError, match=r"model\.plan.*plaintext"):
        unpack(packed, serve / "repository")
    assert_no_plaintext(serve)


def test_pack_refuses_a_missing_source(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.UnsafePathError, match="not a directory"):
        artifact.pack(tmp_path / "absent", tmp_path / "a", kek=KEK, signing_key=SIGNING_KEY, artifact_id=ARTIFACT_ID)
