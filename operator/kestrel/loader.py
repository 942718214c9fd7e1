"""`kestrel load` (the Triton pod's init container) and `kestrel keys rotate`: the engine store meets the keys.

`load` downloads an engine's artifact (ciphertext and signed manifest) into a scratch folder, then has
`security.artifact.unpack` verify the signature, the file set and every chunk, and decrypt into a staging folder
beside the target that is renamed onto it only after every file verified. Plaintext therefore exists only on the
target's (memory-backed) volume, and only once the whole artifact is known good; the scratch folder, which holds
nothing but ciphertext, is removed either way.

An engine of a ModelDeployment without encryption is a signed plaintext artifact: it loads the same way, verified
file by file, with no KEK (one given is unused). `--require-encryption`, which the operator passes whenever the
spec enables encryption, refuses such an artifact even when validly signed, so that nobody with write access to
the store can swap an encrypted engine for a plaintext one signed before encryption was switched on.

`rotate` re-wraps each stored engine's data key under a new key-encryption key and re-signs its manifest; no
ciphertext byte is read or written, and an engine already under the new KEK is left alone, so it can rerun. During
a rotation loaders given both KEKs (`--kek-file NEW --kek-file OLD`) serve either form, so there is no downtime.
Plaintext engines have no data key and are reported unchanged.

Every key file is an X25519 private key (`security.x25519`). A loader unwraps with it in both forms: X25519, what
builds wrap with now, and the symmetric form (`local/…`) that wrapped engines stored before. `rotate` wraps with
the new key's X25519 form, so rotating a key onto itself (`--old-kek-file K --new-kek-file K`) moves engines from
the legacy form to X25519 without changing the key.

Exit codes of both commands: 0 done; 2 bad input (arguments, key files, URI, a non-empty target); 3 integrity
failure (signature, hash, size, chunk, wrong KEK, a different engine than asked for): nothing was served;
4 the store failed or holds no such engine (worth a retry, as a restarted init container does).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel import storage
from kestrel.api import errors as api_errors
from kestrel.engine import rewrap
from kestrel.security import artifact, keyfiles, kms, x25519
from kestrel.security import errors as security_errors
from kestrel.security import manifest as manifests
from kestrel.storage import errors as storage_errors
from kestrel.storage import grants, layout, pvc

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTEGRITY = 3
EXIT_STORE = 4


def load(
    source_uri: str,
    target_dir: pathlib.Path,
    *,
    kek_provider: kms.KeyEncryptionKey | kms.KeyRing | None = None,
    verify_key: ed25519.Ed25519PublicKey,
    require_encryption: bool = False,
    expected_artifact_id: str | None = None,
    pvc_root: pathlib.Path = pvc.DEFAULT_MOUNT_ROOT,
    credentials_dir: pathlib.Path | None = None,
    grant_file: pathlib.Path | None = None,
    scratch_root: pathlib.Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> manifests.AnyManifest:
    """Fetch, verify and decrypt (or copy) the engine at `source_uri` into `target_dir` (absent or empty).

    `kek_provider` is needed only for an encrypted engine. `require_encryption` refuses a plaintext one.
    `expected_artifact_id` defaults to the `artifact_id` of the engine the URI names. `scratch_root` holds the
    ciphertext while it is checked (default: the system's temporary folder, not the memory-backed target).
    `grant_file` (what the operator's pods get) fetches with a store grant instead of credentials.
    """
    location, ref = layout.parse_engine_uri(source_uri)
    if require_encryption and kek_provider is None:
        # Nothing could load: a plaintext engine is refused, an encrypted one needs a KEK. Say so before a download.
        raise storage_errors.StoreConfigError("encryption is required, but no key-encryption key was given")
    # Checked before a multi-GB download too, not only by unpack after it.
    artifact.require_unpackable(target_dir)
    fetch = _fetcher(location, ref, pvc_root=pvc_root, credentials_dir=credentials_dir, grant_file=grant_file)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-load-", dir=scratch_root))
    try:
        fetched = scratch / "artifact"
        started = time.monotonic()
        with _download_progress(fetched, sys.stderr):
            fetch(fetched)
        print(
            f"kestrel load: fetched {_megabytes(_bytes_under(fetched))} in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return artifact.unpack(
            fetched,
            target_dir,
            kek=kek_provider,
            verify_key=verify_key,
            require_encryption=require_encryption,
            expected_artifact_id=expected_artifact_id or ref.artifact_id,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


PROGRESS_INTERVAL_S = 2.0


def _bytes_under(folder: pathlib.Path) -> int:
    """What the download has written so far (files appear and grow while it runs; a vanished one counts 0)."""
    total = 0
    with contextlib.suppress(OSError):  # a folder the download removes (its failure) ends the count
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_size
    return total


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@contextlib.contextmanager
def _download_progress(folder: pathlib.Path, stream: TextIO, interval: float = PROGRESS_INTERVAL_S) -> Iterator[None]:
    """While the engine downloads into `folder`, a line every `interval` seconds that the count moved: a multi-GB
    engine's init container says how far it got, whichever store or grant it reads from."""
    stop = threading.Event()

    def report() -> None:
        last = 0
        while not stop.wait(interval):
            size = _bytes_under(folder)
            if size != last:
                print(f"kestrel load: fetching, {_megabytes(size)} so far", file=stream, flush=True)
                last = size

    watcher = threading.Thread(target=report, name="kestrel-load-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def _fetcher(
    location: layout.StoreLocation,
    ref: layout.EngineRef,
    *,
    pvc_root: pathlib.Path,
    credentials_dir: pathlib.Path | None,
    grant_file: pathlib.Path | None,
) -> Callable[[pathlib.Path], object]:
    """How the engine gets into the scratch folder: with a store grant, or by opening the store."""
    if grant_file is not None:
        return functools.partial(grants.download, grants.read(grant_file, grants.DownloadGrant), ref)
    engines = storage.open_store(location.uri, pvc_root=pvc_root, credentials_dir=credentials_dir)
    return functools.partial(engines.download, ref)


# --- key files -----------------------------------------------------------------------------------------------


# --- command-line entry points (kestrel.cli parses, these run and map errors to exit codes) --------------------


def exit_code(error: BaseException) -> int:
    """The documented exit code for an error `load` or `rotate` raised."""
    if isinstance(error, api_errors.IntegrityError | security_errors.UnsafePathError):
        return EXIT_INTEGRITY
    bad_input = (
        storage_errors.StoreConfigError,
        security_errors.TargetNotEmptyError,
        security_errors.TargetIsMountPointError,
        keyfiles.KeyFileError,
    )
    if isinstance(error, bad_input):
        return EXIT_BAD_INPUT
    if isinstance(error, storage_errors.StorageError):
        return EXIT_STORE
    return 1


def load_command(
    source_uri: str,
    target_dir: pathlib.Path,
    *,
    kek_files: list[pathlib.Path],
    kek_dir: pathlib.Path | None = None,
    verify_key_file: pathlib.Path,
    require_encryption: bool = False,
    expected_artifact_id: str | None,
    pvc_root: pathlib.Path,
    credentials_dir: pathlib.Path | None,
    grant_file: pathlib.Path | None = None,
    scratch_root: pathlib.Path | None,
) -> int:
    try:
        ring = _key_ring(kek_files, kek_dir)
        loaded = load(
            source_uri,
            target_dir,
            kek_provider=ring,
            verify_key=keyfiles.read_verify_key(verify_key_file),
            require_encryption=require_encryption,
            expected_artifact_id=expected_artifact_id,
            pvc_root=pvc_root,
            credentials_dir=credentials_dir,
            grant_file=grant_file,
            scratch_root=scratch_root,
        )
    except api_errors.KestrelError as error:
        code = exit_code(error)
        verdict = "Refused" if code == EXIT_INTEGRITY else "Failed"
        print(f"kestrel load: {verdict} {source_uri}: {error}", file=sys.stderr, flush=True)
        return code
    size = sum(entry.size for entry in loaded.files)
    form = "encrypted" if isinstance(loaded, manifests.Manifest) else "signed, not encrypted"
    print(
        f"Loaded {loaded.artifact_id} ({form}): {len(loaded.files)} files, {size} bytes into {target_dir}", flush=True
    )
    return EXIT_OK


def _key_ring(kek_files: list[pathlib.Path], kek_dir: pathlib.Path | None) -> kms.KeyRing | None:
    """The KEKs given as files (newest first) and as a mounted Secret folder, each in its X25519 and its legacy
    form; None when there are none."""
    keks = [keyfiles.read_kek(path) for path in kek_files]
    if kek_dir is not None:
        keks += keyfiles.read_kek_dir(kek_dir)
    return x25519.key_ring(keks) if keks else None


def rotate_command(
    store_uri: str,
    namespace: str,
    name: str,
    *,
    old_kek_file: pathlib.Path,
    new_kek_file: pathlib.Path,
    signing_key_file: pathlib.Path,
    pvc_root: pathlib.Path,
    credentials_dir: pathlib.Path | None,
) -> int:
    try:
        engines = storage.open_store(store_uri, pvc_root=pvc_root, credentials_dir=credentials_dir)
        results = rewrap.rotate(
            engines,
            namespace,
            name,
            x25519.key_ring([keyfiles.read_kek(old_kek_file)]),
            keyfiles.read_kek(new_kek_file),
            signing_key=keyfiles.read_signing_key(signing_key_file),
        )
    except api_errors.KestrelError as error:
        print(f"kestrel keys rotate: Failed {namespace}/{name}: {error}", file=sys.stderr, flush=True)
        return exit_code(error)
    for result in results:
        if result.kek_id is None:
            print(f"Left {namespace}/{name}/{result.key} unchanged: not encrypted", flush=True)
            continue
        state = "Re-wrapped" if result.changed else "Already wrapped"
        print(f"{state} {namespace}/{name}/{result.key} under KEK {result.kek_id}", flush=True)
    return EXIT_OK
