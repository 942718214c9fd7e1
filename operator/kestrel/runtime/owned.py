"""Owned Deployments: a change the owner should report, or undo, starts a pass over the owner at once.

The Triton Deployments are the one child whose state the status reports (Available, replicas) and that other
controllers move on their own. Without this, a model whose pods became ready would say so at the next resync.
Each watch event first updates what `kube.recent` remembers of the Deployment (so that the pass reads its
current status without a request); a pass follows only when the event changes what the owner reports (rollout
state, ready replicas), when the Deployment's spec was changed by someone else (its generation moved past the
one Kestrel applied: drift), or when it was deleted. Deployments this process has not applied yet are left to
the pass that applies them.

The decision is cheap and made on Kopf's event loop (`pass_needed`); the pass itself goes to a thread (`Passes`),
at most one waiting per model. When a sync handler did both, every event of every Deployment waited for a free pass
thread with its whole body, and with many models those waiting bodies were most of the operator's memory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import crd, errors
from kestrel.kube import client
from kestrel.reconcilers.serving import workload
from kestrel.runtime import serial

Body = dict[str, Any]
Key = tuple[str, str]  # namespace, name of the owner

log = logging.getLogger("kestrel")


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


def pass_needed(kube: client.Kube, event_type: str, body: Body) -> Key | None:
    """Remember the event's Deployment; its owner when `needs_pass`, else None."""
    name = owner(body)
    if name is None:
        return None
    deleted = event_type == "DELETED"
    before = kube.observe(body, deleted=deleted)
    if not needs_pass(before, body, deleted=deleted):
        return None
    return str(body["metadata"]["namespace"]), name


def deployment_changed(
    kube: client.Kube, settings: operator_settings.Settings, event_type: str, body: Body, *, trust: float
) -> bool:
    """Remember the event's Deployment; run its owner's pass now when `needs_pass`. True when a pass ran."""
    found = pass_needed(kube, event_type, body)
    if found is None:
        return False
    return serial.reconcile_named(kube, *found, settings, trust=trust) is not None


class Passes:
    """Owner passes that watch events asked for, run on `executor`; at most one per model waits to start.

    A request while that model's pass waits adds nothing: the waiting pass reads what the events left in
    `kube.recent`. One while it runs waits for a second pass, which sees what the first could not.
    """

    def __init__(self, run: Callable[[str, str], object]) -> None:
        self.run = run
        self._waiting: set[Key] = set()
        self._lock = threading.Lock()

    def request(self, executor: concurrent.futures.Executor, key: Key) -> bool:
        """Ask for a pass over the model `key`; False when one was already waiting."""
        with self._lock:
            if key in self._waiting:
                return False
            self._waiting.add(key)
        try:
            executor.submit(self._pass, key)
        except RuntimeError:  # the executor shut down: the operator is stopping
            self._waiting.discard(key)
            return False
        return True

    def waiting(self) -> int:
        return len(self._waiting)

    def _pass(self, key: Key) -> None:
        with self._lock:
            self._waiting.discard(key)
        try:
            self.run(*key)
        except errors.KestrelError as error:
            # Not retried here: the owner's own handlers and its drift check pass again and report it in its status.
            log.warning("Did not pass over ModelDeployment %s/%s after its Deployment changed: %s", *key, error)
        except Exception:  # a thread of the pool must survive any one pass; the traceback is logged
            log.exception("The pass over ModelDeployment %s/%s after its Deployment changed failed", *key)
