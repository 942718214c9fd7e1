"""The artifact manifest: every file's size and SHA-256, and for an encrypted artifact its wrapped data key, signed.

On disk the manifest is one JSON document, `{"manifest": {...}, "signature": {...}}`. The signature is Ed25519 over
a domain string followed by the manifest's canonical JSON: keys sorted, no whitespace, UTF-8, integers and strings
only (floats have no single canonical text, so they are refused outright). Verification checks the signature over
the canonical form of exactly what was parsed, and the parser refuses duplicate keys, so no two readers of one
document can see different manifests.

Two schemas, told apart by the body's `schema`, which also picks the signed domain string (`<schema>\n`), so a
signature made for one can never verify as the other:

- `.../v1` (`Manifest`): an encrypted artifact: algorithm, chunk size, wrapped data key, and both forms of each file.
- `.../v2` (`PlaintextManifest`): adds the explicit `encryption` field; its one value so far is `"none"`: a signed
  plaintext artifact (`spec.security.encryption.enabled: false`) listing each file's size and SHA-256 only.

Encrypted artifacts are still written as v1, byte for byte as before, so loaders that predate v2 keep reading every
encrypted engine, and refuse a plaintext one (a schema they do not know) rather than misreading it.

The wrapped key's `kekId` names how it was wrapped: `x25519/…` (what builds write now) or `local/…` (the symmetric
wrap of engines stored before). Both fit v1's fields unchanged, so v1 stays: a loader that predates X25519 parses such
a manifest and refuses it as wrapped by a KEK it does not hold, rather than misreading it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import pathlib
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import pydantic
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import alias_generators

from kestrel.security import envelope, errors, paths, streaming

SCHEMA: Final = "kestrel.dev/artifact-manifest/v1"  # encrypted artifacts
SCHEMA_V2: Final = "kestrel.dev/artifact-manifest/v2"  # signed plaintext artifacts ("encryption": "none")
ALGORITHM: Final = "AES256-GCM-HKDF-SHA256-STREAM/v1"
NO_ENCRYPTION: Final = "none"
MAX_DOCUMENT_SIZE = 16 << 20
_HASH_BLOCK = 1 << 20

Sha256Hex = Annotated[str, pydantic.StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$")]
ArtifactId = Annotated[str, pydantic.StringConstraints(strict=True, pattern=r"^[A-Za-z0-9._/-]{1,253}$")]
Size = Annotated[int, pydantic.Field(strict=True, ge=0)]
MetadataValue = pydantic.StrictStr | pydantic.StrictBool | pydantic.StrictInt


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        frozen=True, extra="forbid", alias_generator=alias_generators.to_camel, populate_by_name=True
    )


class _Entry(_Model):
    stored_as: ClassVar[str]

    path: pydantic.StrictStr
    size: Size
    sha256: Sha256Hex

    @pydantic.field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return paths.check_relative(value)


class FileEntry(_Entry):
    """One file of an encrypted artifact: its logical path and both of its forms."""

    stored_as: ClassVar[str] = "ciphertext"

    ciphertext_size: Size
    ciphertext_sha256: Sha256Hex

    @property
    def stored_size(self) -> int:
        return self.ciphertext_size

    @property
    def stored_sha256(self) -> str:
        return self.ciphertext_sha256


class PlainFileEntry(_Entry):
    """One file of a plaintext artifact: stored as it is, so its size and hash are those of the stored file."""

    stored_as: ClassVar[str] = "file"

    @property
    def stored_size(self) -> int:
        return self.size

    @property
    def stored_sha256(self) -> str:
        return self.sha256


class WrappedKeyRecord(_Model):
    kek_id: Annotated[str, pydantic.StringConstraints(strict=True, min_length=1, max_length=512)]
    ciphertext: Annotated[str, pydantic.StringConstraints(strict=True, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]

    @classmethod
    def of(cls, wrapped: envelope.WrappedKey) -> WrappedKeyRecord:
        return cls(kek_id=wrapped.kek_id, ciphertext=base64.b64encode(wrapped.ciphertext).decode())

    def to_wrapped(self) -> envelope.WrappedKey:
        try:
            return envelope.WrappedKey(self.kek_id, base64.b64decode(self.ciphertext, validate=True))
        except binascii.Error:
            raise errors.KeyUnwrapError("the manifest's wrapped key is not valid base64") from None


class Manifest(_Model):
    """What an encrypted artifact contains; trusted only as returned by `verify`."""

    schema_: Literal["kestrel.dev/artifact-manifest/v1"] = pydantic.Field(default=SCHEMA, alias="schema")
    artifact_id: ArtifactId
    algorithm: Literal["AES256-GCM-HKDF-SHA256-STREAM/v1"] = ALGORITHM
    chunk_size: Annotated[int, pydantic.Field(strict=True, ge=streaming.MIN_CHUNK_SIZE, le=streaming.MAX_CHUNK_SIZE)]
    wrapped_key: WrappedKeyRecord
    files: tuple[FileEntry, ...]
    metadata: dict[str, MetadataValue] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("files")
    @classmethod
    def _sorted_unique(cls, files: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
        _check_file_set([entry.path for entry in files])
        return files

    def entry(self, path: str) -> FileEntry:
        for candidate in self.files:
            if candidate.path == path:
                return candidate
        raise KeyError(path)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class PlaintextManifest(_Model):
    """What a signed plaintext artifact contains; trusted only as returned by `verify`.

    `encryption` has no default: a v2 body that does not say "none" in so many words does not parse.
    """

    schema_: Literal["kestrel.dev/artifact-manifest/v2"] = pydantic.Field(default=SCHEMA_V2, alias="schema")
    artifact_id: ArtifactId
    encryption: Literal["none"]
    files: tuple[PlainFileEntry, ...]
    metadata: dict[str, MetadataValue] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("files")
    @classmethod
    def _sorted_unique(cls, files: tuple[PlainFileEntry, ...]) -> tuple[PlainFileEntry, ...]:
        _check_file_set([entry.path for entry in files])
        return files

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


AnyManifest: TypeAlias = Manifest | PlaintextManifest
_SCHEMAS: Final[dict[str, type[Manifest] | type[PlaintextManifest]]] = {
    SCHEMA: Manifest,
    SCHEMA_V2: PlaintextManifest,
}


def _check_file_set(names: list[str]) -> None:
    if names != sorted(set(names)):
        raise ValueError("file paths must be unique and sorted")
    # "a" and "a/b" cannot both be files; refusing it here keeps unpack from half-writing such a tree.
    parts = [name.split("/") for name in names]
    ancestors = {"/".join(split[:depth]) for split in parts for depth in range(1, len(split))}
    if ancestors & set(names):
        raise ValueError("a file path is also used as a directory")


def _domain(schema: str) -> bytes:
    return schema.encode() + b"\n"


def canonical_json(value: Any) -> bytes:
    """The one byte string a JSON value signs as."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519/" + hashlib.sha256(raw).hexdigest()[:16]


