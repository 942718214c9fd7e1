"""What every reconciler receives: the object, its parsed spec, the status being built, and the clock; owns no
condition."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import TYPE_CHECKING, Any

from kestrel import operator_metrics
from kestrel.api import actions, conditions, spec, status
from kestrel.kube import protocol
from kestrel.serving import metrics as serving_metrics

if TYPE_CHECKING:
    from kestrel.reconcilers.engine import storage

log = logging.getLogger("kestrel")

# Seconds any pass, a spec change's too, trusts a read of an operator-wide object that every model's pass needs (the
# CA, the store's credentials): a burst of creates shares one read, and a replaced one is seen within this long.
OPERATOR_WIDE_TRUST = 10.0


@dataclasses.dataclass
class Context:
    """One pass over one ModelDeployment. Reconcilers read `spec`, write `status`, and act through `kube`."""

    kube: protocol.KubeApi
    body: dict[str, Any]
    spec: spec.ModelDeploymentSpec
    status: status.ModelDeploymentStatus
    now: datetime.datetime
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    # Digest of the serving certificate, set by the TLS reconciler: it is part of the pod template,
    # so a renewal rolls the pods.
    tls_checksum: str | None = None
    # The id of the API key, set by the access reconciler: a rotated key rolls the pods (Triton reads it at start).
    api_key_id: str | None = None
    # What the operator may open the engine store with, set by the storage reconciler (the grants sign with it).
    store_access: storage.Access | None = None
    # The status as the API server stored it at the end of the pass (runtime/serial.py compares it).
    stored_status: dict[str, Any] | None = None
    # Request annotations (api/actions.py) this pass answered, with the value it read: removed after the status
    # write, so a pass that fails before it leaves the request to be answered again.
    answered: dict[str, str] = dataclasses.field(default_factory=dict)
    # Each ready Triton pod's reading of the model's metrics, by pod name, as the checks reconciler read them this
    # pass (the drift reconciler judges them); None when they were not read (checks off, or the read failed).
    pod_readings: dict[str, serving_metrics.Reading] | None = None

    @classmethod
    def load(cls, kube: protocol.KubeApi, body: dict[str, Any], now: datetime.datetime) -> Context:
        """Parse the object; a bad spec raises api.errors.SpecError naming the field."""
        parsed = spec.parse(body.get("spec") or {})
        current = status.ModelDeploymentStatus.model_validate(body.get("status") or {})
        return cls(kube=kube, body=body, spec=parsed, status=current.model_copy(deep=True), now=now)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation", 0))

    @property
    def first_pass(self) -> bool:
        """No pass has written this object's status yet: the Secrets its passes make (named after it, owned by its
        uid) cannot exist unless such a pass failed before its status write, so they are made without a read."""
        return not self.body.get("status")

    @property
    def ref(self) -> str:
        return f"ModelDeployment {self.namespace}/{self.name}"

    def requested(self, annotation: str) -> str | None:
        """A person's request to this pass (api/actions.py), unless an earlier step of the pass answered it."""
        return None if annotation in self.answered else actions.requested(self.body["metadata"], annotation)

    def answer(self, annotation: str) -> None:
        """Mark a request acted on (or refused): the pass removes its annotation once the status is written."""
        value = actions.requested(self.body["metadata"], annotation)
        if value is not None:
            self.answered[annotation] = value

    def condition(self, kind: str) -> conditions.Condition | None:
        return conditions.find(self.status.conditions or [], kind)

    def set(self, kind: str, state: conditions.ConditionStatus, reason: str, message: str) -> bool:
        """Set a condition; return True when its status flipped (or it is new)."""
        before = self.condition(kind)
        self.status.conditions = conditions.set_condition(
            self.status.conditions or [],
            type=kind,
            status=state,
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.now,
        )
        return before is None or before.status != state

    def event(self, kind: str, reason: str, message: str, action: str) -> None:
        """Record an Event (its reason is the condition's reason) and log the same line."""
        level = logging.WARNING if kind == "Warning" else logging.INFO
        log.log(level, "%s: %s (%s)", self.ref, message, reason)
        self.kube.event(self.body, type=kind, reason=reason, message=message, action=action)
        self.events.append((kind, reason, message))
        operator_metrics.EVENTS.labels(kind, reason).inc()
