"""The canary in Argo Rollouts' hands, where its CRDs exist: Kestrel applies the Rollout and its AnalysisTemplate
(manifests/argo.py) and reads the Rollout's status back for serving, which writes it into Available, Progressing and
Degraded; owns no condition.

Argo steps, analyses and aborts; Kestrel only chooses the revision. An aborted Rollout (a failed analysis, or
the progress deadline with autoRollback) has already scaled its canary away; Kestrel then remembers the revision
as failed and puts the previous one back into the template, which Argo rolls back to at once (it is the stable
ReplicaSet). A stable Deployment left from before Argo was installed goes once the Rollout is healthy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.api import status
from kestrel.manifests import argo, names, owners
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


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What the Rollout showed this pass, for serving to write: Available always, Progressing, and Degraded where
    the Rollout says something of it (None: it keeps what it said)."""

    available: workload.Observed
    progressing: workload.Observed
    degraded: workload.Observed | None


def reconcile(
    ctx: context.Context, settings: operator_settings.Settings, desired: str | None
) -> Rollout | workload.MissingSecrets | None:
    """Apply the Rollout of the revision that should serve and read its status; None while no revision has passed
    validation, the Secrets its pods wait for while there are any."""
    revision = ctx.status.revision or status.RevisionStatus()
    if ctx.status.canary is not None and ctx.status.canary.state in ("Progressing", "Promoting"):
        canary.remove(ctx)  # an operator-stepped canary from before Argo was installed
        ctx.status.canary = None
    if desired and desired not in (revision.current, revision.failed):
        revision = status.RevisionStatus(current=desired, previous=revision.current, failed=None)
        ctx.event("Normal", "RollingOut", f"Rolling out engine {desired[:8]} through Argo Rollouts", "Rollout")
    ctx.status.revision = revision
    if revision.current is None:
        return None
    applied = _apply(ctx, settings, revision.current)
    if isinstance(applied, workload.MissingSecrets):
        return applied
    found = applied.get("status") or {}
    ctx.status.replicas = applied.get("spec", {}).get("replicas")
    ctx.status.ready_replicas = found.get("readyReplicas", 0)
    serving = found.get("availableReplicas", 0) > 0
    state, message = rollout_state(applied, _canary_steps(ctx.spec))
    available = workload.Observed(
        "True" if serving else "False",
        "Serving" if serving else "NoReadyReplicas",
        f"Argo Rollout {names.triton(ctx.name)}: {found.get('availableReplicas', 0)} replicas available",
    )
    unless_failed = workload.AS_EXPECTED if revision.failed is None else None
    if state == "Healthy":
        ctx.kube.delete("apps/v1", "Deployment", ctx.namespace, names.triton(ctx.name), owner=ctx.uid)
        complete = workload.Observed("False", workload.ROLLOUT_COMPLETE, f"Engine {revision.current[:8]} is serving")
        return Rollout(available, complete, unless_failed)
    if state == "Aborted" and revision.previous:
        failed = revision.current
        ctx.status.revision = status.RevisionStatus(current=revision.previous, previous=None, failed=failed)
        text = f"Argo aborted the canary of engine {failed[:8]} ({message}); rolled back to {revision.previous[:8]}"
        ctx.event("Warning", canary.ANALYSIS_FAILED, text, "Rollback")
        back = _apply(ctx, settings, revision.previous)
        progressing = workload.Observed("False", canary.ANALYSIS_FAILED, text)
        if isinstance(back, workload.MissingSecrets):
            progressing = back.progressing
        return Rollout(available, progressing, workload.Observed("True", canary.ANALYSIS_FAILED, text))
    if state in ("Aborted", "Degraded"):
        reason = canary.ANALYSIS_FAILED if state == "Aborted" else "RolloutDegraded"
        degraded = workload.Observed("True", reason, f"Argo Rollout {names.triton(ctx.name)}: {message}")
        return Rollout(available, workload.Observed("False", reason, message), degraded)
    reason = "RollingOut" if state == "Pending" else canary.STEP
    progressing = workload.Observed("True", reason, f"Engine {revision.current[:8]}: {message}")
    return Rollout(available, progressing, unless_failed)


def _apply(
    ctx: context.Context, settings: operator_settings.Settings, key: str
) -> dict[str, Any] | workload.MissingSecrets:
    rollout = workload.build(ctx, settings, key, argo.rollout)
    if isinstance(rollout, workload.MissingSecrets):
        return rollout
    workload.apply_shared(ctx, settings, target_kind="Rollout")
    owner = owners.Owner.from_body(ctx.body)
    ctx.kube.apply(argo.analysis_template(ctx.spec, owner, settings))
    return ctx.kube.apply(rollout)
