"""Decryption throughput of Kestrel's streaming AEAD against `openssl speed -evp aes-256-gcm` on the same machine.

    .venv/bin/python -m bench.crypto [--size-mib 256] [--seconds 2] [--rounds 3] [--write-docs]

Both sides use one thread and wall-clock time (`openssl speed -elapsed`), run for the same number of seconds, and
alternate over several rounds. Background load only ever slows a run down, so each row reports its best round and
the ratio is best against best. OpenSSL's reference is its 16 KiB-block decrypt rate, the largest block size it
reports; Kestrel decrypts 1 MiB chunks read in 256 KiB blocks. Rows:

- openssl: `openssl speed -elapsed -decrypt -seconds S -bytes 16384 -evp aes-256-gcm`
- stream, memory: `streaming.decrypt_stream` from an in-memory ciphertext into a null sink (framing + AES-GCM only)
- stream, file: `streaming.decrypt_file` from a tmpfs file into a tmpfs file (what `kestrel load` does per file)
- unpack: `artifact.unpack` of a one-file artifact (adds signature check, plaintext SHA-256, staging, rename)

`decrypt_ratio` = stream, memory / openssl: like `openssl speed`, it measures decryption without file I/O, so the
ratio is the cost of the streaming construction (HKDF subkey, per-chunk nonces and associated data, Python loop).
The file and unpack rows show what I/O and hashing add on top; on tmpfs, allocating the plaintext's pages costs
about as much as decrypting them. Printed last.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench import doc_sections
from kestrel.security import artifact, streaming, x25519
from kestrel.security import manifest as manifests

MIB = 1 << 20

DOCS = doc_sections.DOCS
ROWS = {
    "openssl": "openssl speed, AES-256-GCM decrypt, 16 KiB blocks",
    "memory": "streaming decrypt, memory -> null (1 MiB chunks)",
    "file": "streaming decrypt_file, tmpfs -> tmpfs (1 MiB chunks)",
    "unpack": "artifact.unpack: signature + SHA-256 + decrypt + staging",
}


class _Null:
    def write(self, data: memoryview | bytes, /) -> int:
        return len(data)


def openssl_rate(seconds: int) -> tuple[float, str]:
    command = ["openssl", "speed", "-elapsed", "-decrypt", "-seconds", str(seconds), "-bytes", "16384"]
    command += ["-evp", "aes-256-gcm"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    # Last table line: "AES-256-GCM    2313908.57k" (thousands of bytes per second).
    match = re.search(r"^aes-256-gcm\s+([0-9.]+)k\s*$", output, re.IGNORECASE | re.MULTILINE)
    if match is None:
        raise SystemExit(f"could not parse openssl speed output:\n{output}")
    return float(match.group(1)) * 1000, " ".join(command)


def sustained_rate(size: int, seconds: float, run: Callable[[], object]) -> float:
    """Bytes per second over repeated runs lasting at least `seconds` (like openssl's fixed-duration loop)."""
    done, start = 0, time.perf_counter()
    while True:
        run()
        done += size
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _memory_rate(key: bytes, ciphertext: bytes, size: int, seconds: int) -> float:
    def run() -> None:
        source = io.BytesIO(ciphertext)
        streaming.decrypt_stream(key, "m/1/model.plan", source, _Null(), total_size=len(ciphertext))

    return sustained_rate(size, seconds, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help=f"replace the Crypto section of {DOCS}")
    args = parser.parse_args()
    size = args.size_mib * MIB
    key = os.urandom(32)
    shm = pathlib.Path("/dev/shm")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-bench-", dir=shm if shm.is_dir() else None))
    rates: dict[str, list[float]] = {name: [] for name in ROWS}
    try:
        source = scratch / "repository" / "m" / "1"
        source.mkdir(parents=True)
        plain = source / "model.plan"
        plain.write_bytes(os.urandom(size))
        sealed = scratch / "model.plan.enc"
        streaming.encrypt_file(key, "m/1/model.plan", plain, sealed)
        ciphertext = sealed.read_bytes()
        out, target = scratch / "opened.plan", scratch / "served"
        kek, signer = x25519.PrivateKek.generate(), manifests.generate_signing_key()
        artifact.pack(scratch / "repository", scratch / "artifact", kek=kek, signing_key=signer, artifact_id="bench")

        def unpack() -> None:
            shutil.rmtree(target, ignore_errors=True)
            artifact.unpack(scratch / "artifact", target, kek=kek, verify_key=signer.public_key())

        # Rounds interleave the rows, so a burst of background load does not land on one side of the comparison.
        command = ""
        for _ in range(args.rounds):
            openssl, command = openssl_rate(args.seconds)
            rates["openssl"].append(openssl)
            rates["memory"].append(_memory_rate(key, ciphertext, size, args.seconds))
            rates["file"].append(
                sustained_rate(size, args.seconds, lambda: streaming.decrypt_file(key, "m/1/model.plan", sealed, out))
            )
            rates["unpack"].append(sustained_rate(size, args.seconds, unpack))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    best = {name: max(values) for name, values in rates.items()}
    ratio = best["memory"] / best["openssl"]
    table = ["| path | MB/s, best round | MB/s, median | vs openssl (best / best) |", "|---|---:|---:|---:|"]
    for name, label in ROWS.items():
        median = statistics.median(rates[name]) / 1e6
        table.append(f"| {label} | {best[name] / 1e6:,.0f} | {median:,.0f} | {best[name] / best['openssl']:.2f} |")
    cpu = _cpu_name()
    print("\n".join(table))
    print(
        f"machine: {cpu}, {os.cpu_count()} CPUs; file {args.size_mib} MiB; {args.rounds} rounds of {args.seconds} s"
        " per row"
    )
    if args.write_docs:
        _write_docs(table, cpu, command, args, ratio)
    print(f"decrypt_ratio={ratio:.2f}")


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _write_docs(table: list[str], cpu: str, command: str, args: argparse.Namespace, ratio: float) -> None:
    reproduce = (
        f".venv/bin/python -m bench.crypto --size-mib {args.size_mib} --seconds {args.seconds} "
        f"--rounds {args.rounds} --write-docs"
    )
    section = "\n".join(
        [
            "## Crypto",
            "",
            "Decryption throughput of the streaming AEAD (`kestrel.security.streaming`) against OpenSSL's single-core",
            "AES-256-GCM rate on the same machine: one run of interleaved rounds, one thread each, wall-clock time.",
            "Goal: at least 0.5. The ratio compares like with like (no file I/O on either side); the file rows add",
            "writing the plaintext into tmpfs, whose page allocation costs about as much as decrypting, and",
            "`kestrel load`'s full path (`artifact.unpack`) adds the signed plaintext SHA-256 and the staging rename.",
            "",
            *table,
            "",
            f"`decrypt_ratio={ratio:.2f}` (streaming decrypt from memory / openssl, best round of {args.rounds} each;",
            "both without file I/O).",
            f"Measured {time.strftime('%Y-%m-%d')} on {cpu}, {os.cpu_count()} CPUs,",
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end (other work was",
            "running on the machine, so the medians wander; the best rounds are the comparable figures).",
            f"OpenSSL reference: `{command}`. Reproduce with `{reproduce}`.",
            "",
        ]
    )
    doc_sections.replace("Crypto", section)


if __name__ == "__main__":
    main()
