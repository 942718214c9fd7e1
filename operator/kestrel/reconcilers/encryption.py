"""Encryption: the keys that protect engines at rest and prove where they came from; owns Encrypted.

Every model gets an Ed25519 signing pair (its build signs the manifest, its loader verifies it), made once
and kept: replacing it would orphan every stored engine's signature. With encryption enabled, the
key-encryption key must exist before a build can wrap a data key with it.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import conditions
from kestrel.manifests import context as manifest_context
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context, generated
from kestrel.security import manifest


def _ensure_signing_pair(ctx: context.Context) -> None:
    name = names.signing_secret(ctx.name)

    def signing_secret() -> dict[str, Any]:
        key = manifest.generate_signing_key()
        owner = manifest_context.Owner.from_body(ctx.body)
        return secrets.signing(owner, manifest.private_key_to_pem(key), manifest.public_key_to_pem(key.public_key()))

    if generated.create_once(ctx, name, signing_secret):
        ctx.event("Normal", "SigningKeyCreated", f"Created signing key Secret {name}", "Keys")


def reconcile(ctx: context.Context) -> None:
    _ensure_signing_pair(ctx)
    encryption = ctx.spec.security.encryption
    if not encryption.enabled:
        ctx.set(conditions.ENCRYPTED, "False", conditions.DISABLED, "spec.security.encryption.enabled is false")
        return
    if encryption.kms is not None:
        ctx.set(
            conditions.ENCRYPTED,
            "True",
            "KmsKey",
            f"Data keys are wrapped by {encryption.kms.provider} key {encryption.kms.key_id}",
        )
        return
    kek = encryption.key_secret or ""
    if ctx.kube.get("v1", "Secret", ctx.namespace, kek) is None:
        ctx.set(
            conditions.ENCRYPTED,
            "False",
            "KeySecretMissing",
            f"spec.security.encryption.keySecret {kek} does not exist in {ctx.namespace}: create it with a 32-byte "
            "key under the key 'kek' (kubectl create secret generic NAME --from-file=kek=FILE) or point keySecret at "
            "an existing one",
        )
        return
    ctx.set(conditions.ENCRYPTED, "True", "KeySecret", f"Data keys are wrapped by the key in Secret {kek}")
