"""Errors raised by `kestrel.security`; none of them ever carries key bytes in its message.

KestrelError
├── EngineError
│   └── IntegrityError            (kestrel.api.errors) an artifact does not match its hash, signature or key
│       ├── DecryptionError       a chunk failed authentication, or the stream is truncated, extended or malformed
│       ├── SignatureError        the manifest is not signed by the trusted key, or is not a valid manifest
│       ├── ManifestMismatchError a file is missing, unlisted, or differs in size or hash from the manifest
│       ├── KeyUnwrapError        the data key cannot be unwrapped by the given key-encryption key
│       │   └── PublicKeyOnlyError the key at hand is a public key, which wraps but never unwraps
│       └── EncryptionRequiredError a validly signed plaintext artifact where encryption is required (a downgrade)
├── UnsafePathError  (ValueError) a path would escape its root, or is not a regular file
├── TargetNotEmptyError (FileExistsError) unpacking would overwrite existing files
├── TargetIsMountPointError (OSError) the unpack target is a mount point, which cannot be renamed onto
├── KeyMaterialError (ValueError) a log record looks like it contains key material
└── SourceChangedError (OSError) a file changed size while it was being encrypted
"""

from __future__ import annotations

from kestrel.api import errors


class DecryptionError(errors.IntegrityError):
    """A file's ciphertext failed authentication; the message names the file and the chunk."""

    def __init__(self, path: str, message: str, *, chunk: int | None = None) -> None:
        where = f"{path!r}" if chunk is None else f"{path!r} chunk {chunk}"
        super().__init__(f"Refused {where}: {message}")
        self.path = path
        self.chunk = chunk


class SignatureError(errors.IntegrityError):
    """The manifest's signature does not verify, or the signed document is malformed."""


class ManifestMismatchError(errors.IntegrityError):
    """The artifact's files do not match the signed manifest."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"Refused {path!r}: {message}")
        self.path = path


class KeyUnwrapError(errors.IntegrityError):
    """The wrapped data key does not open with the key-encryption key at hand."""


class PublicKeyOnlyError(KeyUnwrapError):
    """Unwrapping was asked of a public key (what a build holds); only the private key unwraps."""


class EncryptionRequiredError(errors.IntegrityError):
    """The artifact is signed but not encrypted, and the caller requires encryption."""


class UnsafePathError(errors.KestrelError, ValueError):
    """A path is absolute, climbs out of its root, or names something other than a regular file."""


class TargetNotEmptyError(errors.KestrelError, FileExistsError):
    """The unpack target exists and is not an empty directory."""


class TargetIsMountPointError(errors.KestrelError, OSError):
    """The unpack target is a mount point: point it at a folder inside the volume instead."""


class KeyMaterialError(errors.KestrelError, ValueError):
    """Something about to be logged looks like key material; the message names the field, never the value."""


class SourceChangedError(errors.KestrelError, OSError):
    """A file changed size while it was being encrypted, so its ciphertext would not match its manifest entry."""


class CertificateError(errors.KestrelError, ValueError):
    """A certificate does not verify for the asked purpose, or a name cannot go into one."""