def sign(manifest: AnyManifest, private_key: ed25519.Ed25519PrivateKey) -> bytes:
    """Return the signed manifest document, ready to be written as `manifest.json`."""
    body = manifest.to_json()
    signature = private_key.sign(_domain(manifest.schema_) + canonical_json(body))
    record = {
        "algorithm": "Ed25519",
        "keyId": key_id(private_key.public_key()),
        "value": base64.b64encode(signature).decode(),
    }
    return canonical_json({"manifest": body, "signature": record}) + b"\n"


def verify(document: bytes, public_key: ed25519.Ed25519PublicKey) -> AnyManifest:
    """Check the signature with the trusted `public_key`, then parse; refuse with `SignatureError`.

    Returns a `Manifest` (encrypted) or a `PlaintextManifest`; a caller that needs encryption must check which.
    """
    if len(document) > MAX_DOCUMENT_SIZE:
        raise errors.SignatureError("manifest document is too large")
    parsed = _parse(document)
    if not isinstance(parsed, dict) or set(parsed) != {"manifest", "signature"}:
        raise errors.SignatureError("manifest document must hold exactly 'manifest' and 'signature'")
    body, record = parsed["manifest"], parsed["signature"]
    if not isinstance(record, dict) or set(record) != {"algorithm", "keyId", "value"}:
        raise errors.SignatureError("manifest signature record is malformed")
    if record["algorithm"] != "Ed25519":
        raise errors.SignatureError("manifest signature algorithm is not Ed25519")
    trusted = key_id(public_key)
    if record["keyId"] != trusted:
        raise errors.SignatureError(f"manifest is signed by {record['keyId']!r}, not by the trusted key {trusted}")
    # The schema picks the domain string before the signature is checked; that is safe because the schema is also
    # inside the signed body, and an unknown one is refused without echoing it (it could be anything).
    schema = body.get("schema") if isinstance(body, dict) else None
    if not isinstance(schema, str) or schema not in _SCHEMAS:
        raise errors.SignatureError("manifest schema is not one this version of Kestrel reads")
    model = _SCHEMAS[schema]
    try:
        signature = base64.b64decode(record["value"], validate=True)
        public_key.verify(signature, _domain(schema) + canonical_json(body))
    except (InvalidSignature, binascii.Error, TypeError, ValueError):
        raise errors.SignatureError("manifest signature does not verify") from None
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as error:
        # Locations and messages only: inputs could be anything the signer put there.
        problems = "; ".join(
            ".".join(map(str, item["loc"])) + ": " + item["msg"] for item in error.errors(include_input=False)
        )
        raise errors.SignatureError(f"signed manifest is malformed: {problems}") from None


