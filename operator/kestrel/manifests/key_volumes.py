"""The keys a pod mounts: the manifest-signing pair and the key-encryption key (KEK) of an encrypted engine.

The build Job gets the private signing key and the loader only the public one (a Secret volume can project
single keys), so a serving pod can verify an engine but never sign one. For the KEK it is the other way round: the
loader mounts the KEK Secret, and the build Job only the KEK's public key, from a Secret the operator derives it
into (`secrets.kek_public`), so a build, which runs user code, can encrypt an engine but decrypt none.
"""

from __future__ import annotations

from typing import Literal

from kestrel.api import spec as specs
from kestrel.manifests import files, names, owners, secrets, store_mounts

SIGNING_DIR = f"{store_mounts.SECRETS_ROOT}/signing"
KEK_DIR = f"{store_mounts.SECRETS_ROOT}/kek"
KEK_PUBLIC_DIR = f"{store_mounts.SECRETS_ROOT}/kek-public"


def signing(owner: owners.Owner, role: Literal["sign", "verify"]) -> files.Files:
    """The signing key (`sign`: the build) or only the verify key (`verify`: the loader)."""
    key, option = ("signing.key", "signing-key") if role == "sign" else ("signing.pub", "verify-key")
    volume = store_mounts.secret_volume("signing", names.signing_secret(owner.name), [key])
    return files.Files(
        (volume,), (store_mounts.read_only_mount("signing", SIGNING_DIR),), ((option, f"{SIGNING_DIR}/{key}"),)
    )


def encryption(settings: specs.EncryptionSpec) -> files.Files:
    """The key-encryption key of an encrypted engine, for the loader: its Secret, mounted."""
    if not settings.enabled:
        return files.Files()
    if not settings.key_secret:  # the spec's rules require keySecret when encryption is enabled
        raise ValueError("spec.security.encryption: enabled without keySecret")
    volume = store_mounts.secret_volume("kek", settings.key_secret)
    return files.Files((volume,), (store_mounts.read_only_mount("kek", KEK_DIR),), (("kek-dir", KEK_DIR),))


def encryption_public(owner: owners.Owner, settings: specs.EncryptionSpec) -> files.Files:
    """The public key of an encrypted engine's KEK, for the build: the operator's Secret of it, that one key."""
    if not settings.enabled:
        return files.Files()
    volume = store_mounts.secret_volume("kek-public", names.kek_public_secret(owner.name), [secrets.KEK_PUBLIC_KEY])
    path = f"{KEK_PUBLIC_DIR}/{secrets.KEK_PUBLIC_KEY}"
    return files.Files(
        (volume,), (store_mounts.read_only_mount("kek-public", KEK_PUBLIC_DIR),), (("kek-public-key", path),)
    )
