"""Canary: steps a new revision in beside the stable one, judged on Triton's metrics; owns no condition: what each
pass observes (`Outcome`) speaks for Progressing and Degraded while it runs, and serving.py writes it.

Two Deployments behind one Service: the stable one keeps `revision.current`, the canary (`names.canary`) runs the
new engine with the step's share of the stable replica count (at least one pod), and the Service splits traffic
by pod count. A step's analysis window starts once all its canary pods are available; at its end the canary's
own Triton counters decide: pass, the next step; fail, the canary goes and the stable keeps serving. The last step
(100) is the promotion: the stable Deployment moves to the new revision (maxUnavailable 0) and the canary goes once
it is available. Every fact lives in `status.canary`, so a restarted operator resumes at the same step and
window; a spec change aborts the canary (or restarts it at the first step when the engine stays the same).

A person may cut a canary short (`kestrel canary promote|abort`, the annotation `actions.CANARY_ACTION`): promote
skips the remaining steps, abort rolls back as a failed analysis does. A request with no canary to act on is refused
with a Warning; either way its annotation goes, so it cannot act later on a canary it was not meant for.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import actions, conditions, errors, status
from kestrel.api import spec as specs
from kestrel.manifests import names, triton
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary_analysis, workload
from kestrel.serving import metrics

STEP = "CanaryStep"
STEP_PASSED = "CanaryStepPassed"
PROMOTING = "CanaryPromoting"
PROMOTED = "CanaryPromoted"
ANALYSIS_FAILED = "CanaryAnalysisFailed"
NOT_AVAILABLE = "CanaryNotAvailable"
ABORTED = "CanaryAborted"
RESTARTED = "CanaryRestarted"
PROMOTION_REQUESTED = "CanaryPromotionRequested"
ABORTED_BY_USER = "CanaryAbortedByUser"
REQUEST_IGNORED = "CanaryRequestIgnored"


# Reads the Triton metrics of the named canary Deployment's pods, combined; raises metrics.MetricsError when it
# cannot (unreachable endpoint, bad answer).
Scrape = Callable[[context.Context, operator_settings.Settings, str], canary_analysis.Reading]
NOT_RUN = "analysis not run: serving checks are off (KESTREL_SERVING_CHECKS=false, pods without a real Triton)"


@dataclasses.dataclass(frozen=True)
class Seen:
    """What one move of the canary found: Progressing, and Degraded where the canary failed."""

    progressing: workload.Observed
    degraded: workload.Observed | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One pass of a canary, for serving to write: the stable Deployment as applied (or the Secrets it waits for),
    whether the canary started this pass (Degraded is then reset to AsExpected before what it found), and what it
    found last of Progressing and Degraded (None: it keeps what it said)."""

    stable: dict[str, Any] | workload.MissingSecrets
    started: bool
    progressing: workload.Observed | None
    degraded: workload.Observed | None


def _canary_spec(ctx: context.Context) -> specs.CanarySpec:
    if ctx.spec.rollout.canary is None:
        raise errors.SpecError("spec.rollout.canary", "spec.rollout.canary is required for the canary strategy")
    return ctx.spec.rollout.canary


def wanted(ctx: context.Context, revision: status.RevisionStatus, desired: str | None) -> bool:
    """Whether `desired` should be stepped in as a canary: a new validated engine while an older one serves."""
    return (
        ctx.spec.rollout.strategy == "canary"
        and desired is not None
        and revision.current is not None
        and desired not in (revision.current, revision.failed)
    )


def settle(ctx: context.Context, revision: status.RevisionStatus, desired: str | None) -> None:
    """End a running canary the spec no longer asks for; restart it at step 1 when only the generation moved."""
    found = ctx.status.canary
    if found is None or found.state != "Progressing":
        return
    still = wanted(ctx, revision, desired) and desired == found.revision
    if still and found.generation == ctx.generation:
        return
    if still:
        # Same engine, other spec (replicas, steps, bounds): what was measured no longer applies; keep its pods.
        message = f"Spec generation {ctx.generation} (was {found.generation}): canary of engine {found.revision[:8]}"
        ctx.event("Normal", RESTARTED, f"{message} restarts at step 1", "Rollout")
        ctx.status.canary = None
        return
    remove(ctx)
    ctx.event("Normal", ABORTED, f"Aborted the canary of engine {found.revision[:8]}: the spec changed", "Rollout")
    ctx.status.canary = None


def remove(ctx: context.Context) -> None:
    """Delete the canary Deployment (an absent one is fine); its pods go with it."""
    ctx.kube.delete("apps/v1", "Deployment", ctx.namespace, names.canary(ctx.name), owner=ctx.uid)


