"""Encrypted artifacts: a model repository packed as ciphertext files plus a signed manifest, and back.

Layout of an artifact directory (what the engine store holds):

    manifest.json         the signed manifest (see `manifest`)
    files/<path>          one streaming-AEAD ciphertext per file of the model repository, at its logical path

`unpack` is what `kestrel load` runs before Triton starts. Triton must never see a half-verified repository, so
everything is decrypted into a staging directory beside the target (same filesystem) and the staging directory is
renamed onto the target only after every file verified: chunk tags, lengths, plaintext hashes. On any failure the
staging directory is removed and the target is left as it was. The target must be absent or an empty directory
(rename(2) replaces an empty directory atomically); a mount point cannot be renamed onto, so point the target at a
directory inside the memory-backed volume, not at its root.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.security import envelope, errors, kms, paths, streaming
from kestrel.security import manifest as manifests

MANIFEST_NAME = "manifest.json"
FILES_DIR = "files"
STAGING_PREFIX = ".kestrel-staging-"


class _HashingReader:
    def __init__(self, inner: streaming.Source) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()

    def readinto(self, buffer: memoryview, /) -> int | None:
        got = self._inner.readinto(buffer)
        if got:
            self.sha256.update(buffer[:got])
        return got


class _HashingWriter:
    def __init__(self, inner: streaming.Sink) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: memoryview | bytes, /) -> int | None:
        self.sha256.update(data)
        self.size += len(data)
        return self._inner.write(data)


def pack(
    source: pathlib.Path,
    artifact: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey,
    signing_key: ed25519.Ed25519PrivateKey,
    artifact_id: str,
    metadata: Mapping[str, str | int | bool] | None = None,
    chunk_size: int = streaming.DEFAULT_CHUNK_SIZE,
) -> manifests.Manifest:
    """Encrypt every regular file under `source` into `artifact` (absent or empty) and sign the manifest."""
    streaming.check_chunk_size(chunk_size)
    _require_empty(artifact)
    data_key = envelope.generate_data_key()
    wrapped = envelope.wrap(kek, data_key, artifact_id.encode())
    entries = []
    for path in paths.walk_files(source):
        dst = paths.resolve_below(artifact / FILES_DIR, path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with paths.resolve_below(source, path).open("rb") as raw, dst.open("xb") as out:
            reader, writer = _HashingReader(raw), _HashingWriter(out)
            size = os.fstat(raw.fileno()).st_size
            streaming.encrypt_stream(data_key, path, reader, writer, size=size, chunk_size=chunk_size)
        entries.append(
            manifests.FileEntry(
                path=path,
                size=size,
                sha256=reader.sha256.hexdigest(),
                ciphertext_size=writer.size,
                ciphertext_sha256=writer.sha256.hexdigest(),
            )
        )
    result = manifests.Manifest(
        artifact_id=artifact_id,
        chunk_size=chunk_size,
        wrapped_key=manifests.WrappedKeyRecord.of(wrapped),
        files=tuple(entries),
        metadata=dict(metadata or {}),
    )
    # The manifest is written last, so an interrupted pack leaves an artifact that no loader accepts.
    _write_atomically(artifact / MANIFEST_NAME, manifests.sign(result, signing_key))
    return result


def read_manifest(artifact: pathlib.Path, verify_key: ed25519.Ed25519PublicKey) -> manifests.Manifest:
    """Read and verify `manifest.json`, and check the artifact holds nothing but it and `files/`."""
    path = artifact / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        raise errors.ManifestMismatchError(MANIFEST_NAME, "missing or not a regular file")
    with path.open("rb") as reader:
        # Check the size first: read(limit) would allocate the whole limit up front, whatever the file holds.
        if os.fstat(reader.fileno()).st_size > manifests.MAX_DOCUMENT_SIZE:
            raise errors.SignatureError("manifest document is too large")
        document = reader.read()
    result = manifests.verify(document, verify_key)
    for child in sorted(artifact.iterdir()):
        if child.name not in (MANIFEST_NAME, FILES_DIR) or child.is_symlink():
            raise errors.ManifestMismatchError(child.name, "present but not part of an artifact")
    files = artifact / FILES_DIR
    if result.files and (files.is_symlink() or not files.is_dir()):
        raise errors.ManifestMismatchError(FILES_DIR, "missing or not a directory")
    return result


def verify(artifact: pathlib.Path, verify_key: ed25519.Ed25519PublicKey) -> manifests.Manifest:
    """Check signature, file set, sizes and ciphertext hashes; needs no key-encryption key."""
    result = read_manifest(artifact, verify_key)
    manifests.check_ciphertext_hashes(result, artifact / FILES_DIR)
    return result


def unpack(
    artifact: pathlib.Path,
    target: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey | kms.KeyRing,
    verify_key: ed25519.Ed25519PublicKey,
    expected_artifact_id: str | None = None,
    file_mode: int = 0o640,
    dir_mode: int = 0o750,
) -> manifests.Manifest:
    """Decrypt `artifact` into `target`, which receives nothing unless the whole artifact verified.

    `kek` may be a `kms.KeyRing`. `expected_artifact_id` (the engine key the caller asked for) stops a validly
    signed but different artifact, e.g. an older engine, from being substituted. Modes default to group-readable
    because Triton may run under another user of the pod's fsGroup.
    """
    result = read_manifest(artifact, verify_key)
    if expected_artifact_id is not None and result.artifact_id != expected_artifact_id:
        raise errors.ManifestMismatchError(
            MANIFEST_NAME, f"artifact id {result.artifact_id!r} is not the expected {expected_artifact_id!r}"
        )
    files = artifact / FILES_DIR
    manifests.check_files(result, files)
    _require_empty(target)
    data_key = envelope.unwrap(kek, result.wrapped_key.to_wrapped(), result.artifact_id.encode())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
    try:
        for entry in result.files:
            _decrypt_entry(
                data_key,
                result=result,
                entry=entry,
                files=files,
                staging=staging,
                file_mode=file_mode,
                dir_mode=dir_mode,
            )
        staging.chmod(dir_mode)
        try:
            staging.rename(target)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise errors.TargetNotEmptyError(f"{target} filled up while the artifact was unpacked") from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def rewrap(
    artifact: pathlib.Path,
    *,
    old: kms.KeyEncryptionKey | kms.KeyRing,
    new: kms.KeyEncryptionKey,
    signing_key: ed25519.Ed25519PrivateKey,
    verify_key: ed25519.Ed25519PublicKey,
) -> manifests.Manifest:
    """Re-wrap the artifact's data key under `new` and re-sign the manifest; no ciphertext file is touched.

    Idempotent: an artifact already wrapped by `new` is left as it is, so an interrupted rotation can rerun.
    """
    current = read_manifest(artifact, verify_key)
    wrapped = current.wrapped_key.to_wrapped()
    if wrapped.kek_id == new.key_id:
        return current
    rewrapped = envelope.rewrap(wrapped, old, new, current.artifact_id.encode())
    updated = current.model_copy(update={"wrapped_key": manifests.WrappedKeyRecord.of(rewrapped)})
    _write_atomically(artifact / MANIFEST_NAME, manifests.sign(updated, signing_key))
    return updated


def _decrypt_entry(
    data_key: bytes,
    *,
    result: manifests.Manifest,
    entry: manifests.FileEntry,
    files: pathlib.Path,
    staging: pathlib.Path,
    file_mode: int,
    dir_mode: int,
) -> None:
    dst = paths.resolve_below(staging, entry.path)
    dst.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    # O_EXCL|O_NOFOLLOW: nothing in the fresh staging directory may be a pre-planted link.
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    # The ciphertext is not hashed here: every chunk is authenticated under a data key only the signed manifest's
    # wrapped key yields, and the signed plaintext hash below pins the content even against a holder of that key.
    # Hashing the ciphertext as well would add a second SHA-256 pass and catch nothing more; `verify` does it for
    # keyless integrity checks of the store.
    with os.fdopen(fd, "wb") as out, paths.resolve_below(files, entry.path).open("rb") as reader:
        os.fchmod(fd, file_mode)
        writer = _HashingWriter(out)
        streaming.decrypt_stream(
            data_key, entry.path, reader, writer, total_size=entry.ciphertext_size, chunk_size=result.chunk_size
        )
    if writer.size != entry.size or writer.sha256.hexdigest() != entry.sha256:
        raise errors.ManifestMismatchError(entry.path, "plaintext size or SHA-256 differs from the manifest's")


def _require_empty(path: pathlib.Path) -> None:
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise errors.TargetNotEmptyError(f"{path} exists and is not an empty directory")


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".kestrel-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as writer:
            writer.write(data)
            writer.flush()
            os.fsync(writer.fileno())
        part = pathlib.Path(name)
        part.chmod(0o644)
        part.replace(path)
    except BaseException:
        pathlib.Path(name).unlink(missing_ok=True)
        raise
