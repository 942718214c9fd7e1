"""The Triton workload of one engine revision, shared by the rolling and the canary rollouts: what it needs before its
pods can start, what to apply, and how far the Deployment controller has got with it; owns no condition (what the
rollouts observe of serving's conditions is an `Observed`, which serving.py writes)."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.api import spec as specs
from kestrel.manifests import autoscaling, disruption, owners, pod_lifecycle, pod_monitor, service, triton
from kestrel.reconcilers import context, installed
from kestrel.reconcilers.engine import grants, sample_grants

KEDA_CRD = "scaledobjects.keda.sh"
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
# Progressing=False once a revision serves, from the rolling or the Argo rollout; its Event, once, says the same.
ROLLOUT_COMPLETE = "RolloutComplete"


@dataclasses.dataclass(frozen=True)
class Observed:
    """One of serving's conditions (Available, Progressing, Degraded) as a rollout found it this pass."""

    status: conditions.ConditionStatus
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class MissingSecrets:
    """A workload whose pods cannot start yet: these Secrets they need do not exist."""

    names: tuple[str, ...]

    @property
    def progressing(self) -> Observed:
        return Observed("False", "WaitingForSecrets", f"Waiting for Secrets {', '.join(self.names)}")


# Degraded=False: no revision failed (or a new attempt started).
AS_EXPECTED = Observed("False", "AsExpected", "")


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


def missing_secrets(ctx: context.Context, pod_spec: dict[str, Any]) -> MissingSecrets | None:
    missing = sorted(
        s for s in referenced_secrets(pod_spec) if ctx.kube.get("v1", "Secret", ctx.namespace, s, cached=True) is None
    )
    return MissingSecrets(tuple(missing)) if missing else None


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
    load_seconds = engine.load_seconds if engine and engine.load_seconds else pod_lifecycle.DEFAULT_LOAD_SECONDS
    return load_seconds, engine.size_bytes if engine else None


class Builder(Protocol):
    """A manifest builder of one revision's pods: triton.deployment, triton.canary_deployment, argo.rollout."""

    def __call__(
        self,
        spec: specs.ModelDeploymentSpec,
        owner: owners.Owner,
        settings: operator_settings.Settings,
        engine_key: str,
        *,
        load_seconds: float,
        tls_checksum: str | None,
        api_key_id: str | None,
        engine_size_bytes: int | None,
    ) -> dict[str, Any]: ...


def build(
    ctx: context.Context, settings: operator_settings.Settings, key: str, builder: Builder
) -> dict[str, Any] | MissingSecrets:
    """The workload for `key` from `builder`, sized by the engine's measured facts; the Secrets its pods need that do
    not exist yet, instead, while there are any (the store grant for `key` is issued here first)."""
    grants.ensure_download(ctx, settings, key)
    sample_grants.ensure(ctx, settings, key)
    load_seconds, size_bytes = engine_facts(ctx, key)
    body = builder(
        ctx.spec,
        owners.Owner.from_body(ctx.body),
        settings,
        key,
        load_seconds=load_seconds,
        engine_size_bytes=size_bytes,
        tls_checksum=ctx.tls_checksum,
        api_key_id=ctx.api_key_id,
    )
    return missing_secrets(ctx, body["spec"]["template"]["spec"]) or body


def apply_children(
    ctx: context.Context, settings: operator_settings.Settings, key: str
) -> dict[str, Any] | MissingSecrets:
    """Apply the stable workload for `key` and return it as applied; the Secrets it waits for while it cannot start."""
    deployment = build(ctx, settings, key, triton.deployment)
    if isinstance(deployment, MissingSecrets):
        return deployment
    apply_shared(ctx, settings)
    return ctx.kube.apply(deployment)


def apply_shared(
    ctx: context.Context, settings: operator_settings.Settings, target_kind: autoscaling.TargetKind = "Deployment"
) -> None:
    """What every revision shares: the pods' ServiceAccount, the Service, the PDB, the autoscaler, and the PodMonitor
    where the Prometheus Operator is installed (without it nothing is made: the pods' annotations remain)."""
    owner = owners.Owner.from_body(ctx.body)
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
