"""The canary in Argo Rollouts' hands, where its CRDs exist: Kestrel applies the Rollout and its AnalysisTemplate
(manifests/argo.py) and reads the Rollout's status back into serving's Available, Progressing and Degraded.

Argo steps, analyses and aborts; Kestrel only chooses the revision. An aborted Rollout (a failed analysis, or
the progress deadline with autoRollback) has already scaled its canary away; Kestrel then remembers the revision
as failed and puts the previous one back into the template, which Argo rolls back to at once (it is the stable
ReplicaSet). A stable Deployment left from before Argo was installed goes once the Rollout is healthy.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import conditions, status
from kestrel.api import spec as specs
from kestrel.manifests import argo, names
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary, workload

ROLLOUT_CRD = "rollouts.argoproj.io"
ARGO_STEPS_PER_WEIGHT = 3  # setWeight, pause, analysis (manifests/argo.py)


def available(ctx: context.Context) -> bool:
    return ctx.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, ROLLOUT_CRD) is not None


def rollout_state(rollout: dict[str, Any], steps: list[int]) -> tuple[str, str]:
    """("Pending" | "Healthy" | "Progressing" | "Aborted" | "Degraded", message) from the Rollout's status.

    Pending: Argo's controller has not observed the Rollout's latest generation, so its status describes an older one.
    """
    found = rollout.get("status") or {}
    generation = rollout.get("metadata", {}).get("generation")
    observed = found.get("observedGeneration")
    if observed is None or (generation is not None and str(observed) != str(generation)):
        return "Pending", "Argo Rollouts has not seen the latest template yet"
    message = found.get("message") or ""
    if found.get("abort"):
        return "Aborted", message or "the Rollout was aborted"
    phase = found.get("phase")
    if phase == "Healthy":
        return "Healthy", f"{found.get('availableReplicas', 0)} replicas available"
    if phase == "Degraded":
        return "Degraded", message or "the Rollout is degraded"
    index = found.get("currentStepIndex")
    if isinstance(index, int) and steps:
        weight_index = min(index // ARGO_STEPS_PER_WEIGHT, len(steps) - 1)
        where = f"step {weight_index + 1}/{len(steps)}, {steps[weight_index]}%"
    else:
        where = "starting"
    state = f"Argo Rollout {phase or 'Progressing'} at {where}"
    return "Progressing", f"{state}: {message}" if message else state


def _canary_steps(spec: specs.ModelDeploymentSpec) -> list[int]:
    return list(spec.rollout.canary.steps) if spec.rollout.canary else []


def reconcile(ctx: context.Context, settings: manifest_context.Settings, desired: str | None) -> None:
    revision = ctx.status.revision or status.RevisionStatus()
    if ctx.status.canary is not None and ctx.status.canary.state in ("Progressing", "Promoting"):
        canary.remove(ctx)  # an operator-stepped canary from before Argo was installed
        ctx.status.canary = None
    if desired and desired not in (revision.current, revision.failed):
        revision = status.RevisionStatus(current=desired, previous=revision.current, failed=None)
        ctx.event("Normal", "RollingOut", f"Rolling out engine {desired[:8]} through Argo Rollouts", "Rollout")
    ctx.status.revision = revision
    if revision.current is None:
        workload.awaiting_engine(ctx)
        return
    applied = _apply(ctx, settings, revision.current)
    if applied is None:
        ctx.set(conditions.AVAILABLE, "False", "WaitingForSecrets", "The serving pods cannot start yet")
        return
    found = applied.get("status") or {}
    ctx.status.replicas = applied.get("spec", {}).get("replicas")
    ctx.status.ready_replicas = found.get("readyReplicas", 0)
    serving = found.get("availableReplicas", 0) > 0
    state, message = rollout_state(applied, _canary_steps(ctx.spec))
    ctx.set(
        conditions.AVAILABLE,
        "True" if serving else "False",
        "Serving" if serving else "NoReadyReplicas",
        f"Argo Rollout {names.triton(ctx.name)}: {found.get('availableReplicas', 0)} replicas available",
    )
    if state == "Healthy":
        ctx.kube.delete("apps/v1", "Deployment", ctx.namespace, names.triton(ctx.name), owner=ctx.uid)
        if ctx.set(conditions.PROGRESSING, "False", "RolloutComplete", f"Engine {revision.current[:8]} is serving"):
            ctx.event("Normal", "RolloutComplete", f"Engine {revision.current[:8]} is serving", "Rollout")
        if revision.failed is None:
            ctx.set(conditions.DEGRADED, "False", "AsExpected", "")
        return
    if state == "Aborted" and revision.previous:
        failed = revision.current
        ctx.status.revision = status.RevisionStatus(current=revision.previous, previous=None, failed=failed)
        text = f"Argo aborted the canary of engine {failed[:8]} ({message}); rolled back to {revision.previous[:8]}"
        ctx.set(conditions.DEGRADED, "True", canary.ANALYSIS_FAILED, text)
        ctx.set(conditions.PROGRESSING, "False", canary.ANALYSIS_FAILED, text)
        ctx.event("Warning", canary.ANALYSIS_FAILED, text, "Rollback")
        _apply(ctx, settings, revision.previous)
        return
    if state in ("Aborted", "Degraded"):
        reason = canary.ANALYSIS_FAILED if state == "Aborted" else "RolloutDegraded"
        ctx.set(conditions.DEGRADED, "True", reason, f"Argo Rollout {names.triton(ctx.name)}: {message}")
        ctx.set(conditions.PROGRESSING, "False", reason, message)
        return
    reason = "RollingOut" if state == "Pending" else canary.STEP
    ctx.set(conditions.PROGRESSING, "True", reason, f"Engine {revision.current[:8]}: {message}")
    if revision.failed is None:
        ctx.set(conditions.DEGRADED, "False", "AsExpected", "")


def _apply(ctx: context.Context, settings: manifest_context.Settings, key: str) -> dict[str, Any] | None:
    rollout = workload.build(ctx, settings, key, argo.rollout)
    if rollout is None:
        return None
    workload.apply_shared(ctx, settings, target_kind="Rollout")
    owner = manifest_context.Owner.from_body(ctx.body)
    ctx.kube.apply(argo.analysis_template(ctx.spec, owner, settings))
    return ctx.kube.apply(rollout)
