"""Serving: runs the validated engine on Triton and rolls new revisions out; owns Available, Progressing, Degraded.

A revision is an engine key. With the rolling strategy a new key that passed validation replaces the serving
one through a rolling update (maxUnavailable 0); if the Deployment does not become available within its progress
deadline, the previous key is put back and the failed one is remembered so it is not retried until the spec
changes. With the canary strategy the new key is stepped in beside the serving one (reconcilers/serving/canary.py), or,
where Argo Rollouts is installed, handed to an Argo Rollout (reconcilers/serving/argo_rollout.py). The very first
revision has nothing to be compared with and rolls out directly under either strategy.

The rollouts return what they observed (`workload.Observed`, `canary.Outcome`, `argo_rollout.Rollout`) and this
module alone writes the three conditions from it.
"""

from __future__ import annotations

from kestrel import settings as operator_settings
from kestrel.api import conditions, keys, status
from kestrel.manifests import labels, names, owners, service
from kestrel.reconcilers import context, pod_problems
from kestrel.reconcilers.serving import argo_rollout, canary, canary_metrics, workload

referenced_secrets = workload.referenced_secrets


def _desired_key(ctx: context.Context) -> str | None:
    """The engine key that should serve: the current spec's engine, once it passed validation."""
    validated = ctx.condition(conditions.VALIDATED)
    engine = ctx.status.engine
    key = keys.engine_key(ctx.spec)
    if engine and engine.key == key and validated and validated.status == "True":
        return key
    return None


ARGO_REQUEST = "Argo Rollouts runs this canary: use `kubectl argo rollouts promote|abort` on the model's Rollout"


def reconcile(
    ctx: context.Context, settings: operator_settings.Settings, scrape: canary.Scrape = canary_metrics.scrape
) -> None:
    """`scrape` reads the canary pods' Triton metrics (used by the operator-stepped canary only)."""
    _serve(ctx, settings, scrape)
    canary.refuse_request(ctx)


def _serve(ctx: context.Context, settings: operator_settings.Settings, scrape: canary.Scrape) -> None:
    revision = ctx.status.revision or status.RevisionStatus()
    desired = _desired_key(ctx)
    owner = owners.Owner.from_body(ctx.body)
    ctx.status.endpoints = status.EndpointsStatus.model_validate(service.endpoints(ctx.spec, owner))
    if ctx.spec.rollout.strategy == "canary" and argo_rollout.available(ctx):
        _argo(ctx, argo_rollout.reconcile(ctx, settings, desired))
        canary.refuse_request(ctx, ARGO_REQUEST)
        return
    canary.settle(ctx, revision, desired)
    if canary.wanted(ctx, revision, desired) and revision.current and desired:
        outcome = canary.reconcile(ctx, settings, revision.current, desired, scrape)
        if outcome.started:
            _degraded(ctx, workload.AS_EXPECTED)
        if outcome.degraded is not None:
            _degraded(ctx, outcome.degraded)
        if outcome.progressing is not None:
            _progressing(ctx, outcome.progressing)
        if isinstance(outcome.stable, workload.MissingSecrets):
            _cannot_start(ctx)
            return
        _report(ctx, outcome.stable, ctx.status.revision or revision)
        if ctx.status.canary is None or ctx.status.canary.state != "Promoting":
            return
    _rolling(ctx, settings, desired)


def _available(ctx: context.Context, observed: workload.Observed) -> None:
    ctx.set(conditions.AVAILABLE, observed.status, observed.reason, observed.message)


def _progressing(ctx: context.Context, observed: workload.Observed) -> None:
    """Progressing as observed; a rollout that completed says so once in an Event too."""
    flipped = ctx.set(conditions.PROGRESSING, observed.status, observed.reason, observed.message)
    if flipped and observed.reason == workload.ROLLOUT_COMPLETE:
        ctx.event("Normal", workload.ROLLOUT_COMPLETE, observed.message, "Rollout")


def _degraded(ctx: context.Context, observed: workload.Observed) -> None:
    ctx.set(conditions.DEGRADED, observed.status, observed.reason, observed.message)


def _cannot_start(ctx: context.Context) -> None:
    ctx.set(conditions.AVAILABLE, "False", "WaitingForSecrets", "The serving pods cannot start yet")


def _awaiting_engine(ctx: context.Context) -> None:
    """Nothing serves yet: no revision of this model has passed validation."""
    ctx.set(conditions.AVAILABLE, "False", "NoEngine", "No validated engine has been rolled out yet")
    ctx.set(conditions.PROGRESSING, "False", "AwaitingEngine", "Waiting for a validated engine")


