"""Artifacts: a model repository packed as files plus a signed manifest, and back.

Layout of an artifact directory (what the engine store holds):

    manifest.json         the signed manifest (see `manifest`)
    files/<path>          per file of the model repository, at its logical path: its streaming-AEAD ciphertext,
                          or, in a signed plaintext artifact (`kek=None`, `"encryption": "none"`), the file as it is

`unpack` is what `kestrel load` runs before Triton starts. Triton must never see a half-verified repository, so
everything is decrypted (or copied) into a staging directory beside the target (same filesystem) and the staging
directory is renamed onto the target only after every file verified: chunk tags, lengths, plaintext hashes. On any
failure the staging directory is removed and the target is left as it was. The target must be absent or an empty
directory (rename(2) replaces an empty directory atomically); a mount point cannot be renamed onto, so point the
target at a directory inside the memory-backed volume, not at its root.

A plaintext artifact is as tamper-proof as an encrypted one (signed sizes and hashes), but not confidential, and
the signer may have signed both kinds for one artifact id (encryption switched on later). So whoever can write the
store could put back such a plaintext artifact in place of the encrypted one; a caller whose spec says "encrypted"
passes `require_encryption=True`, which refuses every plaintext artifact whatever its signature.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import overload

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.security import envelope, errors, kms, paths, streaming
from kestrel.security import manifest as manifests

MANIFEST_NAME = "manifest.json"
FILES_DIR = "files"
STAGING_PREFIX = ".kestrel-staging-"
_COPY_BLOCK = 1 << 20


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


@overload
def pack(
    source: pathlib.Path,
    artifact: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey,
    signing_key: ed25519.Ed25519PrivateKey,
    artifact_id: str,
    metadata: Mapping[str, str | int | bool] | None = None,
    chunk_size: int = streaming.DEFAULT_CHUNK_SIZE,
) -> manifests.Manifest: ...


@overload
def pack(
    source: pathlib.Path,
    artifact: pathlib.Path,
    *,
    kek: None,
    signing_key: ed25519.Ed25519PrivateKey,
    artifact_id: str,
    metadata: Mapping[str, str | int | bool] | None = None,
    chunk_size: int = streaming.DEFAULT_CHUNK_SIZE,
) -> manifests.PlaintextManifest: ...


def pack(
    source: pathlib.Path,
    artifact: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey | None,
    signing_key: ed25519.Ed25519PrivateKey,
    artifact_id: str,
    metadata: Mapping[str, str | int | bool] | None = None,
    chunk_size: int = streaming.DEFAULT_CHUNK_SIZE,
) -> manifests.AnyManifest:
    """Encrypt every regular file under `source` into `artifact` (absent or empty) and sign the manifest.

    `kek=None` packs a signed plaintext artifact instead (`chunk_size` is then unused). `kek` has no default, so
    plaintext is always a visible choice at the call site, never the result of a forgotten argument.
    """
    streaming.check_chunk_size(chunk_size)
    _require_empty(artifact)
    if kek is None:
        return _pack_plaintext(source, artifact, signing_key=signing_key, artifact_id=artifact_id, metadata=metadata)
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


def _pack_plaintext(
    source: pathlib.Path,
    artifact: pathlib.Path,
    *,
    signing_key: ed25519.Ed25519PrivateKey,
    artifact_id: str,
    metadata: Mapping[str, str | int | bool] | None,
) -> manifests.PlaintextManifest:
    entries = []
    for path in paths.walk_files(source):
        dst = paths.resolve_below(artifact / FILES_DIR, path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with paths.resolve_below(source, path).open("rb") as raw, dst.open("xb") as out:
            size = os.fstat(raw.fileno()).st_size
            writer = _HashingWriter(out)
            # The hash is of the bytes written, so the manifest always matches the stored file; the size check
            # refuses a source that changed meanwhile, as encryption does.
            if not _copy_exactly(raw, writer, size):
                raise errors.SourceChangedError(f"{path!r} changed size while it was packed")
        entries.append(manifests.PlainFileEntry(path=path, size=size, sha256=writer.sha256.hexdigest()))
    result = manifests.PlaintextManifest(
        artifact_id=artifact_id,
        encryption=manifests.NO_ENCRYPTION,
        files=tuple(entries),
        metadata=dict(metadata or {}),
    )
    _write_atomically(artifact / MANIFEST_NAME, manifests.sign(result, signing_key))
    return result


def read_manifest(artifact: pathlib.Path, verify_key: ed25519.Ed25519PublicKey) -> manifests.AnyManifest:
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


def verify(
    artifact: pathlib.Path, verify_key: ed25519.Ed25519PublicKey, *, require_encryption: bool = False
) -> manifests.AnyManifest:
    """Check signature, file set, sizes and stored hashes; needs no key-encryption key."""
    result = read_manifest(artifact, verify_key)
    _check_encryption(result, require_encryption=require_encryption)
    manifests.check_stored_hashes(result, artifact / FILES_DIR)
    return result


def unpack(
    artifact: pathlib.Path,
    target: pathlib.Path,
    *,
    kek: kms.KeyEncryptionKey | kms.KeyRing | None = None,
    verify_key: ed25519.Ed25519PublicKey,
    require_encryption: bool = False,
    expected_artifact_id: str | None = None,
    file_mode: int = 0o640,
    dir_mode: int = 0o750,
) -> manifests.AnyManifest:
    """Decrypt (or copy) `artifact` into `target`, which receives nothing unless the whole artifact verified.

    `kek` may be a `kms.KeyRing`; it is needed only for an encrypted artifact, and unused for a plaintext one.
    `require_encryption` refuses a plaintext artifact, signed or not (see the module's docstring).
    `expected_artifact_id` (the engine key the caller asked for) stops a validly signed but different artifact,
    e.g. an older engine, from being substituted. Modes default to group-readable because Triton may run under
    another user of the pod's fsGroup.
    """
    result = read_manifest(artifact, verify_key)
    _check_encryption(result, require_encryption=require_encryption)
    if expected_artifact_id is not None and result.artifact_id != expected_artifact_id:
        raise errors.ManifestMismatchError(
            MANIFEST_NAME, f"artifact id {result.artifact_id!r} is not the expected {expected_artifact_id!r}"
        )
    files = artifact / FILES_DIR
    manifests.check_files(result, files)
    require_unpackable(target)
    fill = _filler(result, kek)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
    try:
        for entry in result.files:
            _restore_entry(fill, entry=entry, files=files, staging=staging, file_mode=file_mode, dir_mode=dir_mode)
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


def open_file(
    document: bytes,
    path: str,
    read: Callable[[str, int], bytes],
    *,
    kek: kms.KeyEncryptionKey | kms.KeyRing | None,
    verify_key: ed25519.Ed25519PublicKey,
    require_encryption: bool = False,
    expected_artifact_id: str | None = None,
    limit: int,
) -> bytes | None:
    """One file of a stored artifact, verified and decrypted in memory; None when the manifest lists no such file.

    For small files the operator reads without downloading the engine (the build's probes): `document` is the stored
    manifest, `read(relative, limit)` returns the stored bytes of `files/<path>`. The same checks as `unpack`: the
    signature, the artifact id, encryption where required, every chunk's tag, and the signed size and SHA-256 of the
    plaintext.
    """
    result = manifests.verify(document, verify_key)
    _check_encryption(result, require_encryption=require_encryption)
    if expected_artifact_id is not None and result.artifact_id != expected_artifact_id:
        raise errors.ManifestMismatchError(
            MANIFEST_NAME, f"artifact id {result.artifact_id!r} is not the expected {expected_artifact_id!r}"
        )
    entry = next((e for e in result.files if e.path == path), None)
    if entry is None:
        return None
    if entry.size > limit:
        raise errors.ManifestMismatchError(path, f"is {entry.size} bytes, more than the {limit} read")
    stored = read(f"{FILES_DIR}/{path}", entry.stored_size)
    if len(stored) != entry.stored_size:
        raise errors.ManifestMismatchError(path, "stored size differs from the manifest's")
    out = io.BytesIO()
    writer = _HashingWriter(out)
    _filler(result, kek)(entry, io.BufferedReader(io.BytesIO(stored)), writer)
    if writer.size != entry.size or writer.sha256.hexdigest() != entry.sha256:
        raise errors.ManifestMismatchError(path, "plaintext size or SHA-256 differs from the manifest's")
    return out.getvalue()


def rewrap(
    artifact: pathlib.Path,
    *,
    old: kms.KeyEncryptionKey | kms.KeyRing,
    new: kms.KeyEncryptionKey,
    signing_key: ed25519.Ed25519PrivateKey,
    verify_key: ed25519.Ed25519PublicKey,
) -> manifests.AnyManifest:
    """Re-wrap the artifact's data key under `new` and re-sign the manifest; no ciphertext file is touched.

    Idempotent: an artifact already wrapped by `new` is left as it is, so an interrupted rotation can rerun. A
    plaintext artifact has no data key; it is left as it is too, and its manifest is returned.
    """
    current = read_manifest(artifact, verify_key)
    if not isinstance(current, manifests.Manifest):
        return current
    wrapped = current.wrapped_key.to_wrapped()
    if wrapped.kek_id == new.key_id:
        return current
    rewrapped = envelope.rewrap(wrapped, old, new, current.artifact_id.encode())
    updated = current.model_copy(update={"wrapped_key": manifests.WrappedKeyRecord.of(rewrapped)})
    _write_atomically(artifact / MANIFEST_NAME, manifests.sign(updated, signing_key))
    return updated


# Writes one stored file's content into the staging file; the caller checks size and hash of what was written.
_Fill = Callable[[manifests.FileEntry | manifests.PlainFileEntry, io.BufferedReader, _HashingWriter], None]


def _check_encryption(result: manifests.AnyManifest, *, require_encryption: bool) -> None:
    if require_encryption and not isinstance(result, manifests.Manifest):
        raise errors.EncryptionRequiredError(
            f"Refused {result.artifact_id!r}: it is signed but not encrypted, and encryption is required"
        )


def _filler(result: manifests.AnyManifest, kek: kms.KeyEncryptionKey | kms.KeyRing | None) -> _Fill:
    if not isinstance(result, manifests.Manifest):
        return _copy_entry
    if kek is None:
        raise errors.KeyUnwrapError(f"{result.artifact_id!r} is encrypted and no key-encryption key was given")
    data_key = envelope.unwrap(kek, result.wrapped_key.to_wrapped(), result.artifact_id.encode())
    chunk_size = result.chunk_size

    def decrypt(
        entry: manifests.FileEntry | manifests.PlainFileEntry, reader: io.BufferedReader, writer: _HashingWriter
    ) -> None:
        # The ciphertext is not hashed here: every chunk is authenticated under a data key only the signed
        # manifest's wrapped key yields, and the signed plaintext hash checked afterwards pins the content even
        # against a holder of that key. Hashing the ciphertext as well would add a second SHA-256 pass and catch
        # nothing more; `verify` does it for keyless integrity checks of the store.
        streaming.decrypt_stream(
            data_key, entry.path, reader, writer, total_size=entry.stored_size, chunk_size=chunk_size
        )

    return decrypt


def _copy_entry(
    entry: manifests.FileEntry | manifests.PlainFileEntry, reader: io.BufferedReader, writer: _HashingWriter
) -> None:
    # The signature pins size and SHA-256; both are checked on the bytes written, before the rename.
    if not _copy_exactly(reader, writer, entry.size):
        raise errors.ManifestMismatchError(entry.path, "size differs from the manifest's")


def _restore_entry(
    fill: _Fill,
    *,
    entry: manifests.FileEntry | manifests.PlainFileEntry,
    files: pathlib.Path,
    staging: pathlib.Path,
    file_mode: int,
    dir_mode: int,
) -> None:
    dst = paths.resolve_below(staging, entry.path)
    dst.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    # O_EXCL|O_NOFOLLOW: nothing in the fresh staging directory may be a pre-planted link; nor may the stored file
    # have become one since `check_files` looked.
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, file_mode)
        src = os.open(paths.resolve_below(files, entry.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(src, "rb") as reader:
            writer = _HashingWriter(out)
            fill(entry, reader, writer)
    if writer.size != entry.size or writer.sha256.hexdigest() != entry.sha256:
        raise errors.ManifestMismatchError(entry.path, "plaintext size or SHA-256 differs from the manifest's")


def _copy_exactly(src: io.BufferedReader, dst: streaming.Sink, size: int) -> bool:
    """Copy `size` bytes; False if `src` holds fewer or more. Reads at most one byte past `size`, so a file that
    keeps growing cannot fill the memory-backed target."""
    remaining = size
    while remaining:
        block = src.read(min(remaining, _COPY_BLOCK))
        if not block:
            return False
        dst.write(block)
        remaining -= len(block)
    return not src.read(1)


def _require_empty(path: pathlib.Path) -> None:
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise errors.TargetNotEmptyError(f"{path} exists and is not an empty directory")


def require_unpackable(path: pathlib.Path) -> None:
    """Refuse a target that `unpack` could not fill: one with content, or a mount point (see the module docstring)."""
    _require_empty(path)
    if os.path.ismount(path):
        # The staging folder beside a mount point is on another filesystem (or read-only), and rename(2) onto a
        # mount point fails with EBUSY: say so before any work, with the fix.
        raise errors.TargetIsMountPointError(
            f"{path} is a mount point: unpack into a folder inside it, e.g. {path / 'repository'}"
        )


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
