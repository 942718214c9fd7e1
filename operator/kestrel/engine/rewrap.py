"""Re-wrapping the stored engines of one ModelDeployment under a new key-encryption key: a KEK rotation.

Used by `kestrel keys rotate` (loader.rotate_command) and by the operator, which re-wraps a model's engines while
its KEK Secret holds older keys beside the current one (reconcilers/security/encryption.py). Only manifests move; the
ciphertext and its data key stay, so a rotation costs one manifest read and write per engine.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.security import artifact, kms
from kestrel.security import manifest as manifests
from kestrel.storage import layout, store


@dataclasses.dataclass(frozen=True)
class Rotated:
    """One engine's outcome: `changed` False when it was already wrapped by the new KEK, or is not encrypted
    (`kek_id` None: a plaintext engine has no data key to re-wrap)."""

    key: str
    kek_id: str | None
    changed: bool


def rotate(
    engines: store.Store,
    namespace: str,
    name: str,
    old_kek: kms.KeyEncryptionKey | kms.KeyRing,
    new_kek: kms.KeyEncryptionKey,
    *,
    signing_key: ed25519.Ed25519PrivateKey,
) -> list[Rotated]:
    """Re-wrap the data key of every complete engine of one ModelDeployment under `new_kek`; idempotent.

    Only manifests move: each is fetched, verified against the signing key's public half, re-wrapped and re-signed
    by `artifact.rewrap`, and written back in one atomic PUT (or rename). Incomplete engines are skipped; plaintext
    engines are verified and left as they are.
    """
    results = []
    for engine in engines.list_engines(namespace, name):
        if not engine.complete:
            continue
        ref = layout.EngineRef(namespace, name, engine.key)
        document = engines.read_manifest(ref)
        with tempfile.TemporaryDirectory(prefix="kestrel-rotate-") as folder:
            # rewrap works on an artifact folder; the ciphertext is not needed, only the folder it would be in.
            local = pathlib.Path(folder)
            (local / artifact.MANIFEST_NAME).write_bytes(document)
            (local / artifact.FILES_DIR).mkdir()
            updated = artifact.rewrap(
                local, old=old_kek, new=new_kek, signing_key=signing_key, verify_key=signing_key.public_key()
            )
            rewritten = (local / artifact.MANIFEST_NAME).read_bytes()
        changed = rewritten != document
        if changed:
            engines.replace_manifest(ref, rewritten)
        kek_id = updated.wrapped_key.kek_id if isinstance(updated, manifests.Manifest) else None
        results.append(Rotated(engine.key, kek_id, changed))
    return results
