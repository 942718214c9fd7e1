"""Store grants: gives each build Job and each served engine's pods their grant for the store; owns no condition.

With an s3:// store whose credentials the operator reads (`store_credentials_secret`), no tenant namespace holds
those credentials. The operator signs grants with them (`storage.grants`) and keeps each in a Secret of the model:

- `NAME-build-KEY8-grant`, an upload grant for the engine `KEY`, made just before its build Job and valid until the
  Job's deadline; removed once the Job has finished.
- `NAME-load-KEY8-grant`, a download grant for the manifest of a validated engine and the files that manifest lists
  (read and verified with the model's key first), made before a workload that serves it is applied and re-issued
  once it is `grants.DOWNLOAD_REFRESH_AFTER` old, so that a pod restarted days later still loads; removed when
  garbage collection drops the engine.

The credentials copies that operators before grants made in each model's namespace are deleted by `storage`. A
pvc:// store (mounted claims) and ambient credentials (the pods' own cloud identity) have no grants.
"""

from __future__ import annotations

import datetime
from typing import Literal

from kestrel import settings as operator_settings
from kestrel.api import errors
from kestrel.kube import ownership
from kestrel.manifests import names, owners
from kestrel.manifests import store_mounts as store_manifests
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import cache, storage
from kestrel.security import artifact, manifest
from kestrel.storage import errors as storage_errors
from kestrel.storage import grants, layout, s3

UNAVAILABLE = "StoreGrantFailed"
# SigV4 signatures last at most seven days, whatever the policy says.
MAX_LIFETIME = datetime.timedelta(days=7)


def in_use(settings: operator_settings.Settings) -> bool:
    return settings.store.scheme == "s3" and settings.store_credentials_secret is not None


def _signer(ctx: context.Context, settings: operator_settings.Settings) -> s3.S3Store | str:
    """The store, opened with the operator's credentials, or why it cannot be."""
    engines, why = storage.open_store(settings, ctx.store_access or storage.Access())
    if isinstance(engines, s3.S3Store):
        return engines
    return why or "the store is not an s3:// store"


def _keep(ctx: context.Context, key: str, grant: grants.UploadGrant | grants.DownloadGrant) -> None:
    """Write `grant` for the engine `key` into its Secret."""
    kind: Literal["upload", "download"] = "upload" if isinstance(grant, grants.UploadGrant) else "download"
    owner = owners.Owner.from_body(ctx.body)
    document, expires = grant.to_json(), grants.stamp(grant.expires)
    ctx.kube.apply(store_manifests.grant_secret(owner, key, kind=kind, document=document, expires=expires))


def issue_upload(ctx: context.Context, settings: operator_settings.Settings, key: str) -> str | None:
    """Before the build Job of `key`: clear what an interrupted upload left of that engine, and write the Job's upload
    grant. Returns why the build cannot publish yet, or None."""
    if not in_use(settings):
        return None
    engines = _signer(ctx, settings)
    if isinstance(engines, str):
        return f"The operator cannot sign store grants: {engines}"
    ref = storage.engine_ref(ctx, key)
    deadline = datetime.timedelta(seconds=ctx.spec.engine.build.active_deadline_seconds)
    lifetime = min(deadline + grants.UPLOAD_MARGIN, MAX_LIFETIME)
    try:
        # What an interrupted upload left goes (a grant can add objects, never delete them). A complete engine the
        # cache did not trust stays until the build's upload replaces it, manifest last: loaders are granted only
        # what a verified manifest lists, so its leftovers are never fetched.
        if not engines.exists(ref):
            engines.delete_engine(ref)
        grant = engines.upload_grant(ref, lifetime)
    except storage_errors.StorageError as error:
        return f"Could not prepare the store for engine {key[:8]}: {error}"
    _keep(ctx, key, grant)
    return None


def drop_upload(ctx: context.Context, settings: operator_settings.Settings, key: str) -> None:
    """The build Job of `key` has finished: its grant goes."""
    if in_use(settings):
        ctx.kube.delete("v1", "Secret", ctx.namespace, names.upload_grant(ctx.name, key), owner=ctx.uid)


def _due(found: dict[str, object], now: datetime.datetime) -> bool:
    metadata = found.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    stamp = annotations.get(store_manifests.GRANT_EXPIRES_ANNOTATION) if isinstance(annotations, dict) else None
    try:
        expires = grants.parse_time(str(stamp))
    except ValueError:
        return True
    return expires - now <= grants.DOWNLOAD_LIFETIME - grants.DOWNLOAD_REFRESH_AFTER


def ensure_download(ctx: context.Context, settings: operator_settings.Settings, key: str) -> None:
    """Make sure pods serving `key` find a fresh download grant; a failure leaves the one there (or none) and says so
    (the workload then waits for the Secret)."""
    if not in_use(settings):
        return
    name = names.download_grant(ctx.name, key)
    found = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
    if found is not None and ownership.owned_by(found, ctx.uid) and not _due(found, ctx.now):
        return
    engines = _signer(ctx, settings)
    ref = storage.engine_ref(ctx, key)
    try:
        if isinstance(engines, str):
            raise storage_errors.StoreConfigError(engines)
        grant = engines.download_grant(ref, grants.DOWNLOAD_LIFETIME, _objects(ctx, engines, ref))
    except (storage_errors.StorageError, errors.IntegrityError) as error:
        ctx.event("Warning", UNAVAILABLE, f"Could not issue the store grant for engine {key[:8]}: {error}", "Rollout")
        return
    _keep(ctx, key, grant)


def _objects(ctx: context.Context, engines: s3.S3Store, ref: layout.EngineRef) -> list[str]:
    """What a loader of `ref` needs: the manifest and the files it lists, once its signature verified. Nothing else
    in the folder (leftovers of an earlier upload) is granted, and an engine the model did not sign gets no grant."""
    public = cache.verify_key(ctx)
    if public is None:
        raise errors.IntegrityError(f"Secret {names.signing_secret(ctx.name)} has no usable signing.pub")
    verified = manifest.verify(engines.read_manifest(ref), public)
    if verified.artifact_id != ref.artifact_id:
        raise errors.IntegrityError(f"the manifest is signed for {verified.artifact_id}, not {ref.artifact_id}")
    return [layout.MANIFEST_NAME, *(f"{artifact.FILES_DIR}/{entry.path}" for entry in verified.files)]


def prune(ctx: context.Context, settings: operator_settings.Settings, dropped: set[str]) -> None:
    """Remove this model's grants for the engines in `dropped` (those garbage collection takes from the store)."""
    if not in_use(settings):
        return
    for key in sorted(dropped):
        for name in (names.download_grant(ctx.name, key), names.upload_grant(ctx.name, key)):
            ctx.kube.delete("v1", "Secret", ctx.namespace, name, owner=ctx.uid)
