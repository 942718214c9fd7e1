"""Audit: one structured JSON log line (logger `kestrel.audit`) for every change of a ModelDeployment's spec
generation, engine, serving revision, certificate, keys and access rules, and for an engine validated without an
accuracy measurement (spec.validation.skip, with its reason), with the spec's field managers; owns no condition.

Field managers are names clients choose, so lines and Events give them as such, never as who made the change:
that is in the API server's audit log. A manager (or any value) that looks like a key is redacted, not the line.

It compares what this pass observed with what the object's status said before, so it needs no memory of
its own and survives operator restarts; a spec change also gets an Event.
"""

from __future__ import annotations

import logging
from typing import Any

from kestrel.api import conditions, status
from kestrel.reconcilers import context
from kestrel.security import audit, errors

log = logging.getLogger("kestrel.audit")

Summary = dict[str, audit.SummaryValue]


def _condition_message(found: status.ModelDeploymentStatus, kind: str) -> str | None:
    condition = conditions.find(found.conditions or [], kind)
    return condition.message if condition and condition.status == "True" else None


def _unmeasured(found: status.ModelDeploymentStatus) -> str | None:
    """The Validated message of an engine passed without an accuracy measurement, which the spec asked for."""
    condition = conditions.find(found.conditions or [], conditions.VALIDATED)
    if condition and condition.status == "True" and condition.reason == "NotMeasured":
        return condition.message
    return None


def _digest(field: str, key: str | None) -> Summary | None:
    # Engine keys are SHA-256 digests; tagged, the key-material guard knows them for what they are.
    return {field: f"sha256:{key}"} if key else None


def _changes(
    before: status.ModelDeploymentStatus, ctx: context.Context
) -> list[tuple[audit.Change, Summary | None, Summary]]:
    after = ctx.status
    found: list[tuple[audit.Change, Summary | None, Summary]] = []
    if before.observed_generation != ctx.generation:
        old: Summary | None = (
            {"generation": before.observed_generation} if before.observed_generation is not None else None
        )
        found.append((audit.Change.SPEC, old, {"generation": ctx.generation}))
    old_engine = before.engine.key if before.engine else None
    new_engine = after.engine.key if after.engine else None
    if new_engine and new_engine != old_engine:
        found.append((audit.Change.ENGINE, _digest("key", old_engine), {"key": f"sha256:{new_engine}"}))
    old_revision = before.revision.current if before.revision else None
    new_revision = after.revision.current if after.revision else None
    if new_revision and new_revision != old_revision:
        found.append((audit.Change.REVISION, _digest("current", old_revision), {"current": f"sha256:{new_revision}"}))
    for change, kind in (
        (audit.Change.CERTIFICATE, conditions.CERTIFICATE_READY),
        (audit.Change.ACCESS, conditions.ACCESS_CONFIGURED),
    ):
        old_message, new_message = _condition_message(before, kind), _condition_message(after, kind)
        if new_message and new_message != old_message:
            found.append((change, {"state": old_message} if old_message else None, {"state": new_message}))
    old_unmeasured, new_unmeasured = _unmeasured(before), _unmeasured(after)
    if new_unmeasured and new_unmeasured != old_unmeasured:
        old_state: Summary | None = {"notMeasured": old_unmeasured} if old_unmeasured else None
        new_state: Summary = {"notMeasured": new_unmeasured}
        found.append((audit.Change.VALIDATION, old_state, new_state))
    for _kind, reason, message in ctx.events:
        if reason.endswith("KeyCreated"):
            found.append((audit.Change.KEY, None, {"key": reason.removesuffix("Created"), "event": message}))
    return found


def reconcile(ctx: context.Context, before: dict[str, Any]) -> None:
    if not ctx.spec.security.audit:
        return
    previous = status.ModelDeploymentStatus.model_validate(before)
    managers = audit.field_managers(ctx.body["metadata"].get("managedFields", []), touching="spec")
    ref = audit.ObjectRef("ModelDeployment", ctx.namespace, ctx.name, ctx.uid, ctx.generation)
    for change, old, new in _changes(previous, ctx):
        try:
            log.info(audit.line(ref, change, old=old, new=new, field_managers=managers, now=ctx.now))
        except errors.KeyMaterialError as refused:
            # Unreachable while `line` redacts each value; kept so the audit trail can never stop the reconcile.
            log.warning("Refused an audit line for %s %s: %s", ctx.ref, change.value, refused)
        if change is audit.Change.SPEC and previous.observed_generation is not None:
            named = ", ".join(audit.redact(manager) for manager in managers) or "none"
            ctx.event(
                "Normal",
                "SpecChanged",
                f"Spec generation {ctx.generation} (was {previous.observed_generation}); field managers, as the "
                f"clients named themselves (unverified): {named}. The API server's audit log records who",
                "Audit",
            )
