"""The streaming AEAD round-trips every size and refuses every mutation in Tink's streaming-AEAD test suite."""

from __future__ import annotations

import io
import itertools
import os
import pathlib
import struct

import pytest

from kestrel.api import errors as api_errors
from kestrel.security import errors, streaming

KEY = bytes.fromhex("a0" * 16 + "5b" * 16)
OTHER_KEY = bytes.fromhex("a0" * 16 + "5c" * 16)
PATH = "yolo/1/model.plan"
CHUNK = 64
SEALED = CHUNK + streaming.TAG_SIZE
H = streaming.HEADER_SIZE
# Five chunks: four full ones and a partial final one.
PLAINTEXT = bytes((i * 7 + 3) % 251 for i in range(4 * CHUNK + 37))


def seal(plaintext: bytes = PLAINTEXT, *, path: str = PATH, key: bytes = KEY, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    written = streaming.encrypt_stream(key, path, io.BytesIO(plaintext), out, size=len(plaintext), chunk_size=chunk)
    assert written == len(out.getvalue())
    return out.getvalue()


def unseal(ciphertext: bytes, *, path: str = PATH, key: bytes = KEY, total: int | None = None) -> bytes:
    out = io.BytesIO()
    size = len(ciphertext) if total is None else total
    streaming.decrypt_stream(key, path, io.BytesIO(ciphertext), out, total_size=size)
    return out.getvalue()


def split(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[H:]
    return ciphertext[:H], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


CIPHERTEXT = seal()
HEADER, CHUNKS = split(CIPHERTEXT)


def refused(ciphertext: bytes, *, path: str = PATH, key: bytes = KEY, total: int | None = None) -> None:
    with pytest.raises(errors.DecryptionError):
        unseal(ciphertext, path=path, key=key, total=total)


def test_fixture_has_five_chunks_and_a_partial_last_one() -> None:
    assert len(CHUNKS) == 5
    assert len(CHUNKS[-1]) == 37 + streaming.TAG_SIZE


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_of_every_boundary_size(size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext = seal(plaintext)
    assert len(ciphertext) == streaming.ciphertext_size(size, CHUNK)
    assert unseal(ciphertext) == plaintext


def test_sizes_invert_and_impossible_lengths_are_refused() -> None:
    valid = {streaming.ciphertext_size(n, CHUNK): n for n in range(0, 6 * CHUNK)}
    for total in range(0, max(valid)):
        if total in valid:
            assert streaming.plaintext_size(total, CHUNK, PATH) == valid[total]
        else:
            with pytest.raises(errors.DecryptionError):
                streaming.plaintext_size(total, CHUNK, PATH)


def test_encrypting_twice_gives_unrelated_ciphertexts() -> None:
    again = seal()
    assert again[:4] == CIPHERTEXT[:4]
    assert again[H:] != CIPHERTEXT[H:]
    assert again[9:48] != CIPHERTEXT[9:48]  # fresh salt and nonce prefix


def test_errors_are_integrity_errors_that_name_file_and_chunk() -> None:
    mutated = bytearray(CIPHERTEXT)
    mutated[H + 2 * SEALED + 3] ^= 1
    with pytest.raises(api_errors.IntegrityError) as caught:
        unseal(bytes(mutated))
    assert isinstance(caught.value, errors.DecryptionError)
    assert caught.value.chunk == 2
    assert PATH in str(caught.value)


# --- Tink's mutation suite -------------------------------------------------------------------------------------


def test_truncation_at_every_8_bytes_is_refused() -> None:
    for length in range(0, len(CIPHERTEXT), 8):
        refused(CIPHERTEXT[:length])
        # The claimed size may come from a signed manifest rather than from the stream itself.
        refused(CIPHERTEXT[:length], total=len(CIPHERTEXT))


def test_truncation_at_every_byte_is_refused() -> None:
    for length in range(len(CIPHERTEXT)):
        refused(CIPHERTEXT[:length])


def test_truncation_at_a_chunk_boundary_is_refused_when_the_last_chunk_is_full() -> None:
    ciphertext = seal(PLAINTEXT[: 3 * CHUNK])
    refused(ciphertext[: H + 2 * SEALED])


@pytest.mark.parametrize(
    "suffix",
    [b"\x00", bytes(CHUNK // 2), bytes(SEALED), CHUNKS[0], CHUNKS[-1]],
    ids=["one-byte", "partial-chunk", "zero-chunk", "copy-of-first-chunk", "copy-of-last-chunk"],
)
def test_appending_is_refused(suffix: bytes) -> None:
    refused(CIPHERTEXT + suffix)
    refused(CIPHERTEXT + suffix, total=len(CIPHERTEXT))


def test_flipping_any_bit_of_any_byte_is_refused() -> None:
    for position, bit in itertools.product(range(len(CIPHERTEXT)), (0x01, 0x80)):
        mutated = bytearray(CIPHERTEXT)
        mutated[position] ^= bit
        refused(bytes(mutated))


def test_deleting_each_chunk_is_refused() -> None:
    for index in range(len(CHUNKS)):
        refused(HEADER + b"".join(CHUNKS[:index] + CHUNKS[index + 1 :]))


def test_duplicating_each_chunk_is_refused() -> None:
    for index in range(len(CHUNKS)):
        refused(HEADER + b"".join(CHUNKS[: index + 1] + CHUNKS[index:]))


def test_swapping_any_two_chunks_is_refused() -> None:
    full = CHUNKS[:-1]  # only equal-length chunks can trade places without changing the length
    for i, j in itertools.combinations(range(len(full)), 2):
        swapped = list(CHUNKS)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        refused(HEADER + b"".join(swapped))


def test_splicing_a_chunk_from_another_file_is_refused() -> None:
    for other in (seal(), seal(path="yolo/1/other.plan"), seal(key=OTHER_KEY)):
        _, foreign = split(other)
        for index in range(len(CHUNKS)):
            spliced = list(CHUNKS)
            spliced[index] = foreign[index]
            refused(HEADER + b"".join(spliced))


def test_another_files_header_is_refused() -> None:
    other_header, _ = split(seal())
    refused(other_header + b"".join(CHUNKS))


def test_changed_associated_data_is_refused() -> None:
    for path in ("yolo/1/model.plan ", "yolo/2/model.plan", "", "yolo/1/model.pla"):
        refused(CIPHERTEXT, path=path)


def test_wrong_key_is_refused() -> None:
    refused(CIPHERTEXT, key=OTHER_KEY)


# --- the header --------------------------------------------------------------------------------------------------


def with_header_field(offset: int, fmt: str, value: int) -> bytes:
    mutated = bytearray(CIPHERTEXT)
    struct.pack_into(fmt, mutated, offset, value)
    return bytes(mutated)


def test_unknown_version_is_refused_before_any_decryption() -> None:
    with pytest.raises(errors.DecryptionError, match="version 2"):
        unseal(with_header_field(4, ">B", 2))


def test_huge_chunk_size_is_refused_before_allocating_it() -> None:
    with pytest.raises(errors.DecryptionError, match="out of range"):
        unseal(with_header_field(5, ">I", 0xFFFFFFFF))


def test_chunk_size_must_match_the_manifest() -> None:
    with pytest.raises(errors.DecryptionError, match="differs from the manifest"):
        streaming.decrypt_stream(
            KEY, PATH, io.BytesIO(CIPHERTEXT), io.BytesIO(), total_size=len(CIPHERTEXT), chunk_size=2 * CHUNK
        )


def test_a_header_claiming_another_valid_chunk_size_is_refused() -> None:
    refused(with_header_field(5, ">I", CHUNK + 16))


# --- the encrypting side -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [len(PLAINTEXT) - 1, len(PLAINTEXT) + 1])
def test_a_source_that_changes_size_is_refused(claimed: int) -> None:
    with pytest.raises(errors.SourceChangedError):
        streaming.encrypt_stream(KEY, PATH, io.BytesIO(PLAINTEXT), io.BytesIO(), size=claimed, chunk_size=CHUNK)


@pytest.mark.parametrize("chunk", [streaming.MIN_CHUNK_SIZE - 1, streaming.MAX_CHUNK_SIZE + 1])
def test_chunk_size_out_of_range_is_refused(chunk: int) -> None:
    with pytest.raises(ValueError, match="chunk size"):
        seal(chunk=chunk)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(key=KEY[:16])


# --- the file API: nothing appears unless everything verified ----------------------------------------------------


def test_decrypt_file_round_trip_and_mode(tmp_path: pathlib.Path) -> None:
    (tmp_path / "plain").write_bytes(PLAINTEXT)
    size = streaming.encrypt_file(KEY, PATH, tmp_path / "plain", tmp_path / "sealed", chunk_size=CHUNK)
    assert size == (tmp_path / "sealed").stat().st_size
    streaming.decrypt_file(KEY, PATH, tmp_path / "sealed", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == PLAINTEXT
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("damage", ["truncate-last-chunk", "flip-last-tag", "wrong-path"])
def test_decrypt_file_leaves_no_plaintext_when_a_late_chunk_fails(tmp_path: pathlib.Path, damage: str) -> None:
    # The first chunks verify and are written before the failure; none of it may survive.
    sealed = bytearray(CIPHERTEXT)
    path = PATH
    if damage == "truncate-last-chunk":
        del sealed[-10:]
    elif damage == "flip-last-tag":
        sealed[-1] ^= 1
    else:
        path = "yolo/1/renamed.plan"
    (tmp_path / "sealed").write_bytes(bytes(sealed))
    with pytest.raises(errors.DecryptionError):
        streaming.decrypt_file(KEY, path, tmp_path / "sealed", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sealed"]


def test_decrypt_stream_works_on_a_pipe_that_returns_short_reads() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return self._data.readinto(buffer[:7])

    out = io.BytesIO()
    streaming.decrypt_stream(KEY, PATH, Trickle(CIPHERTEXT), out, total_size=len(CIPHERTEXT))
    assert out.getvalue() == PLAINTEXT
