"""The signed manifest verifies only as signed, and pins the exact set of files with their sizes and hashes."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
from typing import Any

import pytest

from kestrel.api import errors as api_errors
from kestrel.security import envelope, errors
from kestrel.security import manifest as manifests

SIGNING_KEY = manifests.generate_signing_key()
PUBLIC_KEY = SIGNING_KEY.public_key()


def entry(path: str, ciphertext: bytes, plaintext: bytes = b"") -> manifests.FileEntry:
    return manifests.FileEntry(
        path=path,
        size=len(plaintext),
        sha256=hashlib.sha256(plaintext).hexdigest(),
        ciphertext_size=len(ciphertext),
        ciphertext_sha256=hashlib.sha256(ciphertext).hexdigest(),
    )


FILES = {"yolo/1/model.plan": b"\x01" * 100, "yolo/config.pbtxt": b"\x02" * 10}


def make_manifest(contents: dict[str, bytes] = FILES, **changes: Any) -> manifests.Manifest:
    fields: dict[str, Any] = {
        "artifact_id": "vision/cams/0123abcd",
        "chunk_size": 1 << 20,
        "wrapped_key": manifests.WrappedKeyRecord.of(envelope.WrappedKey("local/00112233", b"\x00" * 60)),
        "files": tuple(entry(path, data) for path, data in sorted(contents.items())),
        "metadata": {"format": "tensorrt", "batch": 8, "dynamic": True},
    }
    return manifests.Manifest(**(fields | changes))


def resign(document: bytes, edit: Any) -> bytes:
    """Edit the manifest body and sign it again with the trusted key (what a compromised builder could do)."""
    parsed = json.loads(document)
    edit(parsed["manifest"])
    signature = SIGNING_KEY.sign(b"kestrel.dev/artifact-manifest/v1\n" + manifests.canonical_json(parsed["manifest"]))
    parsed["signature"]["value"] = base64.b64encode(signature).decode()
    return json.dumps(parsed).encode()


def test_round_trip() -> None:
    original = make_manifest()
    assert manifests.verify(manifests.sign(original, SIGNING_KEY), PUBLIC_KEY) == original


def test_the_wire_form_is_camel_case_canonical_json() -> None:
    document = manifests.sign(make_manifest(), SIGNING_KEY)
    assert document == manifests.canonical_json(json.loads(document)) + b"\n"
    body = json.loads(document)["manifest"]
    assert body["schema"] == manifests.SCHEMA
    assert set(body["files"][0]) == {"path", "size", "sha256", "ciphertextSize", "ciphertextSha256"}
    assert set(body["wrappedKey"]) == {"kekId", "ciphertext"}


def test_whitespace_and_key_order_do_not_matter() -> None:
    document = manifests.sign(make_manifest(), SIGNING_KEY)
    reformatted = json.dumps(json.loads(document), indent=4).encode()
    assert manifests.verify(reformatted, PUBLIC_KEY) == make_manifest()


def test_another_signing_key_is_refused() -> None:
    document = manifests.sign(make_manifest(), manifests.generate_signing_key())
    with pytest.raises(errors.SignatureError, match="not by the trusted key") as caught:
        manifests.verify(document, PUBLIC_KEY)
    assert isinstance(caught.value, api_errors.IntegrityError)


def test_another_key_claiming_the_trusted_id_is_refused() -> None:
    forger = manifests.generate_signing_key()
    parsed = json.loads(manifests.sign(make_manifest(), forger))
    parsed["signature"]["keyId"] = manifests.key_id(PUBLIC_KEY)
    with pytest.raises(errors.SignatureError, match="does not verify"):
        manifests.verify(json.dumps(parsed).encode(), PUBLIC_KEY)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["files"][0].update(size=m["files"][0]["size"] + 1),
        lambda m: m["files"][0].update(ciphertextSha256="0" * 64),
        lambda m: m["files"].pop(),
        lambda m: m["wrappedKey"].update(kekId="local/ffffffff"),
        lambda m: m.update(artifactId="vision/cams/ffffffff"),
        lambda m: m["metadata"].update(format="onnx"),
        lambda m: m.update(extra=1),
    ],
    ids=["size", "hash", "drop-file", "kek-id", "artifact-id", "metadata", "added-field"],
)
def test_any_edit_after_signing_is_refused(edit: Any) -> None:
    parsed = json.loads(manifests.sign(make_manifest(), SIGNING_KEY))
    edit(parsed["manifest"])
    with pytest.raises(errors.SignatureError, match="does not verify"):
        manifests.verify(json.dumps(parsed).encode(), PUBLIC_KEY)


def test_every_flipped_signature_bit_is_refused() -> None:
    parsed = json.loads(manifests.sign(make_manifest(), SIGNING_KEY))
    signature = base64.b64decode(parsed["signature"]["value"])
    for position in range(len(signature)):
        damaged = bytearray(signature)
        damaged[position] ^= 1
        parsed["signature"]["value"] = base64.b64encode(bytes(damaged)).decode()
        with pytest.raises(errors.SignatureError):
            manifests.verify(json.dumps(parsed).encode(), PUBLIC_KEY)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "exactly"),
        (b'{"manifest": {}, "signature": {}, "x": 1}', "exactly"),
        (b'{"manifest": {}, "signature": {"algorithm": "RSA", "keyId": "k", "value": ""}}', "Ed25519"),
        (b'{"manifest": {"a": 1.5}, "signature": {}}', "non-integer"),
        (b'{"manifest": {"a": NaN}, "signature": {}}', "non-integer"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_documents_are_refused(document: bytes, message: str) -> None:
    with pytest.raises(errors.SignatureError, match=message):
        manifests.verify(document, PUBLIC_KEY)


def test_duplicate_keys_are_refused_so_no_two_parsers_disagree() -> None:
    document = manifests.sign(make_manifest(), SIGNING_KEY).decode()
    doubled = document.replace('{"manifest":{', '{"manifest":{"artifactId":"vision/evil/1",', 1)
    with pytest.raises(errors.SignatureError, match="repeats a key"):
        manifests.verify(doubled.encode(), PUBLIC_KEY)


def test_a_validly_signed_manifest_with_an_unsafe_path_is_refused() -> None:
    document = resign(manifests.sign(make_manifest(), SIGNING_KEY), lambda m: m["files"][0].update(path="../etc/x"))
    with pytest.raises(errors.SignatureError, match=r"files\.0\.path"):
        manifests.verify(document, PUBLIC_KEY)


def test_a_malformed_field_is_named_without_echoing_its_value() -> None:
    leaked = "c2VjcmV0LWtleS1ieXRlcy1zaG91bGQtbm90LWJlLWxvZ2dlZA!!"
    document = resign(manifests.sign(make_manifest(), SIGNING_KEY), lambda m: m["wrappedKey"].update(ciphertext=leaked))
    with pytest.raises(errors.SignatureError, match=r"wrappedKey\.ciphertext") as caught:
        manifests.verify(document, PUBLIC_KEY)
    assert leaked not in str(caught.value)
    assert leaked[:20] not in str(caught.value)


@pytest.mark.parametrize(
    "files",
    [
        {"a": b"", "a/b": b""},
        {"x/a": b"", "x/a/b/c": b""},
    ],
)
def test_a_path_that_is_also_a_directory_is_refused(files: dict[str, bytes]) -> None:
    with pytest.raises(ValueError, match="also used as a directory"):
        make_manifest(files)


@pytest.mark.parametrize("path", ["/abs", "a/../b", "a//b", "./a", "a\\b", "", "a/", "a\x00b"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        make_manifest({path: b""})


def test_unsorted_or_duplicate_files_are_refused() -> None:
    first, second = entry("a", b""), entry("b", b"")
    for files in ((second, first), (first, first)):
        with pytest.raises(ValueError, match="unique and sorted"):
            make_manifest(FILES, files=files)


def test_floats_in_metadata_are_refused() -> None:
    with pytest.raises(ValueError, match="metadata"):
        make_manifest(metadata={"map": 0.5})


def test_pem_round_trip_of_the_signing_keys() -> None:
    private = manifests.load_private_key(manifests.private_key_to_pem(SIGNING_KEY))
    public = manifests.load_public_key(manifests.public_key_to_pem(PUBLIC_KEY))
    assert manifests.verify(manifests.sign(make_manifest(), private), public) == make_manifest()


# --- the files on disk -------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    for path, data in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    return tmp_path


def test_matching_files_pass(root: pathlib.Path) -> None:
    manifests.check_ciphertext_hashes(make_manifest(), root)


def test_a_missing_file_is_refused(root: pathlib.Path) -> None:
    (root / "yolo/config.pbtxt").unlink()
    with pytest.raises(errors.ManifestMismatchError, match=r"'yolo/config\.pbtxt'.*missing"):
        manifests.check_files(make_manifest(), root)


def test_an_unlisted_file_is_refused(root: pathlib.Path) -> None:
    (root / "yolo/1/extra.so").write_bytes(b"")
    with pytest.raises(errors.ManifestMismatchError, match=r"'yolo/1/extra\.so'.*not listed"):
        manifests.check_files(make_manifest(), root)


def test_a_symlink_is_refused(root: pathlib.Path) -> None:
    (root / "yolo/1/link").symlink_to("/etc/passwd")
    with pytest.raises(errors.ManifestMismatchError, match="not a regular file"):
        manifests.check_files(make_manifest(), root)


def test_a_size_mismatch_is_refused(root: pathlib.Path) -> None:
    (root / "yolo/1/model.plan").write_bytes(b"\x01" * 101)
    with pytest.raises(errors.ManifestMismatchError, match="size 101 differs"):
        manifests.check_files(make_manifest(), root)


def test_a_hash_mismatch_is_refused(root: pathlib.Path) -> None:
    (root / "yolo/1/model.plan").write_bytes(b"\x01" * 99 + b"\x00")
    manifests.check_files(make_manifest(), root)  # same size: only the hash tells
    with pytest.raises(errors.ManifestMismatchError, match=r"'yolo/1/model\.plan'.*SHA-256"):
        manifests.check_ciphertext_hashes(make_manifest(), root)
