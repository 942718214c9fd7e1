"""The Triton workload of one engine revision, shared by the rolling and the canary rollouts: what it needs before
its pods can start, what to apply, and how far the Deployment controller has got with it."""

from __future__ import annotations

from typing import Any, Protocol

from kestrel.api import conditions
from kestrel.api import spec as specs
from kestrel.manifests import autoscaling, disruption, pod_monitor, probes, service, triton
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import context, grants, installed, sampling

KEDA_CRD = "scaledobjects.keda.sh"
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"


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


def missing_secrets(ctx: context.Context, pod_spec: dict[str, Any]) -> list[str]:
    return sorted(
        s for s in referenced_secrets(pod_spec) if ctx.kube.get("v1", "Secret", ctx.namespace, s, cached=True) is None
    )


def keda_available(ctx: context.Context) -> bool:
    return installed.crd(ctx, KEDA_CRD)


def deployment_state(found: dict[str, Any] | None) -> tuple[str, str]:
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


def engine_facts(ctx: context.Context, key: str) -> tuple[float, int | None]:
    """Load time and size of the engine `key` when the status knows them (it knows only the spec's own engine)."""
    engine = ctx.status.engine if ctx.status.engine and ctx.status.engine.key == key else None
    load_seconds = engine.load_seconds if engine and engine.load_seconds else probes.DEFAULT_LOAD_SECONDS
    return load_seconds, engine.size_bytes if engine else None


def awaiting_engine(ctx: context.Context) -> None:
    """Nothing serves yet: no revision of this model has passed validation."""
    ctx.set(conditions.AVAILABLE, "False", "NoEngine", "No validated engine has been rolled out yet")
    ctx.set(conditions.PROGRESSING, "False", "AwaitingEngine", "Waiting for a validated engine")


def waiting_for_secrets(ctx: context.Context, deployment: dict[str, Any]) -> bool:
    """True (and Progressing says so) when a Secret the pods need does not exist yet."""
    missing = missing_secrets(ctx, deployment["spec"]["template"]["spec"])
    if missing:
        ctx.set(conditions.PROGRESSING, "False", "WaitingForSecrets", f"Waiting for Secrets {', '.join(missing)}")
    return bool(missing)


class Builder(Protocol):
    """A manifest builder of one revision's pods: triton.deployment, triton.canary_deployment, argo.rollout."""

    def __call__(
        self,
        spec: specs.ModelDeploymentSpec,
        owner: manifest_context.Owner,
        settings: manifest_context.Settings,
        engine_key: str,
        *,
        load_seconds: float,
        tls_checksum: str | None,
        api_key_id: str | None,
        engine_size_bytes: int | None,
    ) -> dict[str, Any]: ...


def build(
    ctx: context.Context, settings: manifest_context.Settings, key: str, builder: Builder
) -> dict[str, Any] | None:
    """The workload for `key` from `builder`, sized by the engine's measured facts; None (Progressing says why) while
    a Secret its pods need does not exist yet (the store grant for `key` is issued here first)."""
    grants.ensure_download(ctx, settings, key)
    sampling.ensure(ctx, settings, key)
    load_seconds, size_bytes = engine_facts(ctx, key)
    body = builder(
        ctx.spec,
        manifest_context.Owner.from_body(ctx.body),
        settings,
        key,
        load_seconds=load_seconds,
        engine_size_bytes=size_bytes,
        tls_checksum=ctx.tls_checksum,
        api_key_id=ctx.api_key_id,
    )
    return None if waiting_for_secrets(ctx, body) else body


def apply_children(ctx: context.Context, settings: manifest_context.Settings, key: str) -> dict[str, Any] | None:
    """Apply the stable workload for `key`; return None (and say why) when it cannot start yet."""
    deployment = build(ctx, settings, key, triton.deployment)
    if deployment is None:
        return None
    apply_shared(ctx, settings)
    return ctx.kube.apply(deployment)


def apply_shared(
    ctx: context.Context, settings: manifest_context.Settings, target_kind: autoscaling.TargetKind = "Deployment"
) -> None:
    """What every revision shares: the pods' ServiceAccount, the Service, the PDB, the autoscaler, and the PodMonitor
    where the Prometheus Operator is installed (without it nothing is made: the pods' annotations remain)."""
    owner = manifest_context.Owner.from_body(ctx.body)
    ctx.kube.apply(triton.service_account(owner))
    ctx.kube.apply(service.service(ctx.spec, owner))
    ctx.kube.apply(disruption.pod_disruption_budget(owner))
    scaler = autoscaling.autoscaler(
        ctx.spec, owner, settings, keda_available=keda_available(ctx), target_kind=target_kind
    )
    if scaler:
        ctx.kube.apply(scaler)
    if settings.pod_monitor and installed.crd(ctx, POD_MONITOR_CRD):
        ctx.kube.apply(pod_monitor.pod_monitor(owner, settings))
