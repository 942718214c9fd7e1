"""Keys as files, the way Kubernetes mounts Secrets: a KEK, a folder of KEKs, a KEK's public key, the signing pair.

A KEK Secret (`spec.security.encryption.keySecret`) holds the current key under `kek`; any other keys in it
(`kek.previous`, say) are older KEKs, kept during a rotation so that engines wrapped by them still load. A Secret
with a single key of another name is read as that key. Each KEK is an X25519 private key (`x25519.PrivateKek`);
its public key, all a build gets, is read from PEM only. Messages name files, never their content.
"""

from __future__ import annotations

import base64
import binascii
import pathlib
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.api import errors
from kestrel.security import manifest as manifests
from kestrel.security import x25519

MAX_KEY_FILE = 64 << 10
CURRENT_KEK = "kek"


class KeyFileError(errors.KestrelError, ValueError):
    """A key file is missing, unreadable, or does not hold the kind of key asked for."""


def read_kek(path: pathlib.Path) -> x25519.PrivateKek:
    """A KEK file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (whitespace ignored)."""
    return parse_kek(_read_small(path), str(path))


def parse_kek(raw: bytes, where: str) -> x25519.PrivateKek:
    """A KEK from the bytes of a file or a Secret's value (`where` names it in errors)."""
    if len(raw) == x25519.KEY_SIZE:
        return x25519.PrivateKek(raw)
    text = b"".join(raw.split())
    for key in (_unhex(text), _unbase64(text)):
        if key is not None and len(key) == x25519.KEY_SIZE:
            return x25519.PrivateKek(key)
    # Says nothing about the content: it may be a key with a typo.
    raise KeyFileError(f"{where} does not hold a 32-byte key (raw, hex or base64)")


def read_kek_dir(folder: pathlib.Path) -> list[x25519.PrivateKek]:
    """Every KEK of a mounted Secret, the current one first: `kek` (or the only key), then older ones by name."""
    try:
        # A Secret volume also holds `..data` and timestamped folders: keys are the visible names.
        names = [entry.name for entry in folder.iterdir() if not entry.name.startswith(".")]
    except OSError as error:
        raise KeyFileError(f"cannot read the key folder {folder}: {error.strerror}") from None
    return [read_kek(folder / name) for name in current_first(names, str(folder))]


def read_kek_secret(data: Mapping[str, bytes], where: str) -> list[x25519.PrivateKek]:
    """Every KEK of a Secret's (decoded) data, in the order `read_kek_dir` reads the same Secret mounted.

    What the operator checks before it reports a model's engines encrypted: the loader must be able to read them.
    """
    keks = []
    for name in current_first(data, where):
        if len(data[name]) > MAX_KEY_FILE:
            raise KeyFileError(f"{where} key {name} is too large to be a key")
        keks.append(parse_kek(data[name], f"{where} key {name}"))
    return keks


def current_first(keys: Iterable[str], where: str) -> list[str]:
    """A KEK Secret's key names as the loader orders them: the current one (`kek`, or the only key) first."""
    names = sorted(keys)
    if not names:
        raise KeyFileError(f"{where} holds no key: put the 32-byte key-encryption key under the key {CURRENT_KEK!r}")
    if CURRENT_KEK in names:
        primary = CURRENT_KEK
    elif len(names) == 1:
        primary = names[0]
    else:
        raise KeyFileError(
            f"{where} holds {len(names)} keys and none is named {CURRENT_KEK!r}: name the current key {CURRENT_KEK!r}"
        )
    return [primary, *(name for name in names if name != primary)]


def read_kek_public(path: pathlib.Path) -> x25519.PublicKek:
    """A KEK's public key in PEM. Not raw bytes: any 32 bytes would pass, a KEK file mounted by mistake too."""
    pem = _read_small(path)  # outside the try: its KeyFileError, a ValueError too, says what went wrong
    try:
        return x25519.PublicKek.from_pem(pem)
    except ValueError:
        raise KeyFileError(f"{path} does not hold an X25519 public key (PEM)") from None


def read_verify_key(path: pathlib.Path) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key in PEM. Not raw bytes: any 32 bytes would pass, a KEK file mounted by mistake too."""
    try:
        return manifests.load_public_key(_read_small(path))
    except ValueError:
        raise KeyFileError(f"{path} does not hold an Ed25519 public key (PEM)") from None


def read_signing_key(path: pathlib.Path) -> ed25519.Ed25519PrivateKey:
    try:
        return manifests.load_private_key(_read_small(path))
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} does not hold an Ed25519 private key (PEM)") from None


def _read_small(path: pathlib.Path) -> bytes:
    try:
        with path.open("rb") as reader:
            data = reader.read(MAX_KEY_FILE + 1)
    except OSError as error:
        raise KeyFileError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key")
    return data


def _unhex(text: bytes) -> bytes | None:
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def _unbase64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
