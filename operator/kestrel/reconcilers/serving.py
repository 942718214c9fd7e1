"""Serving: runs the validated engine on Triton and rolls new revisions out; owns Available, Progressing, Degraded.

A revision is an engine key. A new key that passed validation replaces the serving one through a rolling
update (maxUnavailable 0); if the Deployment does not become available within its progress deadline, the
previous key is put back and the failed one is remembered so it is not retried until the spec changes.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import conditions, keys, status
from kestrel.manifests import autoscaling, disruption, probes, service, triton
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import context

KEDA_CRD = "scaledobjects.keda.sh"


def _desired_key(ctx: context.Context) -> str | None:
    """The engine key that should serve: the current spec's engine, once it passed validation."""
    validated = ctx.condition(conditions.VALIDATED)
    engine = ctx.status.engine
    key = keys.engine_key(ctx.spec)
    if engine and engine.key == key and validated and validated.status == "True":
        return key
    return None


def referenced_secrets(pod_spec: dict[str, Any]) -> set[str]:
    """Names of the Secrets a pod mounts or reads environment from; its containers cannot start without them."""
    found = {v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for projected in (v["projected"] for v in pod_spec.get("volumes", []) if "projected" in v):
        found |= {s["secret"]["name"] for s in projected.get("sources", []) if "secret" in s}
    for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found.add(ref["name"])
    return found


def _missing_secrets(ctx: context.Context, pod_spec: dict[str, Any]) -> list[str]:
    return sorted(s for s in referenced_secrets(pod_spec) if ctx.kube.get("v1", "Secret", ctx.namespace, s) is None)


def _keda_available(ctx: context.Context) -> bool:
    return ctx.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, KEDA_CRD) is not None


def _deployment_state(found: dict[str, Any] | None) -> tuple[str, str]:
    """("Available" | "Progressing" | "Failed", message) for the Deployment as the API server reports it."""
    if not found:
        return "Progressing", "Deployment not created yet"
    spec, state = found.get("spec", {}), found.get("status", {})
    if state.get("observedGeneration", 0) < found["metadata"].get("generation", 0):
        return "Progressing", "Deployment controller has not seen the latest template yet"
    for condition in state.get("conditions", []):
        if condition["type"] == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return "Failed", condition.get("message", "progress deadline exceeded")
    wanted = spec.get("replicas", 1)
    updated, available = state.get("updatedReplicas", 0), state.get("availableReplicas", 0)
    if updated >= wanted and available >= wanted and state.get("replicas", 0) == updated:
        return "Available", f"{available}/{wanted} replicas available"
    return "Progressing", f"{updated}/{wanted} replicas updated, {available} available"


def _apply_children(ctx: context.Context, settings: manifest_context.Settings, key: str) -> dict[str, Any] | None:
    """Apply the workload for `key`; return None (and say why) when it cannot start yet."""
    owner = manifest_context.Owner.from_body(ctx.body)
    engine = ctx.status.engine if ctx.status.engine and ctx.status.engine.key == key else None
    load_seconds = engine.load_seconds if engine and engine.load_seconds else probes.DEFAULT_LOAD_SECONDS
    deployment = triton.deployment(
        ctx.spec,
        owner,
        settings,
        key,
        load_seconds=load_seconds,
        engine_size_bytes=engine.size_bytes if engine else None,
        tls_checksum=ctx.tls_checksum,
    )
    missing = _missing_secrets(ctx, deployment["spec"]["template"]["spec"])
    if missing:
        ctx.set(conditions.PROGRESSING, "False", "WaitingForSecrets", f"Waiting for Secrets {', '.join(missing)}")
        return None
    ctx.kube.apply(triton.service_account(owner))
    ctx.kube.apply(service.service(ctx.spec, owner))
    ctx.kube.apply(disruption.pod_disruption_budget(owner))
    scaler = autoscaling.autoscaler(ctx.spec, owner, settings, keda_available=_keda_available(ctx))
    if scaler:
        ctx.kube.apply(scaler)
    return ctx.kube.apply(deployment)


def reconcile(ctx: context.Context, settings: manifest_context.Settings) -> None:
    revision = ctx.status.revision or status.RevisionStatus()
    desired = _desired_key(ctx)
    if desired and desired not in (revision.current, revision.failed):
        revision = status.RevisionStatus(current=desired, previous=revision.current, failed=None)
        ctx.event("Normal", "RollingOut", f"Rolling out engine {desired[:8]}", "Rollout")
    ctx.status.revision = revision
    if revision.current is None:
        ctx.set(conditions.AVAILABLE, "False", "NoEngine", "No validated engine has been rolled out yet")
        ctx.set(conditions.PROGRESSING, "False", "AwaitingEngine", "Waiting for a validated engine")
        return
    applied = _apply_children(ctx, settings, revision.current)
    owner = manifest_context.Owner.from_body(ctx.body)
    ctx.status.endpoints = status.EndpointsStatus.model_validate(service.endpoints(ctx.spec, owner))
    if applied is None:
        ctx.set(conditions.AVAILABLE, "False", "WaitingForSecrets", "The serving pods cannot start yet")
        return
    state, message = _deployment_state(applied)
    replicas = applied.get("status", {})
    ctx.status.replicas = applied.get("spec", {}).get("replicas")
    ctx.status.ready_replicas = replicas.get("readyReplicas", 0)
    if state == "Available":
        ctx.set(conditions.AVAILABLE, "True", "Serving", f"Engine {revision.current[:8]}: {message}")
        if ctx.set(conditions.PROGRESSING, "False", "RolloutComplete", f"Engine {revision.current[:8]} is serving"):
            ctx.event("Normal", "RolloutComplete", f"Engine {revision.current[:8]} is serving", "Rollout")
        if revision.failed is None:
            ctx.set(conditions.DEGRADED, "False", "AsExpected", "")
        return
    available_now = replicas.get("availableReplicas", 0) > 0
    ctx.set(
        conditions.AVAILABLE,
        "True" if available_now else "False",
        "Serving" if available_now else "NoReadyReplicas",
        message,
    )
    if state == "Failed" and ctx.spec.rollout.auto_rollback and revision.previous:
        failed = revision.current
        ctx.status.revision = status.RevisionStatus(current=revision.previous, previous=None, failed=failed)
        ctx.set(
            conditions.DEGRADED,
            "True",
            "RolledBack",
            f"Engine {failed[:8]} did not become available ({message}); rolled back to {revision.previous[:8]}",
        )
        ctx.event(
            "Warning",
            "RolledBack",
            f"Rolled back from engine {failed[:8]} to {revision.previous[:8]}: {message}",
            "Rollback",
        )
        _apply_children(ctx, settings, revision.previous)
        return
    if state == "Failed":
        ctx.set(conditions.PROGRESSING, "False", "ProgressDeadlineExceeded", message)
        ctx.set(conditions.DEGRADED, "True", "ProgressDeadlineExceeded", message)
        return
    ctx.set(conditions.PROGRESSING, "True", "RollingOut", f"Engine {revision.current[:8]}: {message}")
    if revision.failed is None:
        ctx.set(conditions.DEGRADED, "False", "AsExpected", "")
