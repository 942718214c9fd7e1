"""X25519 key-encryption keys: whoever holds the public key can wrap a data key; only the private key unwraps it.

The 32 bytes a user keeps in `spec.security.encryption.keySecret` are the X25519 private key; its public key is
derived from them. A build runs user code (it unpickles a checkpoint), so it gets the public key alone
(`PublicKek`): it can seal the engine it built, and can open no engine, its own included.

A wrap follows HPKE's base mode (RFC 9180: DHKEM(X25519, HKDF-SHA256), AES-256-GCM) in structure, not byte for
byte: a fresh ephemeral key pair per wrap; X25519 of the ephemeral private key with the recipient's public key;
HKDF-SHA256 over the shared secret, with the versioned domain string as salt and, as info, the domain, the
ephemeral public key, the recipient's public key and the context (the artifact id), so the derived key is bound to
all of them; AES-256-GCM under that key seals the data key, with the context as associated data again. The wrapped
form is the ephemeral public key (32 bytes), then the GCM ciphertext and tag. Each derived key seals one message,
so its nonce is derived along with it instead of drawn at random.

Both sides name a key by its public key (`key_id`), so a build and a loader agree on the id with different halves.
The same 32 bytes also opened engines wrapped before this scheme (`kms.LocalKek`, AES-256-GCM with the bytes as a
symmetric key, id `local/…`); `PrivateKek.legacy` is that form, for unwrapping only (see `key_ring`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kestrel.security import errors, kms

KEY_SIZE = 32
ID_PREFIX = "x25519/"
_DOMAIN = b"kestrel/wrap/x25519-hkdf-sha256-aes256gcm/v1"
_ID_DOMAIN = b"kestrel/kek-id/x25519/v1\x00"
_AEAD_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16


def key_id(public_key: x25519.X25519PublicKey) -> str:
    """`x25519/` and 16 hex digits of a domain-separated SHA-256 of the public key: safe to print."""
    return ID_PREFIX + hashlib.sha256(_ID_DOMAIN + _raw(public_key)).hexdigest()[:16]


class PublicKek:
    """The public half of a KEK: wraps data keys for the holder of the private half, and cannot unwrap them."""

    def __init__(self, public_key: x25519.X25519PublicKey) -> None:
        try:
            # A low-order point would give every wrap the same, public, shared secret; X25519 refuses it.
            x25519.X25519PrivateKey.generate().exchange(public_key)
        except ValueError:
            raise ValueError("not a usable X25519 public key") from None
        self._public_key = public_key
        self._key_id = key_id(public_key)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKek:
        if len(raw) != KEY_SIZE:
            raise ValueError("an X25519 public key must be 32 bytes")
        return cls(x25519.X25519PublicKey.from_public_bytes(raw))

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKek:
        """A `PUBLIC KEY` PEM block (SubjectPublicKeyInfo) of an X25519 key; ValueError for anything else."""
        try:
            loaded = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise ValueError("not a PEM public key") from None
        if not isinstance(loaded, x25519.X25519PublicKey):
            raise ValueError("not an X25519 public key")
        return cls(loaded)

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"PublicKek({self._key_id!r})"

    def to_pem(self) -> bytes:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        ephemeral = x25519.X25519PrivateKey.generate()
        enc = _raw(ephemeral.public_key())
        aead, nonce = _derive(ephemeral.exchange(self._public_key), enc, _raw(self._public_key), context)
        return enc + aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        raise errors.PublicKeyOnlyError(
            f"KEK {self._key_id} is a public key: it wraps data keys but cannot unwrap them (that needs the private "
            "key from the KEK Secret)"
        )


class PrivateKek:
    """The private half of a KEK, the 32 bytes of a KEK Secret: wraps as its public half does, and unwraps."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a key-encryption key must be 32 bytes")
        self._private_key = x25519.X25519PrivateKey.from_private_bytes(key)
        self._public = PublicKek(self._private_key.public_key())
        self._recipient = _raw(self._private_key.public_key())
        self._legacy = kms.LocalKek(key)

    @classmethod
    def generate(cls) -> PrivateKek:
        return cls(x25519.X25519PrivateKey.generate().private_bytes_raw())

    @property
    def key_id(self) -> str:
        return self._public.key_id

    @property
    def public(self) -> PublicKek:
        return self._public

    @property
    def legacy(self) -> kms.LocalKek:
        """The same bytes as the symmetric KEK of engines wrapped before X25519: for unwrapping those only."""
        return self._legacy

    def __repr__(self) -> str:
        return f"PrivateKek({self.key_id!r})"

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        return self._public.wrap(data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) < KEY_SIZE + _TAG_SIZE:
            raise errors.KeyUnwrapError(f"wrapped key for KEK {self.key_id} is truncated")
        enc = wrapped[:KEY_SIZE]
        try:
            shared = self._private_key.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        except ValueError:
            raise errors.KeyUnwrapError(f"wrapped key for KEK {self.key_id} has an unusable ephemeral key") from None
        aead, nonce = _derive(shared, enc, self._recipient, context)
        try:
            return aead.decrypt(nonce, wrapped[KEY_SIZE:], context)
        except InvalidTag:
            raise errors.KeyUnwrapError(
                f"KEK {self.key_id} cannot unwrap this data key (wrong key, wrong artifact, or tampered)"
            ) from None


def key_ring(keks: Sequence[PrivateKek]) -> kms.KeyRing:
    """The ring of a KEK Secret's keys, current first: wraps go to the first key's X25519 form, and every key
    unwraps in both forms, X25519 and legacy, so engines stored before X25519 keep loading with the same files."""
    if not keks:
        raise ValueError("a key ring needs at least one key")
    return kms.KeyRing(keks[0], [form for kek in keks for form in (kek.legacy, kek)])


def _derive(shared: bytes, enc: bytes, recipient: bytes, context: bytes) -> tuple[AESGCM, bytes]:
    # Everything before the context has a fixed length, so no two (enc, recipient, context) give the same info.
    info = _DOMAIN + b"\x00" + enc + recipient + context
    okm = HKDF(hashes.SHA256(), _AEAD_KEY_SIZE + _NONCE_SIZE, salt=_DOMAIN, info=info).derive(shared)
    return AESGCM(okm[:_AEAD_KEY_SIZE]), okm[_AEAD_KEY_SIZE:]


def _raw(public_key: x25519.X25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()
