"""Chunked streaming AEAD: AES-256-GCM over one file in fixed-size chunks, with constant memory.

The construction follows Tink's AES-GCM-HKDF streaming AEAD:

    file   = header || chunk_0 || ... || chunk_{n-1}
    header = magic "KSAE" || version (1) || chunk size (u32) || salt (32 random bytes) || nonce prefix (7 random bytes)
    chunk  = AES-256-GCM(subkey, nonce_i, plaintext_i, ad_i)        (ciphertext || 16-byte tag)
    subkey = HKDF-SHA256(ikm=data key, salt=salt, info="kestrel/stream/v1" || 0x00 || logical path)
    nonce_i = nonce prefix || i (u32, big-endian) || final flag (1 byte)
    ad_i   = header || i (u32) || final flag || logical path

Why each piece is there:
- A fresh subkey per file (random salt) means the data key, shared by every file of an engine, never encrypts two
  chunks under one nonce even if two files draw the same nonce prefix; GCM's nonce-reuse failure is catastrophic.
- The chunk index in nonce and associated data rejects reordering, deletion and duplication of chunks; the final
  flag rejects truncation at a chunk boundary and appending; the path rejects splicing chunks or whole files from
  another file of the same engine; the header in every chunk's associated data authenticates the chunk size.
- Every chunk but the last holds exactly `chunk size` plaintext bytes, so the ciphertext length alone says where
  the last chunk starts; a length that no plaintext could produce is refused before any decryption.

Decryption holds one chunk of plaintext until that chunk's tag verifies, then writes it. A stream can still fail
at a later chunk, so `decrypt_stream` leaves a verified prefix in its sink on failure; `decrypt_file` is the safe
form: it writes to a temporary file beside the destination and renames it into place only once every chunk, the
final flag and the length have verified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import struct
import tempfile
from collections.abc import Iterator
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kestrel.security import errors

MAGIC = b"KSAE"
VERSION = 1
KEY_SIZE = 32
TAG_SIZE = 16
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
DEFAULT_CHUNK_SIZE = 1 << 20
# The lower bound only keeps the format sane (tests use tiny chunks to mutate every byte cheaply); the upper bound
# matters: the chunk size comes from an unauthenticated header and decides how much memory decryption allocates.
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 << 20
MAX_CHUNKS = 1 << 32

_HEADER = struct.Struct(">4sBI32s7s")
HEADER_SIZE = _HEADER.size
_INFO = b"kestrel/stream/v1\x00"
# Ciphertext moves through a buffer of this size, so the only chunk-sized buffer is the plaintext held back until
# its tag verifies. 256 KiB amortises the per-call cost well past the point where AES-GCM itself dominates.
_IO_BLOCK = 256 << 10
_PART_PREFIX = ".kestrel-"


class Source(Protocol):
    """What streaming reads from: any binary file object."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Sink(Protocol):
    """What streaming writes to: any binary file object."""

    def write(self, data: memoryview | bytes, /) -> int | None: ...


@dataclasses.dataclass(frozen=True)
class Header:
    """The per-file parameters written in front of the chunks."""

    chunk_size: int
    salt: bytes
    nonce_prefix: bytes

    @classmethod
    def fresh(cls, chunk_size: int) -> Header:
        check_chunk_size(chunk_size)
        return cls(chunk_size, secrets.token_bytes(SALT_SIZE), secrets.token_bytes(NONCE_PREFIX_SIZE))

    @classmethod
    def decode(cls, raw: bytes, path: str) -> Header:
        magic, version, chunk_size, salt, prefix = _HEADER.unpack(raw)
        if magic != MAGIC:
            raise errors.DecryptionError(path, "not a Kestrel encrypted file (bad magic)")
        if version != VERSION:
            raise errors.DecryptionError(path, f"unsupported format version {version}")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise errors.DecryptionError(path, f"chunk size {chunk_size} is out of range")
        return cls(chunk_size, salt, prefix)

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.chunk_size, self.salt, self.nonce_prefix)


def check_chunk_size(chunk_size: int) -> int:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes")
    return chunk_size


