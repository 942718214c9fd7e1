"""Owned Deployments: a change the owner should report, or undo, starts a pass over the owner at once.

The Triton Deployments are the one child whose state the status reports (Available, replicas) and that other
controllers move on their own. Without this, a model whose pods became ready would say so at the next resync.
Each watch event first updates what `kube.recent` remembers of the Deployment (so that the pass reads its
current status without a request); a pass follows only when the event changes what the owner reports (rollout
state, ready replicas), when the Deployment's spec was changed by someone else (its generation moved past the
one Kestrel applied: drift), or when it was deleted. Deployments this process has not applied yet are left to
the pass that applies them.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import crd
from kestrel.kube import client
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import serial, workload

Body = dict[str, Any]


def owner(body: Body) -> str | None:
    """The name of the ModelDeployment that controls this object, if one does."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if (
            ref.get("kind") == crd.KIND
            and ref.get("apiVersion", "").startswith(f"{crd.GROUP}/")
            and ref.get("controller")
        ):
            return str(ref["name"])
    return None


def _reported(found: Body) -> tuple[object, ...]:
    """What of a Deployment its owner's status shows. Not `status.replicas`: a pod created but not yet ready moves
    nothing the owner reports (a pass for it was one of a model's costliest at scale), its readiness does."""
    state, _ = workload.deployment_state(found)
    replicas = found.get("status") or {}
    return state, replicas.get("readyReplicas", 0), replicas.get("availableReplicas", 0)


def needs_pass(before: Body | None, after: Body, *, deleted: bool) -> bool:
    """Whether an event (`after`, the Deployment as it came) changes anything its owner's pass would do."""
    if before is None:
        return False
    if deleted:
        return True
    generation = (before.get("metadata", {}).get("generation"), after.get("metadata", {}).get("generation"))
    return generation[0] != generation[1] or _reported(before) != _reported(after)


def deployment_changed(
    kube: client.Kube, settings: manifest_context.Settings, event_type: str, body: Body, *, trust: float
) -> bool:
    """Remember the event's Deployment; run its owner's pass when `needs_pass`. True when a pass ran."""
    name = owner(body)
    if name is None:
        return False
    deleted = event_type == "DELETED"
    before = kube.observe(body, deleted=deleted)
    if not needs_pass(before, body, deleted=deleted):
        return False
    return serial.reconcile_named(kube, str(body["metadata"]["namespace"]), name, settings, trust=trust) is not None
