"""Live samples' store grants: gives the Triton pods of each served engine the grant they upload samples with (an
s3:// store); owns no condition.

`NAME-samples-KEY8-grant` is an upload grant for `<prefix>/<namespace>/<name>/<key>/samples/` only, objects of at
most `layout.MAX_SAMPLE_SIZE`, signed with the operator's credentials for `grants.MAX_LIFETIME` (or until those
credentials expire) and re-issued once it has less than `RENEW_WITHIN` left: the pods read the file again for each
upload, and the kubelet refreshes a mounted Secret within a minute or so. It exists only while sampling is on: turned
off, the grant is deleted at the next pass (the pods roll, their environment no longer asks to sample). Garbage
collection deletes the grants of engines it drops (`prune`), and the samples go with the engine's folder.

A pvc:// store has no grant: the pods mount the samples folder itself (`manifests.sampling`).
"""

from __future__ import annotations

import datetime

from kestrel import settings as operator_settings
from kestrel.kube import ownership
from kestrel.manifests import names, owners
from kestrel.manifests import store_mounts as store_manifests
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import grants, storage
from kestrel.storage import errors as storage_errors
from kestrel.storage import grants as storage_grants
from kestrel.storage import layout, s3

UNAVAILABLE = "SamplesGrantFailed"
RENEW_WITHIN = datetime.timedelta(days=6)


def _expires(found: dict[str, object]) -> datetime.datetime | None:
    metadata = found.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    stamp = annotations.get(store_manifests.GRANT_EXPIRES_ANNOTATION) if isinstance(annotations, dict) else None
    try:
        return storage_grants.parse_time(str(stamp))
    except ValueError:
        return None


def ensure(ctx: context.Context, settings: operator_settings.Settings, key: str) -> None:
    """Before the workload serving `key` is applied: its samples grant, fresh, while sampling is on; none otherwise.
    A failure leaves the grant there (or none: the pods then wait for the Secret) and says so in an Event."""
    name = names.samples_grant(ctx.name, key)
    found = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
    if not ctx.spec.monitoring.sampling.enabled or settings.store.scheme != "s3":
        if found is not None:
            ctx.kube.delete("v1", "Secret", ctx.namespace, name, owner=ctx.uid)
        return
    if found is not None and ownership.owned_by(found, ctx.uid):
        expires = _expires(found)
        if expires is not None and expires - ctx.now > RENEW_WITHIN:
            return
    engines, why = storage.open_store(settings, ctx.store_access or storage.Access())
    try:
        if not isinstance(engines, s3.S3Store):
            raise storage_errors.StoreConfigError(why or "the store is not an s3:// store")
        grant = engines.upload_grant(
            storage.engine_ref(ctx, key),
            grants.MAX_LIFETIME,
            within=layout.SAMPLES_DIR,
            max_size=layout.MAX_SAMPLE_SIZE,
        )
    except storage_errors.StorageError as error:
        ctx.event("Warning", UNAVAILABLE, f"Could not issue the samples grant for engine {key[:8]}: {error}", "Rollout")
        return
    owner = owners.Owner.from_body(ctx.body)
    document, stamp = grant.to_json(), storage_grants.stamp(grant.expires)
    ctx.kube.apply(store_manifests.grant_secret(owner, key, kind="samples", document=document, expires=stamp))


def prune(ctx: context.Context, dropped: set[str]) -> None:
    """Remove the samples grants of the engines in `dropped` (those garbage collection takes from the store)."""
    for key in sorted(dropped):
        ctx.kube.delete("v1", "Secret", ctx.namespace, names.samples_grant(ctx.name, key), owner=ctx.uid)
