"""A multi-hundred-MB file round-trips with memory bounded by one chunk plus a constant, whatever the file size."""

from __future__ import annotations

import hashlib
import pathlib
import random
import shutil
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from kestrel.security import artifact, kms, streaming
from kestrel.security import manifest as manifests

MIB = 1 << 20
SIZE = 384 * MIB + 12345  # not a multiple of the chunk size, so the last chunk is partial
CHUNK = streaming.DEFAULT_CHUNK_SIZE
# What may come on top of the one plaintext chunk that decryption holds back: two 256 KiB I/O blocks (encryption
# uses an input and an output block, decryption one input block) and small objects. It does not grow with the file.
CONSTANT = 2 * (256 << 10) + (64 << 10)
KEY = random.Random(3).randbytes(32)


def write_plaintext(path: pathlib.Path) -> str:
    # Every MiB differs (its index is stamped in), so a reordering bug would change the hash.
    rng = random.Random(11)
    base = bytearray(rng.randbytes(MIB))
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for index in range(-(-SIZE // MIB)):
            base[:8] = index.to_bytes(8, "big")
            block = bytes(base[: min(MIB, SIZE - index * MIB)])
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while block := reader.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def rss_kib(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def measure(operation: Callable[[], object]) -> tuple[int, int | None]:
    """Run `operation`; return its Python heap peak (tracemalloc) and its resident-set growth, both in bytes."""
    clear_refs = pathlib.Path("/proc/self/clear_refs")
    rss_ok = clear_refs.exists()
    if rss_ok:
        try:
            clear_refs.write_text("5")  # resets VmHWM, the peak resident set, to the current one
        except OSError:
            rss_ok = False
    rss_before = rss_kib("VmRSS") if rss_ok else 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        operation()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    rss_growth = (rss_kib("VmHWM") - rss_before) * 1024 if rss_ok else None
    return peak, rss_growth


@pytest.fixture
def scratch(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    # pytest keeps the last few temporary directories; a gigabyte of them per run is not worth keeping.
    yield tmp_path
    for child in tmp_path.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


@pytest.mark.slow
def test_multi_hundred_megabyte_round_trip_in_one_chunk_of_memory(scratch: pathlib.Path) -> None:
    tmp_path = scratch
    plain, sealed, opened = tmp_path / "model.plan", tmp_path / "model.plan.enc", tmp_path / "opened.plan"
    expected = write_plaintext(plain)

    encrypt_peak, encrypt_rss = measure(lambda: streaming.encrypt_file(KEY, "m/1/model.plan", plain, sealed))
    plain.unlink()
    decrypt_peak, decrypt_rss = measure(lambda: streaming.decrypt_file(KEY, "m/1/model.plan", sealed, opened))

    assert sealed.stat().st_size == streaming.ciphertext_size(SIZE, CHUNK)
    assert sha256_of(opened) == expected
    print(
        f"\nsize={SIZE / MIB:.0f} MiB chunk={CHUNK / MIB:.0f} MiB "
        f"encrypt_peak={encrypt_peak / MIB:.2f} MiB decrypt_peak={decrypt_peak / MIB:.2f} MiB "
        f"encrypt_rss_growth={encrypt_rss} decrypt_rss_growth={decrypt_rss}"
    )
    assert encrypt_peak <= CONSTANT  # encryption never holds a chunk at all
    assert decrypt_peak <= CHUNK + CONSTANT
    if decrypt_rss is not None and encrypt_rss is not None:
        # Resident memory also counts OpenSSL and the allocator's slack, which tracemalloc cannot see; still a
        # few MiB, against a 384 MiB file.
        assert decrypt_rss <= CHUNK + 8 * MIB
        assert encrypt_rss <= 8 * MIB


@pytest.mark.slow
def test_unpacking_a_multi_hundred_megabyte_artifact_stays_in_one_chunk_of_memory(scratch: pathlib.Path) -> None:
    tmp_path = scratch
    repository = tmp_path / "repository" / "m" / "1"
    repository.mkdir(parents=True)
    expected = write_plaintext(repository / "model.plan")
    kek, signer = kms.LocalKek.generate(), manifests.generate_signing_key()

    def pack() -> None:
        artifact.pack(tmp_path / "repository", tmp_path / "artifact", kek=kek, signing_key=signer, artifact_id="big")

    pack_peak, _ = measure(pack)
    shutil.rmtree(tmp_path / "repository")
    unpack_peak, _ = measure(
        lambda: artifact.unpack(tmp_path / "artifact", tmp_path / "served", kek=kek, verify_key=signer.public_key())
    )

    assert sha256_of(tmp_path / "served" / "m" / "1" / "model.plan") == expected
    print(f"\npack_peak={pack_peak / MIB:.2f} MiB unpack_peak={unpack_peak / MIB:.2f} MiB")
    assert pack_peak <= CONSTANT
    assert unpack_peak <= CHUNK + CONSTANT
