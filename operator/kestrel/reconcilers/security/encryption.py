"""Encryption: the keys that protect engines at rest and prove where they came from; owns Encrypted.

Every model gets an Ed25519 signing pair (its build signs the manifest, its loader verifies it), made once
and kept: replacing it would orphan every stored engine's signature. With encryption enabled, the
key-encryption key must exist before a build can wrap a data key with it.

The KEK is an X25519 private key, and only the loader mounts its Secret. The build, which runs user code, gets the
public key, which this reconciler derives from the KEK Secret into a Secret of the model's own
(`names.kek_public_secret`), rewritten from the KEK on every pass. That Secret is there while Encrypted is True: the
pass that turns Encrypted from True to False removes it, so no new build encrypts to a key the loader may not hold.
While the Secret holds older keys beside `kek`, key_rotation.py re-wraps the stored engines under `kek` and the
condition's reason says whether the older keys still wrap any (OlderKeysInUse) or may go (OlderKeysUnused).
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import conditions, status
from kestrel.manifests import names, owners, secrets
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.reconcilers.security import generated, key_rotation
from kestrel.security import keyfiles, manifest, x25519


def _ensure_signing_pair(ctx: context.Context) -> None:
    name = names.signing_secret(ctx.name)

    def signing_secret() -> dict[str, Any]:
        key = manifest.generate_signing_key()
        owner = owners.Owner.from_body(ctx.body)
        return secrets.signing(owner, manifest.private_key_to_pem(key), manifest.public_key_to_pem(key.public_key()))

    made = generated.create_once(ctx, name, signing_secret)
    if made:
        ctx.event("Normal", "SigningKeyCreated", made.said(f"Created signing key Secret {name}"), "Keys")


def _read_key_secret(secret: dict[str, Any], name: str) -> list[x25519.PrivateKek] | tuple[str, str]:
    """The KEKs the loader would read from this Secret, current first; or why it could not (reason, message)."""
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    try:
        return keyfiles.read_kek_secret(data, f"Secret {name}")
    except keyfiles.KeyFileError as error:
        return "KeySecretInvalid", (
            f"spec.security.encryption.keySecret: {error}; the build could not wrap a data key with it, nor the "
            "loader unwrap one (kubectl create secret generic NAME --from-file=kek=FILE, FILE holding 32 bytes)"
        )


def _not_encrypted(ctx: context.Context, reason: str, message: str) -> None:
    was_encrypted = (before := ctx.condition(conditions.ENCRYPTED)) is not None and before.status == "True"
    ctx.set(conditions.ENCRYPTED, "False", reason, message)
    if was_encrypted:
        ctx.kube.delete("v1", "Secret", ctx.namespace, names.kek_public_secret(ctx.name), owner=ctx.uid)


def reconcile(ctx: context.Context, settings: operator_settings.Settings, access: storage.Access) -> None:
    _ensure_signing_pair(ctx)
    encryption = ctx.spec.security.encryption
    if not encryption.enabled:
        _not_encrypted(ctx, conditions.DISABLED, "spec.security.encryption.enabled is false")
        return
    # Encrypted=True only for a key the loader holds: the Secret that the loader mounts (manifests/key_volumes.py)
    # exists and holds keys it can read, and the build's public key is derived from it. The API refuses every other key
    # source (spec.security.encryption.kms), and the loader refuses a plaintext engine where encryption is enabled.
    kek = encryption.key_secret or ""
    secret = ctx.kube.get("v1", "Secret", ctx.namespace, kek)
    if secret is None:
        _not_encrypted(
            ctx,
            "KeySecretMissing",
            f"spec.security.encryption.keySecret {kek} does not exist in {ctx.namespace}: create it with a 32-byte "
            "key under the key 'kek' (kubectl create secret generic NAME --from-file=kek=FILE) or point keySecret at "
            "an existing one",
        )
        return
    keks = _read_key_secret(secret, kek)
    if isinstance(keks, tuple):
        _not_encrypted(ctx, *keks)
        return
    public = keks[0].public
    owner = owners.Owner.from_body(ctx.body)
    ctx.kube.apply(secrets.kek_public(owner, public.to_pem(), public.key_id))
    reason, message = (
        "KeySecret",
        f"Data keys are wrapped by KEK {public.key_id} from Secret {kek}; builds get its public key only",
    )
    # The Secret's other keys, named as the loader orders them (a single key not named `kek` is the current one).
    older = keyfiles.current_first(secret.get("data") or {}, f"Secret {kek}")[1:]
    if older:
        verdict = key_rotation.reconcile(ctx, settings, access, secret_name=kek, older=older, keks=keks)
        reason, message = verdict.reason, f"{message}; {verdict.message}"
    ctx.set(conditions.ENCRYPTED, "True", reason, message)


def unreadable_spec(found: status.ModelDeploymentStatus, generation: int, now: datetime.datetime) -> None:
    """A stored spec the operator cannot read, so no pass runs (run.py): Encrypted, where it was reported, is a claim
    about keys this spec no longer says how to reach, and turns Unknown."""
    if conditions.find(found.conditions or [], conditions.ENCRYPTED) is None:
        return
    found.conditions = conditions.set_condition(
        found.conditions or [],
        type=conditions.ENCRYPTED,
        status="Unknown",
        reason=conditions.INVALID_SPEC,
        message="The spec cannot be read: nothing is known of its keys",
        generation=generation,
        now=now,
    )