def _waiting_for_secrets(ctx: context.Context, missing: workload.MissingSecrets) -> None:
    _progressing(ctx, missing.progressing)
    _cannot_start(ctx)


def _argo(ctx: context.Context, found: argo_rollout.Rollout | workload.MissingSecrets | None) -> None:
    if found is None:
        _awaiting_engine(ctx)
    elif isinstance(found, workload.MissingSecrets):
        _waiting_for_secrets(ctx, found)
    else:
        _available(ctx, found.available)
        _progressing(ctx, found.progressing)
        if found.degraded is not None:
            _degraded(ctx, found.degraded)


def _report(ctx: context.Context, applied: dict[str, object], revision: status.RevisionStatus) -> str:
    """Replica counts and Available from the stable Deployment; returns its state."""
    state, message = workload.deployment_state(applied)
    found = applied.get("status")
    replicas = found if isinstance(found, dict) else {}
    spec = applied.get("spec")
    ctx.status.replicas = spec.get("replicas") if isinstance(spec, dict) else None
    ctx.status.ready_replicas = replicas.get("readyReplicas", 0)
    serving = state == "Available" or replicas.get("availableReplicas", 0) > 0
    current = revision.current[:8] if revision.current else "none"
    ctx.set(
        conditions.AVAILABLE,
        "True" if serving else "False",
        "Serving" if serving else "NoReadyReplicas",
        f"Engine {current}: {message}" if state == "Available" else message,
    )
    return state


def _rolling_out(ctx: context.Context, key: str, message: str) -> None:
    """Progressing=True while the revision's pods come up; a pod that will not (its image, no node, memory, a crash
    loop) names itself with the scheduler's or kubelet's reason instead of waiting for the progress deadline."""
    selector = {**labels.track_selector(ctx.name, "stable"), labels.ENGINE_KEY: names.short_key(key)}
    pods = ctx.kube.list("v1", "Pod", ctx.namespace, labels=",".join(f"{k}={v}" for k, v in selector.items()))
    problem = pod_problems.first(pods, ctx.now)
    if problem is None:
        ctx.set(conditions.PROGRESSING, "True", "RollingOut", f"Engine {key[:8]}: {message}")
        return
    before = ctx.condition(conditions.PROGRESSING)
    said = f"Engine {key[:8]}: {message}; held up: {problem.message}"
    ctx.set(conditions.PROGRESSING, "True", problem.reason, said)
    if before is None or before.reason != problem.reason:
        ctx.event("Warning", problem.reason, said, "Rollout")


def _rolling(ctx: context.Context, settings: operator_settings.Settings, desired: str | None) -> None:
    revision = ctx.status.revision or status.RevisionStatus()
    if desired and desired not in (revision.current, revision.failed):
        first = revision.current is None and ctx.spec.rollout.strategy == "canary"
        revision = status.RevisionStatus(current=desired, previous=revision.current, failed=None)
        why = ": the first revision has nothing to compare a canary with" if first else ""
        ctx.event("Normal", "RollingOut", f"Rolling out engine {desired[:8]}{why}", "Rollout")
    ctx.status.revision = revision
    if revision.current is None:
        _awaiting_engine(ctx)
        return
    applied = workload.apply_children(ctx, settings, revision.current)
    if isinstance(applied, workload.MissingSecrets):
        _waiting_for_secrets(ctx, applied)
        return
    state = _report(ctx, applied, revision)
    _, message = workload.deployment_state(applied)
    if state == "Available":
        if not canary.owns_progressing(ctx, revision):
            serving = f"Engine {revision.current[:8]} is serving"
            _progressing(ctx, workload.Observed("False", workload.ROLLOUT_COMPLETE, serving))
        if revision.failed is None:
            _degraded(ctx, workload.AS_EXPECTED)
        _finish_canary(ctx, revision, state)
        return
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
        back = workload.apply_children(ctx, settings, revision.previous)
        if isinstance(back, workload.MissingSecrets):
            _progressing(ctx, back.progressing)
        _finish_canary(ctx, ctx.status.revision, state)
        return
    if state == "Failed":
        ctx.set(conditions.PROGRESSING, "False", "ProgressDeadlineExceeded", message)
        ctx.set(conditions.DEGRADED, "True", "ProgressDeadlineExceeded", message)
        return
    _rolling_out(ctx, revision.current, message)
    if revision.failed is None:
        _degraded(ctx, workload.AS_EXPECTED)
    _finish_canary(ctx, revision, state)


def _finish_canary(ctx: context.Context, revision: status.RevisionStatus, state: str) -> None:
    progressing = canary.finish(ctx, revision, state)
    if progressing is not None:
        _progressing(ctx, progressing)