def reconcile(
    ctx: context.Context, settings: operator_settings.Settings, stable_key: str, new_key: str, scrape: Scrape
) -> Outcome:
    """One pass of the canary of `new_key` beside `stable_key`."""
    canary = _canary_spec(ctx)
    found = ctx.status.canary
    started = found is None or found.revision != new_key or found.state != "Progressing"
    if found is None or started:
        found = status.CanaryStatus(
            revision=new_key, state="Progressing", generation=ctx.generation, step=0, weight=canary.steps[0]
        )
        ctx.status.canary = found
        before = ctx.status.revision or status.RevisionStatus()
        ctx.status.revision = status.RevisionStatus(current=stable_key, previous=before.previous, failed=None)
        ctx.event(
            "Normal",
            STEP,
            f"Started the canary of engine {new_key[:8]} beside {stable_key[:8]}: steps {canary.steps}",
            "Rollout",
        )
    seen = _answer(ctx, canary, found)
    stable = workload.apply_children(ctx, settings, stable_key)
    if isinstance(stable, workload.MissingSecrets):
        return Outcome(stable, started, stable.progressing, seen.degraded if seen else None)
    for _ in range(2):  # a step that passes moves on in the same pass: scale to the next, or promote
        if found.state != "Progressing":
            break
        if canary.steps[found.step] == 100:
            seen = _promote(ctx, found, stable_key)
            break
        step = found.step
        seen = _step(ctx, settings, canary, found, scrape)
        if found.state != "Progressing" or found.step == step:
            break
    # Only a failure says Degraded, and nothing moves after it: the last move speaks for both conditions.
    return Outcome(stable, started, seen.progressing if seen else None, seen.degraded if seen else None)


def _answer(ctx: context.Context, canary: specs.CanarySpec, found: status.CanaryStatus) -> Seen | None:
    """Act on a person's promote (jump to the last step, which promotes) or abort (roll back now)."""
    action = ctx.requested(actions.CANARY_ACTION)
    if action not in actions.CANARY_ACTIONS:
        return None  # none, or a value to refuse (`refuse_request`)
    ctx.answer(actions.CANARY_ACTION)
    label = canary_analysis.step_label(canary, found.step)
    if action == actions.ABORT:
        return _fail(ctx, found, ABORTED_BY_USER, f"on request at {label}", outcome="was aborted")
    last = len(canary.steps) - 1
    message = (
        f"Promoting the canary of engine {found.revision[:8]} on request at {label}: "
        f"{last - found.step} remaining step(s) skipped"
    )
    found.step, found.weight = last, canary.steps[last]
    ctx.event("Normal", PROMOTION_REQUESTED, message, "Rollout")
    return None


def refuse_request(ctx: context.Context, why: str | None = None) -> None:
    """At the end of the serving pass: a canary request that nothing acted on is removed with a Warning saying why."""
    action = ctx.requested(actions.CANARY_ACTION)
    if action is None:
        return
    ctx.answer(actions.CANARY_ACTION)
    found = ctx.status.canary
    if action not in actions.CANARY_ACTIONS:
        why = f"the value is not one of {', '.join(actions.CANARY_ACTIONS)}"
    elif why is None and ctx.spec.rollout.strategy != "canary":
        why = f"spec.rollout.strategy is {ctx.spec.rollout.strategy}: there are no canaries"
    elif why is None:
        state = f" (the canary of engine {found.revision[:8]} is {found.state})" if found else ""
        why = f"no canary is in progress{state}"
    ctx.event("Warning", REQUEST_IGNORED, f"Ignored {actions.CANARY_ACTION}={action!r}: {why}", "Rollout")


