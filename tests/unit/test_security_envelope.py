"""Data keys are wrapped by a KEK bound to their artifact, refused under any other KEK, and re-wrapped losslessly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from kestrel.api import errors as api_errors
from kestrel.security import envelope, errors, kms

KEK_BYTES = bytes(range(32))
CONTEXT = b"vision/cams/0123abcd"


@pytest.fixture
def kek() -> kms.LocalKek:
    return kms.LocalKek(KEK_BYTES)


def test_wrap_unwrap_round_trip(kek: kms.LocalKek) -> None:
    data_key = envelope.generate_data_key()
    wrapped = envelope.wrap(kek, data_key, CONTEXT)
    assert wrapped.kek_id == kek.key_id
    assert data_key not in wrapped.ciphertext
    assert envelope.unwrap(kek, wrapped, CONTEXT) == data_key


def test_data_keys_are_fresh_and_256_bit() -> None:
    keys = {envelope.generate_data_key() for _ in range(64)}
    assert len(keys) == 64
    assert {len(key) for key in keys} == {32}


def test_key_id_is_stable_distinct_and_reveals_no_key_bytes(kek: kms.LocalKek) -> None:
    assert kek.key_id == kms.LocalKek(KEK_BYTES).key_id
    assert kek.key_id != kms.LocalKek(bytes(32)).key_id
    assert kek.key_id.startswith("local/")
    assert KEK_BYTES.hex()[:8] not in kek.key_id
    assert KEK_BYTES.hex() not in repr(kek)


def test_kek_must_be_256_bit() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        kms.LocalKek(KEK_BYTES[:16])


def test_a_wrong_kek_is_refused_by_id(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    other = kms.LocalKek.generate()
    with pytest.raises(errors.KeyUnwrapError, match=other.key_id) as caught:
        envelope.unwrap(other, wrapped, CONTEXT)
    assert isinstance(caught.value, api_errors.IntegrityError)


def test_a_wrong_kek_with_a_forged_id_is_refused_by_authentication(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    impostor = kms.LocalKek.generate()
    forged = dataclasses.replace(wrapped, kek_id=impostor.key_id)
    with pytest.raises(errors.KeyUnwrapError, match="cannot unwrap"):
        envelope.unwrap(impostor, forged, CONTEXT)


def test_a_wrapped_key_moved_to_another_artifact_is_refused(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    with pytest.raises(errors.KeyUnwrapError):
        envelope.unwrap(kek, wrapped, b"vision/other/0123abcd")


@pytest.mark.parametrize("position", [0, 11, 12, 30, -1])
def test_a_tampered_wrapped_key_is_refused(kek: kms.LocalKek, position: int) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    damaged = bytearray(wrapped.ciphertext)
    damaged[position] ^= 0x40
    with pytest.raises(errors.KeyUnwrapError):
        envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=bytes(damaged)), CONTEXT)


def test_a_truncated_wrapped_key_is_refused(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    for length in (0, 12, 27, len(wrapped.ciphertext) - 1):
        with pytest.raises(errors.KeyUnwrapError):
            envelope.unwrap(kek, dataclasses.replace(wrapped, ciphertext=wrapped.ciphertext[:length]), CONTEXT)


def test_rewrap_moves_the_same_data_key_to_the_new_kek(kek: kms.LocalKek) -> None:
    data_key = envelope.generate_data_key()
    old_wrapped = envelope.wrap(kek, data_key, CONTEXT)
    new = kms.LocalKek.generate()
    new_wrapped = envelope.rewrap(old_wrapped, kek, new, CONTEXT)
    assert new_wrapped.kek_id == new.key_id
    assert envelope.unwrap(new, new_wrapped, CONTEXT) == data_key
    with pytest.raises(errors.KeyUnwrapError):
        envelope.unwrap(kek, new_wrapped, CONTEXT)


def test_rewrap_with_the_wrong_old_kek_is_refused(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kek, envelope.generate_data_key(), CONTEXT)
    with pytest.raises(errors.KeyUnwrapError):
        envelope.rewrap(wrapped, kms.LocalKek.generate(), kms.LocalKek.generate(), CONTEXT)


def test_a_key_ring_unwraps_with_whichever_kek_wrapped_and_wraps_with_the_primary(kek: kms.LocalKek) -> None:
    new = kms.LocalKek.generate()
    ring = kms.KeyRing(new, [kek])
    data_key = envelope.generate_data_key()
    assert envelope.unwrap(ring, envelope.wrap(kek, data_key, CONTEXT), CONTEXT) == data_key
    assert envelope.unwrap(ring, envelope.wrap(new, data_key, CONTEXT), CONTEXT) == data_key
    assert ring.primary is new
    assert ring.key_ids == {kek.key_id, new.key_id}


def test_a_key_ring_without_the_kek_names_what_it_holds(kek: kms.LocalKek) -> None:
    wrapped = envelope.wrap(kms.LocalKek.generate(), envelope.generate_data_key(), CONTEXT)
    with pytest.raises(errors.KeyUnwrapError, match=f"held: {kek.key_id}"):
        envelope.unwrap(kms.KeyRing(kek), wrapped, CONTEXT)


def test_errors_never_carry_key_bytes(kek: kms.LocalKek) -> None:
    data_key = envelope.generate_data_key()
    wrapped = envelope.wrap(kek, data_key, CONTEXT)
    other = kms.LocalKek.generate()
    attempts: list[Callable[[], bytes]] = [
        lambda: envelope.unwrap(other, wrapped, CONTEXT),
        lambda: envelope.unwrap(kek, wrapped, b"elsewhere"),
        lambda: envelope.unwrap(kms.KeyRing(other), wrapped, CONTEXT),
    ]
    for attempt in attempts:
        with pytest.raises(errors.KeyUnwrapError) as caught:
            attempt()
        message = str(caught.value)
        for secret in (data_key, KEK_BYTES, wrapped.ciphertext):
            assert secret.hex() not in message
            assert repr(secret) not in message
