"""X25519 wraps: the public key wraps, only the private key unwraps, bound to the artifact, and the same key file
also unwraps what its legacy symmetric form wrapped."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519 as x25519_keys

from kestrel.api import errors as api_errors
from kestrel.security import envelope, errors, keyfiles, kms, x25519
from kestrel.security import manifest as manifests

KEK_BYTES = bytes(range(1, 33))
CONTEXT = b"vision/cams/0123abcd"


@pytest.fixture
def kek() -> x25519.PrivateKek:
    return x25519.PrivateKek(KEK_BYTES)


def test_the_public_key_wraps_and_the_private_key_unwraps(kek: x25519.PrivateKek) -> None:
    data_key = envelope.generate_data_key()
    wrapped = envelope.wrap(kek.public, data_key, CONTEXT)
    assert wrapped.kek_id == kek.key_id == kek.public.key_id
    assert data_key not in wrapped.ciphertext
    assert len(wrapped.ciphertext) == 32 + 32 + 16  # ephemeral public key, sealed data key, tag
    assert envelope.unwrap(kek, wrapped, CONTEXT) == data_key


def test_each_wrap_uses_a_fresh_ephemeral_key(kek: x25519.PrivateKek) -> None:
    data_key = envelope.generate_data_key()
    first, second = (kek.public.wrap(data_key, CONTEXT) for _ in range(2))
    assert first[:32] != second[:32] and first[32:] != second[32:]
    assert kek.unwrap(first, CONTEXT) == kek.unwrap(second, CONTEXT) == data_key


def test_the_private_key_wraps_as_its_public_key_does(kek: x25519.PrivateKek) -> None:
    data_key = envelope.generate_data_key()
    assert envelope.unwrap(kek, envelope.wrap(kek, data_key, CONTEXT), CONTEXT) == data_key


def test_a_public_key_refuses_to_unwrap_even_what_it_wrapped(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    with pytest.raises(errors.PublicKeyOnlyError, match="is a public key") as caught:
        envelope.unwrap(kek.public, wrapped, CONTEXT)
    assert isinstance(caught.value, errors.KeyUnwrapError)
    with pytest.raises(errors.PublicKeyOnlyError):
        envelope.unwrap(kms.KeyRing(kek.public), wrapped, CONTEXT)


def test_both_halves_compute_the_same_key_id_and_it_is_not_the_legacy_one(kek: x25519.PrivateKek) -> None:
    from_pem = x25519.PublicKek.from_pem(kek.public.to_pem())
    assert from_pem.key_id == kek.key_id
    assert kek.key_id.startswith(x25519.ID_PREFIX)
    assert kek.legacy.key_id == kms.LocalKek(KEK_BYTES).key_id
    assert kek.legacy.key_id.startswith("local/") and kek.legacy.key_id != kek.key_id
    assert x25519.PrivateKek(bytes(32)).key_id != kek.key_id
    # Only the key id, never key bytes, in what a log line would print.
    raw_public = x25519_keys.X25519PrivateKey.from_private_bytes(KEK_BYTES).public_key().public_bytes_raw()
    for shown in (kek.key_id, repr(kek), repr(kek.public)):
        assert KEK_BYTES.hex()[:8] not in shown and raw_public.hex()[:8] not in shown


def test_the_kek_is_the_x25519_private_key_itself(kek: x25519.PrivateKek) -> None:
    # What a user could check with any X25519 implementation: the public key is that of the 32 bytes they keep.
    expected = x25519_keys.X25519PrivateKey.from_private_bytes(KEK_BYTES).public_key()
    assert x25519.PublicKek(expected).key_id == kek.key_id
    assert x25519.PublicKek.from_bytes(expected.public_bytes_raw()).to_pem() == kek.public.to_pem()


def test_a_wrong_private_key_is_refused_by_id(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    other = x25519.PrivateKek.generate()
    with pytest.raises(errors.KeyUnwrapError, match=other.key_id) as caught:
        envelope.unwrap(other, wrapped, CONTEXT)
    assert isinstance(caught.value, api_errors.IntegrityError)


def test_a_wrong_private_key_with_a_forged_id_is_refused_by_authentication(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    impostor = x25519.PrivateKek.generate()
    with pytest.raises(errors.KeyUnwrapError, match="cannot unwrap"):
        envelope.unwrap(impostor, dataclasses.replace(wrapped, kek_id=impostor.key_id), CONTEXT)


def test_a_wrapped_key_moved_to_another_artifact_is_refused(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    for elsewhere in (b"vision/other/0123abcd", CONTEXT + b"x", CONTEXT[:-1], b""):
        with pytest.raises(errors.KeyUnwrapError, match="cannot unwrap"):
            envelope.unwrap(kek, wrapped, elsewhere)


@pytest.mark.parametrize("position", [0, 16, 31, 32, 50, 63, 64, -1])
def test_a_tampered_wrapped_key_is_refused(kek: x25519.PrivateKek, position: int) -> None:
    # 0-31: the ephemeral public key; 32-63: the sealed data key; 64-79: the tag.
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    damaged = bytearray(wrapped.ciphertext)
    damaged[position] ^= 0x40
    with pytest.raises(errors.KeyUnwrapError):
        envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=bytes(damaged)), CONTEXT)


def test_a_truncated_or_extended_wrapped_key_is_refused(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    for changed in (b"", wrapped.ciphertext[:32], wrapped.ciphertext[:47], wrapped.ciphertext[:-1]):
        with pytest.raises(errors.KeyUnwrapError):
            envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=changed), CONTEXT)
    with pytest.raises(errors.KeyUnwrapError):
        envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=wrapped.ciphertext + b"\x00"), CONTEXT)


def test_an_all_zero_ephemeral_key_is_refused(kek: x25519.PrivateKek) -> None:
    wrapped = envelope.wrap(kek.public, envelope.generate_data_key(), CONTEXT)
    forged = bytes(32) + wrapped.ciphertext[32:]
    with pytest.raises(errors.KeyUnwrapError, match="unusable ephemeral key"):
        envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=forged), CONTEXT)


def test_a_low_order_public_key_is_not_wrapped_to() -> None:
    with pytest.raises(ValueError, match="not a usable X25519 public key"):
        x25519.PublicKek.from_bytes(bytes(32))


def test_the_same_key_file_unwraps_legacy_and_x25519_wraps(tmp_path: pathlib.Path) -> None:
    (tmp_path / "kek").write_bytes(KEK_BYTES.hex().encode())
    ring = x25519.key_ring(keyfiles.read_kek_dir(tmp_path))
    data_key = envelope.generate_data_key()
    legacy = envelope.wrap(kms.LocalKek(KEK_BYTES), data_key, CONTEXT)
    current = envelope.wrap(x25519.PrivateKek(KEK_BYTES).public, data_key, CONTEXT)
    assert legacy.kek_id.startswith("local/") and current.kek_id.startswith("x25519/")
    assert envelope.unwrap(ring, legacy, CONTEXT) == envelope.unwrap(ring, current, CONTEXT) == data_key
    assert ring.primary.key_id == current.kek_id  # new wraps by a ring of key files are X25519


def test_a_ring_of_a_rotation_holds_both_forms_of_every_key(tmp_path: pathlib.Path) -> None:
    new, old = x25519.PrivateKek.generate(), x25519.PrivateKek(KEK_BYTES)
    ring = x25519.key_ring([new, old])
    assert ring.primary is new
    assert ring.key_ids == {new.key_id, new.legacy.key_id, old.key_id, old.legacy.key_id}


def test_public_key_files_are_pem_only_and_errors_name_the_file_not_its_content(
    tmp_path: pathlib.Path, kek: x25519.PrivateKek
) -> None:
    good = tmp_path / "kek.pub"
    good.write_bytes(kek.public.to_pem())
    assert keyfiles.read_kek_public(good).key_id == kek.key_id
    # The KEK itself (raw, hex), an Ed25519 verify key, and junk are all refused.
    ed25519_pem = manifests.public_key_to_pem(manifests.generate_signing_key().public_key())
    for name, data in (("raw", KEK_BYTES), ("hex", KEK_BYTES.hex().encode()), ("ed25519", ed25519_pem)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(keyfiles.KeyFileError, match="does not hold an X25519 public key") as refused:
            keyfiles.read_kek_public(path)
        assert str(path) in str(refused.value)
        assert KEK_BYTES.hex()[:8] not in str(refused.value) and "MCow" not in str(refused.value)
    with pytest.raises(keyfiles.KeyFileError, match="cannot read"):
        keyfiles.read_kek_public(tmp_path / "absent")


def test_errors_never_carry_key_bytes(kek: x25519.PrivateKek) -> None:
    data_key = envelope.generate_data_key()
    wrapped = envelope.wrap(kek.public, data_key, CONTEXT)
    other = x25519.PrivateKek.generate()
    attempts: list[Callable[[], bytes]] = [
        lambda: envelope.unwrap(other, wrapped, CONTEXT),
        lambda: envelope.unwrap(kek, wrapped, b"elsewhere"),
        lambda: envelope.unwrap(kek.public, wrapped, CONTEXT),
        lambda: envelope.unwrap(kms.KeyRing(other), wrapped, CONTEXT),
    ]
    for attempt in attempts:
        with pytest.raises(errors.KeyUnwrapError) as caught:
            attempt()
        message = str(caught.value)
        for secret in (data_key, KEK_BYTES, wrapped.ciphertext, wrapped.ciphertext[:32]):
            assert secret.hex()[:16] not in message
            assert repr(secret)[:16] not in message
