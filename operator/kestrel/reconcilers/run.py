"""One pass over one ModelDeployment: every reconciler in order, then the summary, then one status write."""

from __future__ import annotations

import datetime
from typing import Any

from kestrel import operator_metrics
from kestrel import settings as operator_settings
from kestrel.api import conditions, errors, status
from kestrel.kube import protocol
from kestrel.reconcilers import audit, context, summary
from kestrel.reconcilers.engine import engine, garbage, storage
from kestrel.reconcilers.security import access, encryption, tls
from kestrel.reconcilers.serving import checks, drift, serving


def reconcile(
    kube: protocol.KubeApi,
    body: dict[str, Any],
    settings: operator_settings.Settings,
    now: datetime.datetime | None = None,
) -> context.Context:
    """Converge the object's children toward its spec and write what was observed to its status.

    Idempotent and level-triggered: create, update, resume and the drift timer all call it.
    """
    with operator_metrics.RECONCILE_SECONDS.time():
        try:
            ctx = _reconcile(kube, body, settings, now or datetime.datetime.now(datetime.UTC))
        except Exception:
            operator_metrics.RECONCILES.labels("error").inc()
            raise
    operator_metrics.RECONCILES.labels("ok").inc()
    ready = ctx.condition(conditions.READY)
    operator_metrics.READY.labels(ctx.namespace, ctx.name).set(1 if ready and ready.status == "True" else 0)
    return ctx


def _reconcile(
    kube: protocol.KubeApi, body: dict[str, Any], settings: operator_settings.Settings, now: datetime.datetime
) -> context.Context:
    try:
        ctx = context.Context.load(kube, body, now)
    except errors.SpecError as error:
        _report_unreadable_spec(kube, body, now, error)
        raise
    try:
        # Keys and certificates first: the build Job mounts the signing key, the Triton pods the certificate. The
        # store's access only reads the operator's own Secret; the key rotation re-wraps stored engines with it.
        store = storage.reconcile(ctx, settings)
        encryption.reconcile(ctx, settings, store)
        tls.reconcile(ctx, settings)
        access.reconcile(ctx, settings)
        engine.reconcile(ctx, settings, store)
        serving.reconcile(ctx, settings)
        checks.reconcile(ctx, settings)
        drift.reconcile(ctx, settings)  # judges the metrics the checks just read
        garbage.reconcile(ctx, settings, store, body.get("status") or {})
        summary.reconcile(ctx)
    except errors.NameConflictError as conflict:
        # A child's name is taken by someone else's object: nothing more is written until that is resolved.
        summary.stopped(ctx, conflict)
    audit.reconcile(ctx, body.get("status") or {})
    ctx.status.observed_generation = ctx.generation
    old_status, new_status = body.get("status") or {}, ctx.status.to_wire()
    ctx.stored_status = old_status
    if new_status != old_status:
        stored = kube.patch_status(ctx.namespace, ctx.name, merge_patch(old_status, new_status))
        ctx.stored_status = stored.get("status") or {}
    for annotation, value in ctx.answered.items():
        kube.remove_model_deployment_annotation(ctx.namespace, ctx.name, annotation, value)
    return ctx


def _report_unreadable_spec(
    kube: protocol.KubeApi, body: dict[str, Any], now: datetime.datetime, error: errors.SpecError
) -> None:
    """A stored spec this operator cannot read (say one written before the CRD refused spec.security.encryption.kms).

    No reconciler runs, so none would correct what an earlier pass claimed: the owners of the claims it cannot
    stand by say so without a spec (summary: Ready; encryption: Encrypted).
    """
    old_status = body.get("status") or {}
    found = status.ModelDeploymentStatus.model_validate(old_status)
    generation = int(body["metadata"].get("generation", 0))
    summary.unreadable_spec(found, error, generation, now)
    encryption.unreadable_spec(found, generation, now)
    new_status = found.to_wire()
    if new_status != old_status:
        kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], merge_patch(old_status, new_status))


def delete(kube: protocol.KubeApi, body: dict[str, Any], settings: operator_settings.Settings, attempt: int) -> None:
    """What owner references cannot clean up when a ModelDeployment goes: its engines in the store."""
    garbage.on_delete(kube, body, settings, attempt)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from `old` to `new`: keys gone from `new` are sent as null."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch
