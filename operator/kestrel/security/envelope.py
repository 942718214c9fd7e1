"""Envelope encryption: one fresh data key per engine, stored only wrapped by a key-encryption key.

The wrapped form names the KEK that wrapped it, so a loader picks the right KEK from a key ring, and rotating the
KEK (`rewrap`) replaces a few dozen bytes in the manifest without touching a byte of the engine's ciphertext.

Wrapping needs only what the provider can wrap with, which for an X25519 KEK (`x25519.PublicKek`) is a public key;
unwrapping needs the private key. The KEK id says which scheme wrapped a key (`x25519/…`, or `local/…` for the
symmetric keys of engines stored before), so a manifest's format is the same for both.
"""

from __future__ import annotations

import dataclasses
import secrets

from kestrel.security import errors, kms, streaming


@dataclasses.dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by the KEK `kek_id`; safe to store and to show (it is ciphertext)."""

    kek_id: str
    ciphertext: bytes


def generate_data_key() -> bytes:
    return secrets.token_bytes(streaming.KEY_SIZE)


def wrap(kek: kms.KeyEncryptionKey, data_key: bytes, context: bytes) -> WrappedKey:
    """Wrap `data_key` under `kek`, bound to `context` (the artifact id)."""
    return WrappedKey(kek.key_id, kek.wrap(data_key, context))


def unwrap(kek: kms.KeyEncryptionKey | kms.KeyRing, wrapped: WrappedKey, context: bytes) -> bytes:
    """Recover the data key; refuse with `KeyUnwrapError` if `kek` (or no KEK of the ring) wrapped it."""
    provider = kek.get(wrapped.kek_id) if isinstance(kek, kms.KeyRing) else kek
    if provider.key_id != wrapped.kek_id:
        raise errors.KeyUnwrapError(f"data key is wrapped by KEK {wrapped.kek_id}, not by {provider.key_id}")
    data_key = provider.unwrap(wrapped.ciphertext, context)
    if len(data_key) != streaming.KEY_SIZE:
        raise errors.KeyUnwrapError(f"KEK {wrapped.kek_id} unwrapped a key of the wrong length")
    return data_key


def rewrap(
    wrapped: WrappedKey, old: kms.KeyEncryptionKey | kms.KeyRing, new: kms.KeyEncryptionKey, context: bytes
) -> WrappedKey:
    """Move a data key from `old` to `new`; the data key, and so every ciphertext byte, stays the same."""
    return wrap(new, unwrap(old, wrapped, context), context)
