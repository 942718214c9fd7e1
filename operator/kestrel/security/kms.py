"""Key-encryption keys (KEKs): the provider interface, the legacy symmetric provider, and the key ring.

A provider wraps and unwraps data keys and never hands out its own key, so the same interface would fit an external
KMS (AWS KMS `Encrypt`/`Decrypt` with an encryption context, Vault transit), where the KEK never leaves the service.
No KMS client exists: every KEK is read from a Kubernetes Secret, and the API refuses
`spec.security.encryption.kms` until a loader can reach one. New wraps use X25519 (`x25519`), so that a build holds
only a public key; `LocalKek` is the symmetric form that wrapped engines before that, kept to unwrap them.

`LocalKek` wraps with AES-256-GCM and a random 96-bit nonce rather than AES-KW (RFC 3394/5649): GCM takes associated
data, so a wrapped key is bound to the KEK id and to the artifact it belongs to, and moving a wrapped key onto
another artifact fails to unwrap instead of decrypting garbage later. AES-KW has no associated data and would need
that binding elsewhere. A KEK wraps one key per engine plus one per rotation, far below GCM's 2^32 random-nonce
limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kestrel.security import errors

KEK_SIZE = 32
_NONCE_SIZE = 12
_WRAP_DOMAIN = b"kestrel/wrap/v1\x00"
_ID_DOMAIN = b"kestrel/kek-id/v1"


class KeyEncryptionKey(Protocol):
    """A key-encryption key that wraps data keys; `key_id` names it in manifests and logs."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKek:
    """A 256-bit symmetric KEK held in memory: what wrapped engines before X25519, now used only to unwrap them.

    It can still wrap (tests pack legacy artifacts with it), but nothing in Kestrel wraps new keys with it.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEK_SIZE:
            raise ValueError("a key-encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        # The id is a MAC under the key itself: stable, different for every KEK, and safe to print, since without
        # the key it says nothing about the key (a bare hash of a 256-bit random key would be too; this is simpler
        # to argue about).
        self._key_id = "local/" + hmac.new(key, _ID_DOMAIN, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def generate(cls) -> LocalKek:
        return cls(secrets.token_bytes(KEK_SIZE))

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"LocalKek({self._key_id!r})"

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, data_key, self._associated_data(context))

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) < _NONCE_SIZE + 16:
            raise errors.KeyUnwrapError(f"wrapped key for KEK {self._key_id} is truncated")
        try:
            return self._aead.decrypt(wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], self._associated_data(context))
        except InvalidTag:
            raise errors.KeyUnwrapError(
                f"KEK {self._key_id} cannot unwrap this data key (wrong key, wrong artifact, or tampered)"
            ) from None

    def _associated_data(self, context: bytes) -> bytes:
        return _WRAP_DOMAIN + self._key_id.encode() + b"\x00" + context


class KeyRing:
    """Several KEKs by id: `envelope.unwrap` picks whichever wrapped a key; new keys go to the primary (the newest).

    A ring is deliberately not a `KeyEncryptionKey`: unwrapping needs the wrapped key's KEK id, which the
    provider interface does not carry, so a ring passed where one KEK is expected would guess.

    During `kestrel keys rotate` artifacts are wrapped under the old and the new KEK at once; a loader holding both
    serves either, which is what makes rotation free of downtime.
    """

    def __init__(self, primary: KeyEncryptionKey, others: Iterable[KeyEncryptionKey] = ()) -> None:
        self._primary = primary
        self._by_id = {kek.key_id: kek for kek in [*others, primary]}

    @property
    def primary(self) -> KeyEncryptionKey:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def get(self, key_id: str) -> KeyEncryptionKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id))
            raise errors.KeyUnwrapError(
                f"data key is wrapped by KEK {key_id}, which is not held (held: {known})"
            ) from None
