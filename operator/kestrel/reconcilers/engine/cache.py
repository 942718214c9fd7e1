"""The engine cache: an engine with the spec's key already in the store is reused instead of built again; owns no
condition.

Trust comes from the signature, not from the store: anyone who can write the bucket could put a manifest there.
The stored manifest is verified with the model's own public key (the Secret the encryption reconciler keeps), must
name this engine (its artifact id is `<namespace>/<name>/<key>`), must be encrypted when the spec asks for
encryption, and must carry the build's result; anything else is a miss, and a bad signature a Warning too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

import pydantic
from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel import settings as operator_settings
from kestrel.api import errors, result
from kestrel.engine import publish
from kestrel.manifests import names, owners
from kestrel.manifests import store_mounts as store_manifests
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.security import manifest
from kestrel.storage import errors as storage_errors

REJECTED = "CachedEngineRejected"
UNAVAILABLE = "EngineCacheUnavailable"


@dataclasses.dataclass(frozen=True)
class Hit:
    """A verified stored engine: its build's result (with the manifest's digest) and where it lives."""

    result: result.BuildResult
    uri: str


def verify_key(ctx: context.Context) -> ed25519.Ed25519PublicKey | None:
    secret = ctx.kube.get("v1", "Secret", ctx.namespace, names.signing_secret(ctx.name), cached=True)
    encoded = ((secret or {}).get("data") or {}).get("signing.pub")
    if not encoded:
        return None
    try:
        return manifest.load_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _check(ctx: context.Context, document: bytes, key: str, expected_id: str) -> result.BuildResult:
    """The BuildResult the signed manifest carries; IntegrityError naming what is wrong otherwise."""
    public = verify_key(ctx)
    if public is None:
        raise errors.IntegrityError(f"Secret {names.signing_secret(ctx.name)} has no usable signing.pub")
    verified = manifest.verify(document, public)  # SignatureError is an IntegrityError
    if verified.artifact_id != expected_id:
        raise errors.IntegrityError(f"the manifest is signed for {verified.artifact_id}, not {expected_id}")
    if ctx.spec.security.encryption.enabled and not isinstance(verified, manifest.Manifest):
        raise errors.IntegrityError("the stored engine is not encrypted and spec.security.encryption is enabled")
    try:
        found = publish.stored_result(verified.metadata)
    except pydantic.ValidationError:
        found = None
    if found is None or found.engine_key != key:
        raise errors.IntegrityError("the manifest carries no build result for this engine key")
    return found


def lookup(ctx: context.Context, settings: operator_settings.Settings, key: str, access: storage.Access) -> Hit | None:
    """The stored engine for `key` once verified; None (a miss) when absent, untrusted or out of reach."""
    engines, why = storage.open_store(settings, access)
    if engines is None:
        storage.say_once(why)
        return None
    ref = storage.engine_ref(ctx, key)
    uri = store_manifests.engine_uri(settings, owners.Owner.from_body(ctx.body), key)
    try:
        document = engines.read_manifest(ref)
    except storage_errors.EngineNotFoundError:
        return None
    except storage_errors.StorageError as error:
        # The cache saves a build; it never blocks one. Store errors are redacted by the storage layer.
        ctx.event("Warning", UNAVAILABLE, f"Could not look up engine {key[:8]} in the store: {error}", "Build")
        return None
    try:
        found = _check(ctx, document, key, ref.artifact_id)
    except errors.IntegrityError as error:
        ctx.event("Warning", REJECTED, f"Did not trust stored engine {key[:8]} at {uri}: {error}; building it", "Build")
        return None
    digest = f"sha256:{hashlib.sha256(document).hexdigest()}"
    return Hit(found.model_copy(update={"digest": digest, "uri": uri}), uri)
