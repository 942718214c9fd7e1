"""Key rotation: while a model's KEK Secret holds older keys beside the current one (`kek`), re-wrap its stored engines
under the current key, so that the older keys can be removed; owns no condition (its outcome is part of encryption.py's
Encrypted).

A rotation, as docs/runbooks.md walks through it: the Secret gets a new `kek` and keeps the old key under another
name; builds wrap under the new key from the next pass (encryption.py derives its public key); loaders hold both
keys, so every stored engine still loads; and each pass re-wraps what the store still holds under an older key
(engine/rewrap.py: manifests only, verified and re-signed with the model's signing key, idempotent). The verdict
says whether any stored engine still needs an older key, and the operator never removes a key itself.

Only passes during a rotation (more than one key in the Secret) read the store; the re-wrap reads each engine's
manifest, which a build that started before the rotation may publish under the old key after an earlier pass found
none: the verdict is the one of the pass that wrote it, and the runbook removes the older keys only then.
"""

from __future__ import annotations

import base64
import dataclasses

from kestrel import settings as operator_settings
from kestrel.api import errors as api_errors
from kestrel.engine import rewrap
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.security import manifest as manifests
from kestrel.security import x25519

# Encrypted's reasons during a rotation (True either way: every stored engine loads with the keys in the Secret).
OLDER_KEYS_IN_USE = "OlderKeysInUse"
OLDER_KEYS_UNUSED = "OlderKeysUnused"
REWRAPPED = "EnginesRewrapped"  # the Event of a pass that re-wrapped at least one engine


@dataclasses.dataclass(frozen=True)
class Verdict:
    reason: str
    message: str


def reconcile(
    ctx: context.Context,
    settings: operator_settings.Settings,
    access: storage.Access,
    *,
    secret_name: str,
    older: list[str],
    keks: list[x25519.PrivateKek],
) -> Verdict:
    """Re-wrap the model's stored engines under `keks[0]`; say whether the keys named `older` still wrap any."""
    current = keks[0]
    keep = f"keep the older keys ({', '.join(older)}) in Secret {secret_name}"
    engines, why = storage.open_store(settings, access)
    if engines is None:
        return Verdict(OLDER_KEYS_IN_USE, f"the stored engines could not be checked ({why}); {keep}")
    signing = ctx.kube.get("v1", "Secret", ctx.namespace, names.signing_secret(ctx.name))
    if signing is None or "signing.key" not in (signing.get("data") or {}):
        return Verdict(OLDER_KEYS_IN_USE, f"the model's signing key is missing, so nothing was re-wrapped; {keep}")
    signing_key = manifests.load_private_key(base64.b64decode(signing["data"]["signing.key"]))
    try:
        results = rewrap.rotate(
            engines, ctx.namespace, ctx.name, x25519.key_ring(keks), current, signing_key=signing_key
        )
    except api_errors.KestrelError as error:  # the store's failures and the manifests' (a signature, a key)
        return Verdict(OLDER_KEYS_IN_USE, f"re-wrapping the stored engines failed: {error}; {keep}")
    changed = sorted(result.key[:12] for result in results if result.changed)
    if changed:
        ctx.event(
            "Normal",
            REWRAPPED,
            f"Re-wrapped the data keys of stored engines {', '.join(changed)} under KEK {current.public.key_id}",
            "Keys",
        )
    wrapped = [result for result in results if result.kek_id is not None]
    return Verdict(
        OLDER_KEYS_UNUSED,
        f"every stored engine ({len(wrapped)}) is wrapped by it; the older keys ({', '.join(older)}) wrap none and "
        f"may be removed from Secret {secret_name}",
    )
