"""Encryption: the keys that protect engines at rest and prove where they came from; owns Encrypted.

Every model gets an Ed25519 signing pair (its build signs the manifest, its loader verifies it), made once
and kept: replacing it would orphan every stored engine's signature. With encryption enabled, the
key-encryption key must exist before a build can wrap a data key with it.
"""

from __future__ import annotations

import base64
from typing import Any

from kestrel.api import conditions
from kestrel.manifests import context as manifest_context
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context, generated
from kestrel.security import keyfiles, manifest


def _ensure_signing_pair(ctx: context.Context) -> None:
    name = names.signing_secret(ctx.name)

    def signing_secret() -> dict[str, Any]:
        key = manifest.generate_signing_key()
        owner = manifest_context.Owner.from_body(ctx.body)
        return secrets.signing(owner, manifest.private_key_to_pem(key), manifest.public_key_to_pem(key.public_key()))

    if generated.create_once(ctx, name, signing_secret):
        ctx.event("Normal", "SigningKeyCreated", f"Created signing key Secret {name}", "Keys")


def _key_secret_problem(secret: dict[str, Any], name: str) -> tuple[str, str] | None:
    """Why the loader could not read this KEK Secret (reason, message), or None when it could."""
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    try:
        keyfiles.read_kek_secret(data, f"Secret {name}")
    except keyfiles.KeyFileError as error:
        return "KeySecretInvalid", (
            f"spec.security.encryption.keySecret: {error}; the build could not wrap a data key with it, nor the "
            "loader unwrap one (kubectl create secret generic NAME --from-file=kek=FILE, FILE holding 32 bytes)"
        )
    return None


def reconcile(ctx: context.Context) -> None:
    _ensure_signing_pair(ctx)
    encryption = ctx.spec.security.encryption
    if not encryption.enabled:
        ctx.set(conditions.ENCRYPTED, "False", conditions.DISABLED, "spec.security.encryption.enabled is false")
        return
    # Encrypted=True only for a key the loader holds: the Secret that the build wraps with and the loader
    # mounts (manifests/keys.py) exists and holds keys it can read. The API refuses every other key source
    # (spec.security.encryption.kms), and the loader refuses a plaintext engine where encryption is enabled.
    kek = encryption.key_secret or ""
    secret = ctx.kube.get("v1", "Secret", ctx.namespace, kek)
    if secret is None:
        ctx.set(
            conditions.ENCRYPTED,
            "False",
            "KeySecretMissing",
            f"spec.security.encryption.keySecret {kek} does not exist in {ctx.namespace}: create it with a 32-byte "
            "key under the key 'kek' (kubectl create secret generic NAME --from-file=kek=FILE) or point keySecret at "
            "an existing one",
        )
        return
    problem = _key_secret_problem(secret, kek)
    if problem is not None:
        ctx.set(conditions.ENCRYPTED, "False", *problem)
        return
    ctx.set(conditions.ENCRYPTED, "True", "KeySecret", f"Data keys are wrapped by the key in Secret {kek}")
