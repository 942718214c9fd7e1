"""Garbage collection of stored engines: owner references do not reach into the store, so the operator does; owns no
condition.

While a ModelDeployment lives, each change of its revisions keeps `revision.current`, `revision.previous` (the
rollback target) and the spec's own key (it may still be building) and removes its other engines, and the store
grants (`grants`) of those engines. On deletion
(Kopf's finalizer holds the object until `on_delete` returns) no revision is left, so nothing is kept.

A store that cannot be reached must not hold a deletion forever: `on_delete` asks for a retry (`TransientError`)
up to `DELETE_ATTEMPTS` times, `RETRY_DELAY` apart, then lets the deletion finish, leaving the engines behind with
a Warning Event that names where they are. Incomplete engines changed within the last hour (an upload in progress,
`storage.store.INCOMPLETE_GRACE`) are left alone, also on deletion.
"""

from __future__ import annotations

import logging
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import errors, keys, status
from kestrel.kube import protocol
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import grants, sample_grants, storage
from kestrel.storage import errors as storage_errors

log = logging.getLogger("kestrel")

COLLECTED = "EnginesCollected"
LEFT = "EngineGarbageLeft"
DELETE_ATTEMPTS = 5
RETRY_DELAY = 10.0


def _keys(removed: list[str]) -> str:
    return ", ".join(key[:8] for key in removed)


def reconcile(
    ctx: context.Context, settings: operator_settings.Settings, access: storage.Access, old_status: dict[str, Any]
) -> None:
    """After serving: collect when the revisions changed in this pass (the store is not asked otherwise)."""
    new = ctx.status.revision
    old = status.RevisionStatus.model_validate(old_status.get("revision") or {})
    if new is None or new.current is None or (new.current, new.previous) == (old.current, old.previous):
        return
    keep = {key for key in (new.current, new.previous, keys.engine_key(ctx.spec)) if key}
    dropped = {key for key in (old.current, old.previous, old.failed, new.failed) if key} - keep
    grants.prune(ctx, settings, dropped)
    sample_grants.prune(ctx, dropped)
    engines, why = storage.open_store(settings, access)
    if engines is None:
        storage.say_once(why)
        return
    try:
        removed = engines.collect_garbage(ctx.namespace, ctx.name, keep)
    except storage_errors.StorageError as error:
        # Not worth failing the pass: the engines stay until the next revision change or the deletion.
        ctx.event("Warning", LEFT, f"Could not collect unused engines: {error}", "Collect")
        return
    if removed:
        ctx.event("Normal", COLLECTED, f"Removed stored engines no revision references: {_keys(removed)}", "Collect")


def on_delete(kube: protocol.KubeApi, body: dict[str, Any], settings: operator_settings.Settings, attempt: int) -> None:
    """Remove every stored engine of a ModelDeployment being deleted; `attempt` counts from 0."""
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    where = storage.prefix(settings, namespace, name)
    last = attempt + 1 >= DELETE_ATTEMPTS
    try:
        access, _ = storage.read_access(kube, settings)
        engines, why = storage.open_store(settings, access)
        if engines is None:
            raise storage_errors.StoreConfigError(why)
        removed = engines.collect_garbage(namespace, name, set())
    except (storage_errors.StorageError, errors.ClusterError) as error:
        if not last and not isinstance(error, storage_errors.StoreConfigError):
            raise errors.TransientError(
                f"Could not remove the stored engines at {where} (attempt {attempt + 1} of {DELETE_ATTEMPTS}): {error}",
                delay=RETRY_DELAY,
            ) from error
        _event(kube, body, "Warning", LEFT, f"Left the stored engines at {where} behind: {error}")
        return
    if removed:
        _event(kube, body, "Normal", COLLECTED, f"Removed the stored engines at {where}: {_keys(removed)}")


def _event(kube: protocol.KubeApi, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    meta = body["metadata"]
    log.log(logging.WARNING if kind == "Warning" else logging.INFO, "%s: %s (%s)", _ref(meta), message, reason)
    try:
        kube.event(body, type=kind, reason=reason, message=message, action="Delete")
    except errors.ClusterError as error:
        # The namespace may be terminating, where no new Event is admitted; the log line above stays.
        log.warning("%s: could not record Event %s: %s", _ref(meta), reason, error)


def _ref(meta: dict[str, Any]) -> str:
    return f"ModelDeployment {meta['namespace']}/{meta['name']}"