def _parse(document: bytes) -> Any:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise errors.SignatureError("manifest document repeats a key")
        return dict(pairs)

    def no_floats(text: str) -> Any:
        raise errors.SignatureError("manifest document holds a non-integer number")

    try:
        return json.loads(document, object_pairs_hook=unique, parse_float=no_floats, parse_constant=no_floats)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.SignatureError("manifest document is not JSON") from None


def check_files(manifest: AnyManifest, root: pathlib.Path) -> None:
    """Every listed file present with its stored size, nothing unlisted; cheap (no reading)."""
    try:
        present = set(paths.walk_files(root)) if root.exists() or root.is_symlink() else set()
    except errors.UnsafePathError as error:
        raise errors.ManifestMismatchError(str(root), str(error)) from None
    listed = {entry.path for entry in manifest.files}
    for path in sorted(listed - present):
        raise errors.ManifestMismatchError(path, "listed in the manifest but missing")
    for path in sorted(present - listed):
        raise errors.ManifestMismatchError(path, "present but not listed in the manifest")
    for entry in manifest.files:
        size = paths.resolve_below(root, entry.path).stat().st_size
        if size != entry.stored_size:
            raise errors.ManifestMismatchError(
                entry.path, f"size {size} differs from the manifest's {entry.stored_size}"
            )


def check_stored_hashes(manifest: AnyManifest, root: pathlib.Path) -> None:
    """Hash every stored file (ciphertext, or the file itself) against the manifest; needs no key."""
    check_files(manifest, root)
    for entry in manifest.files:
        digest = hashlib.sha256()
        with paths.resolve_below(root, entry.path).open("rb") as reader:
            while block := reader.read(_HASH_BLOCK):
                digest.update(block)
        if digest.hexdigest() != entry.stored_sha256:
            raise errors.ManifestMismatchError(entry.path, f"{entry.stored_as} SHA-256 differs from the manifest's")


# The name from before plaintext artifacts existed; it checks both kinds.
check_ciphertext_hashes = check_stored_hashes


def generate_signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def private_key_to_pem(private_key: ed25519.Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_to_pem(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> ed25519.Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("the verification key is not an Ed25519 public key")
    return key