def _step(
    ctx: context.Context,
    settings: operator_settings.Settings,
    canary: specs.CanarySpec,
    found: status.CanaryStatus,
    scrape: Scrape,
) -> Seen:
    label = canary_analysis.step_label(canary, found.step)
    replicas = triton.canary_replicas(ctx.spec, found.weight)
    deployment = workload.build(
        ctx, settings, found.revision, functools.partial(triton.canary_deployment, replicas=replicas)
    )
    if isinstance(deployment, workload.MissingSecrets):
        return Seen(deployment.progressing)
    state, message = workload.deployment_state(ctx.kube.apply(deployment))
    found.replicas = replicas
    if state == "Failed":
        return _fail(ctx, found, NOT_AVAILABLE, f"canary pods did not become available at {label}: {message}")
    if state != "Available":
        found.step_started_at, found.baseline = None, None
        return Seen(workload.Observed("True", STEP, f"{label}: waiting for {replicas} canary pods ({message})"))
    if found.step_started_at is None or found.baseline is None:
        try:
            baseline = _read(ctx, settings, scrape)
        except metrics.MetricsError as error:
            return _fail(ctx, found, ANALYSIS_FAILED, f"{label}: could not read the canary's metrics: {error}")
        found.step_started_at, found.baseline = ctx.now, baseline.counters()
    until = canary_analysis.window_end(found.step_started_at, canary)
    if not canary_analysis.window_elapsed(found.step_started_at, ctx.now, canary):
        return Seen(workload.Observed("True", STEP, f"{label}, analysis until {until.isoformat()}"))
    if settings.serving_checks:
        try:
            end = _read(ctx, settings, scrape)
        except metrics.MetricsError as error:
            return _fail(ctx, found, ANALYSIS_FAILED, f"{label}: could not read the canary's metrics: {error}")
        analysis, verdict = canary_analysis.verdict(canary.analysis, found.baseline, end)
    else:
        analysis, verdict = status.CanaryAnalysisStatus(), NOT_RUN
    found.analysis = analysis
    if analysis.passed is False:
        return _fail(ctx, found, ANALYSIS_FAILED, f"{label}: {verdict}")
    ctx.event("Normal", STEP_PASSED, f"Canary of engine {found.revision[:8]} passed {label}: {verdict}", "Rollout")
    found.step += 1
    found.weight = canary.steps[found.step]
    found.step_started_at, found.baseline = None, None
    next_label = canary_analysis.step_label(canary, found.step)
    return Seen(workload.Observed("True", STEP, f"{next_label}: starting; {label} passed ({verdict})"))


def _read(ctx: context.Context, settings: operator_settings.Settings, scrape: Scrape) -> canary_analysis.Reading:
    """The canary's counters now; zeros, unread, where serving checks are off (the window then says so)."""
    if not settings.serving_checks:
        return canary_analysis.Reading(success=0, failure=0)
    return scrape(ctx, settings, names.canary(ctx.name))


def _promote(ctx: context.Context, found: status.CanaryStatus, stable_key: str) -> Seen:
    """Move the stable Deployment to the canary's revision; `finish` removes the canary once it is available."""
    found.state = "Promoting"
    found.step_started_at, found.baseline = None, None
    ctx.status.revision = status.RevisionStatus(current=found.revision, previous=stable_key, failed=None)
    message = f"Promoting engine {found.revision[:8]}: the stable Deployment moves to it"
    ctx.event("Normal", PROMOTING, message, "Rollout")
    return Seen(workload.Observed("True", PROMOTING, message))


def owns_progressing(ctx: context.Context, revision: status.RevisionStatus) -> bool:
    """Whether the promotion of the serving revision speaks for Progressing, not the rolling path's RolloutComplete:
    `finish` sets it while promoting, and once promoted the condition keeps saying so on later passes instead of
    changing its reason with nothing changed (while the stable Deployment stays available)."""
    found = ctx.status.canary
    if found is None or found.revision != revision.current:
        return False
    if found.state == "Promoting":
        return True
    progressing = ctx.condition(conditions.PROGRESSING)
    return (
        found.state == "Promoted"
        and progressing is not None
        and (progressing.status, progressing.reason) == ("False", PROMOTED)
    )


def finish(ctx: context.Context, revision: status.RevisionStatus, stable_state: str) -> workload.Observed | None:
    """After the rolling path ran for a promotion: drop the canary once the stable serves its revision; what the
    promotion says of Progressing (None: nothing)."""
    found = ctx.status.canary
    if found is None or found.state != "Promoting":
        return None
    if revision.current != found.revision:
        # The stable Deployment did not take the new revision and was rolled back: the canary goes with it.
        remove(ctx)
        found.state = "Failed"
        return None
    if stable_state != "Available":
        return workload.Observed("True", PROMOTING, f"Promoting engine {found.revision[:8]}: stable rolling")
    remove(ctx)
    found.state = "Promoted"
    found.replicas = 0
    message = f"Engine {found.revision[:8]} passed every canary step and serves from the stable Deployment"
    ctx.event("Normal", PROMOTED, message, "Rollout")
    return workload.Observed("False", PROMOTED, message)


def _fail(
    ctx: context.Context, found: status.CanaryStatus, reason: str, message: str, *, outcome: str = "failed"
) -> Seen:
    """Roll back: the canary goes, its revision is remembered as failed, the stable keeps serving untouched."""
    remove(ctx)
    found.state = "Failed"
    found.replicas = 0
    before = ctx.status.revision or status.RevisionStatus()
    ctx.status.revision = before.model_copy(update={"failed": found.revision})
    serving = before.current[:8] if before.current else "nothing"
    full = f"Canary of engine {found.revision[:8]} {outcome} ({message}); engine {serving} keeps serving"
    ctx.event("Warning", reason, full, "Rollback")
    return Seen(workload.Observed("False", reason, full), degraded=workload.Observed("True", reason, full))
