"""Summary: derives `Ready` and the display phase from the conditions the other reconcilers own; owns Ready."""

from __future__ import annotations

import datetime

from kestrel.api import conditions, errors, status
from kestrel.reconcilers import context

# Conditions that must be True for Ready; others count only where a reconciler has reported them.
REQUIRED = (conditions.BUILT, conditions.VALIDATED, conditions.AVAILABLE)
OPTIONAL = (conditions.CERTIFICATE_READY, conditions.ACCESS_CONFIGURED, conditions.ENCRYPTED)
# The live check (checks.py): False holds Ready; Unknown (its rollout not complete, or the check not run) does not,
# and a check that was not run is said in Ready's message.
LIVE_CHECK = conditions.VERIFIED


def _state(found: list[conditions.Condition], kind: str) -> conditions.Condition | None:
    return conditions.find(found, kind)


def phase(found: list[conditions.Condition]) -> status.Phase:
    """One word for `kubectl get`: where the latest spec is on its way to serving."""
    built, validated, available, degraded, verified = (
        _state(found, t)
        for t in (conditions.BUILT, conditions.VALIDATED, conditions.AVAILABLE, conditions.DEGRADED, LIVE_CHECK)
    )
    serving = available is not None and available.status == "True"
    failed = (
        (built is not None and built.status == "False" and built.reason == "BuildFailed")
        or (validated is not None and validated.status == "False")
        or (verified is not None and verified.status == "False")
    )
    if failed or (degraded is not None and degraded.status == "True"):
        # An older revision that keeps serving makes this Degraded, not Failed.
        return "Degraded" if serving else "Failed"
    if built is None or built.status != "True":
        return "Building"
    if validated is None or validated.status != "True":
        return "Validating"
    if not serving:
        return "RollingOut"
    return "Ready"


def ready(found: list[conditions.Condition]) -> tuple[conditions.ConditionStatus, str, str]:
    """Status, reason and message of Ready: True only when every reported condition is healthy."""
    for kind in REQUIRED:
        condition = _state(found, kind)
        if condition is None or condition.status == "Unknown":
            return "False", f"Waiting{kind}", f"{kind} is not known yet"
        if condition.status == "False":
            return "False", condition.reason, f"{kind}: {condition.message}".rstrip(": ")
    for kind in OPTIONAL:
        condition = _state(found, kind)
        if condition is not None and condition.status != "True" and condition.reason != conditions.DISABLED:
            return "False", condition.reason, f"{kind}: {condition.message}".rstrip(": ")
    verified = _state(found, LIVE_CHECK)
    if verified is not None and verified.status == "False":
        return "False", verified.reason, f"{LIVE_CHECK}: {verified.message}".rstrip(": ")
    degraded = _state(found, conditions.DEGRADED)
    if degraded is not None and degraded.status == "True":
        return "False", degraded.reason, degraded.message
    message = "The latest revision is validated and serving"
    if verified is not None and verified.reason == conditions.NOT_CHECKED:
        message += f"; {LIVE_CHECK}: {verified.message}"
    return "True", "Serving", message


def reconcile(ctx: context.Context) -> None:
    found = ctx.status.conditions or []
    state, reason, message = ready(found)
    ctx.set(conditions.READY, state, reason, message)
    ctx.status.phase = phase(ctx.status.conditions or [])


def unreadable_spec(
    found: status.ModelDeploymentStatus, error: errors.SpecError, generation: int, now: datetime.datetime
) -> None:
    """A stored spec the operator cannot read, so no pass runs (run.py): Ready turns False naming the field."""
    found.conditions = conditions.set_condition(
        found.conditions or [],
        type=conditions.READY,
        status="False",
        reason=conditions.INVALID_SPEC,
        message=str(error),
        generation=generation,
        now=now,
    )


def stopped(ctx: context.Context, conflict: errors.NameConflictError) -> None:
    """The pass stopped before writing over an object it does not own: Ready names it and the fix (an Event too,
    once per object); the other conditions stay as far as the pass got."""
    before = ctx.condition(conditions.READY)
    message = str(conflict)
    ctx.set(conditions.READY, "False", conditions.NAME_CONFLICT, message)
    if before is None or (before.reason, before.message) != (conditions.NAME_CONFLICT, message):
        ctx.event("Warning", conditions.NAME_CONFLICT, message, "Apply")
    ctx.status.phase = ctx.status.phase or "Pending"