def chunk_count(plaintext_size: int, chunk_size: int) -> int:
    # An empty file still has one (empty, final) chunk, so its tag proves it was not truncated to nothing.
    return max(1, -(-plaintext_size // chunk_size))


def ciphertext_size(plaintext_size: int, chunk_size: int) -> int:
    """The exact length of the encrypted form of `plaintext_size` bytes."""
    return HEADER_SIZE + plaintext_size + TAG_SIZE * chunk_count(plaintext_size, chunk_size)


def plaintext_size(total: int, chunk_size: int, path: str) -> int:
    """Invert `ciphertext_size`, refusing any length that no plaintext produces."""
    body = total - HEADER_SIZE
    if body < TAG_SIZE:
        raise errors.DecryptionError(path, "truncated: too short to hold one chunk")
    sealed = chunk_size + TAG_SIZE
    count = -(-body // sealed)
    last = body - (count - 1) * sealed
    if last < TAG_SIZE or (count > 1 and last == TAG_SIZE) or count > MAX_CHUNKS:
        raise errors.DecryptionError(path, "truncated or extended: no plaintext has this ciphertext length")
    return body - count * TAG_SIZE


class _ChunkKeys:
    """The per-file subkey and the nonce/associated-data schedule of one file."""

    def __init__(self, data_key: bytes, header: Header, path: str) -> None:
        if len(data_key) != KEY_SIZE:
            raise ValueError("a data key must be 32 bytes")
        self._path = path.encode()
        self._header = header.encode()
        self._prefix = header.nonce_prefix
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=header.salt, info=_INFO + self._path)
        self._subkey = hkdf.derive(data_key)

    def cipher(self, index: int, final: bool) -> Cipher[modes.GCM]:
        position = struct.pack(">IB", index, final)
        return Cipher(algorithms.AES(self._subkey), modes.GCM(self._prefix + position))

    def associated_data(self, index: int, final: bool) -> bytes:
        return self._header + struct.pack(">IB", index, final) + self._path


def _read_exact(src: Source, view: memoryview) -> int:
    """Fill `view` unless the source ends first; return how many bytes arrived."""
    filled = 0
    while filled < len(view):
        got = src.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def encrypt_stream(
    data_key: bytes, path: str, src: Source, dst: Sink, *, size: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> int:
    """Encrypt exactly `size` bytes of `src` bound to the logical `path`; return the ciphertext length."""
    header = Header.fresh(chunk_size)
    keys = _ChunkKeys(data_key, header, path)
    count = chunk_count(size, chunk_size)
    if count > MAX_CHUNKS:
        raise ValueError("file too large for this chunk size")
    block = memoryview(bytearray(min(_IO_BLOCK, chunk_size)))
    out = memoryview(bytearray(len(block) + 15))
    dst.write(header.encode())
    for index in range(count):
        final = index == count - 1
        remaining = size - index * chunk_size if final else chunk_size
        encryptor = keys.cipher(index, final).encryptor()
        encryptor.authenticate_additional_data(keys.associated_data(index, final))
        while remaining:
            want = min(remaining, len(block))
            if _read_exact(src, block[:want]) != want:
                raise errors.SourceChangedError(f"{path!r} shrank while it was encrypted")
            dst.write(out[: encryptor.update_into(block[:want], out)])
            remaining -= want
        encryptor.finalize()
        dst.write(encryptor.tag)
    if _read_exact(src, block[:1]):
        raise errors.SourceChangedError(f"{path!r} grew while it was encrypted")
    return ciphertext_size(size, chunk_size)


def decrypt_stream(
    data_key: bytes, path: str, src: Source, dst: Sink, *, total_size: int, chunk_size: int | None = None
) -> int:
    """Decrypt `total_size` ciphertext bytes bound to `path` into `dst`; return the plaintext length.

    Each chunk reaches `dst` only after its tag verified, but on failure `dst` may hold a verified prefix: discard
    it (or use `decrypt_file`). `chunk_size`, when given (from a signed manifest), must match the header.
    """
    raw = memoryview(bytearray(HEADER_SIZE))
    if _read_exact(src, raw) != HEADER_SIZE:
        raise errors.DecryptionError(path, "truncated: shorter than the header")
    header = Header.decode(raw.tobytes(), path)
    if chunk_size is not None and header.chunk_size != chunk_size:
        raise errors.DecryptionError(path, f"chunk size {header.chunk_size} differs from the manifest's {chunk_size}")
    size = plaintext_size(total_size, header.chunk_size, path)
    keys = _ChunkKeys(data_key, header, path)
    count = chunk_count(size, header.chunk_size)
    plain = memoryview(bytearray(header.chunk_size + 15))
    block = memoryview(bytearray(min(_IO_BLOCK, header.chunk_size)))
    tag = memoryview(bytearray(TAG_SIZE))
    for index in range(count):
        final = index == count - 1
        length = size - index * header.chunk_size if final else header.chunk_size
        decryptor = keys.cipher(index, final).decryptor()
        decryptor.authenticate_additional_data(keys.associated_data(index, final))
        done = 0
        while done < length:
            want = min(length - done, len(block))
            if _read_exact(src, block[:want]) != want:
                raise errors.DecryptionError(path, "truncated", chunk=index)
            done += decryptor.update_into(block[:want], plain[done:])
        if _read_exact(src, tag) != TAG_SIZE:
            raise errors.DecryptionError(path, "truncated", chunk=index)
        try:
            decryptor.finalize_with_tag(tag.tobytes())
        except InvalidTag:
            raise errors.DecryptionError(
                path, "authentication failed (tampered, reordered, spliced or wrong key)", chunk=index
            ) from None
        dst.write(plain[:length])
    if _read_exact(src, block[:1]):
        raise errors.DecryptionError(path, "extended: data after the final chunk")
    return size


def encrypt_file(
    data_key: bytes, path: str, src: pathlib.Path, dst: pathlib.Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> int:
    """Encrypt the file `src` into `dst` (replaced atomically); return the ciphertext length."""
    with src.open("rb") as reader, _replacing(dst, 0o644) as writer:
        return encrypt_stream(
            data_key, path, reader, writer, size=os.fstat(reader.fileno()).st_size, chunk_size=chunk_size
        )


def decrypt_file(
    data_key: bytes,
    path: str,
    src: pathlib.Path,
    dst: pathlib.Path,
    *,
    chunk_size: int | None = None,
    mode: int = 0o600,
) -> int:
    """Decrypt `src` into `dst`; `dst` appears only once the whole file verified, else nothing appears."""
    with src.open("rb") as reader, _replacing(dst, mode) as writer:
        total = os.fstat(reader.fileno()).st_size
        return decrypt_stream(data_key, path, reader, writer, total_size=total, chunk_size=chunk_size)


@contextlib.contextmanager
def _replacing(dst: pathlib.Path, mode: int) -> Iterator[Sink]:
    # The temporary file lives beside `dst` so that the final rename stays on one filesystem and is atomic.
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=_PART_PREFIX, suffix=".part")
    part = pathlib.Path(name)
    try:
        with os.fdopen(fd, "wb") as writer:
            os.fchmod(fd, mode)
            yield writer
        part.replace(dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
