"""The operator-stepped canary's test bench: an in-memory API, the canary pods' metrics, a fake clock, and a pass that
starts from the object as the API server would return it (the status the previous pass wrote)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import crd, keys, spec
from kestrel.manifests import names, owners, triton
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary_analysis, serving
from kestrel.serving import metrics
from tests.unit.spec_support import UNMEASURED
from tests.unit.tls_fake_kube import SETTINGS, UID, FakeKube

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
OLD = "0a" * 32
STABLE = ("apps/v1", "Deployment", "vision", names.triton("cams"))
CANARY = ("apps/v1", "Deployment", "vision", names.canary("cams"))


class Metrics:
    """The canary pods' Triton counters as the scrape would read them; `down` makes the endpoint unreachable."""

    def __init__(self) -> None:
        self.reading = canary_analysis.Reading(success=0, failure=0)
        self.down = False
        self.services: list[str] = []

    def serve(self, success: int, failure: int = 0, p95_ms: float | None = None) -> None:
        before = self.reading
        self.reading = canary_analysis.Reading(before.success + success, before.failure + failure, p95_ms)

    def __call__(
        self, ctx: context.Context, settings: operator_settings.Settings, service: str
    ) -> canary_analysis.Reading:
        self.services.append(service)
        if self.down:
            raise metrics.MetricsError("GET http://cams-triton-canary.vision.svc:8002/metrics failed: refused")
        return self.reading


class Kube(FakeKube):
    """Counts each Deployment's generations as the API server does, so a status from before a change is stale."""

    def apply(self, body: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        meta = body["metadata"]
        before = self.objects.get(self.key(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"]))
        generation = before["metadata"].get("generation", 1) if before else 1
        if before is not None and before.get("spec") != body.get("spec"):
            generation += 1
        body = {**body, "metadata": {**meta, "generation": generation}}
        return super().apply(body, force=force)


def raw_spec(steps: list[int], **analysis: Any) -> dict[str, Any]:
    return {
        "model": {"source": {"uri": "file:///models/shapes.pt"}},
        "validation": UNMEASURED,
        "engine": {"format": "onnx"},
        "serving": {"replicas": 4},
        "rollout": {"strategy": "canary", "canary": {"steps": steps, "interval": "2m", "analysis": analysis}},
    }


def validated(obj: dict[str, Any]) -> str:
    """Mark the spec's engine built and validated, as the engine reconciler would; its key."""
    key = keys.engine_key(spec.parse(obj["spec"]))
    found = obj.setdefault("status", {})
    found["engine"] = {"key": key}
    found["conditions"] = [c for c in found.get("conditions", []) if c["type"] != "Validated"] + [
        {
            "type": "Validated",
            "status": "True",
            "reason": "Passed",
            "message": "",
            "lastTransitionTime": "2026-03-01T07:00:00Z",
        }
    ]
    return key


def serving_object(kube: FakeKube, steps: list[int], **analysis: Any) -> tuple[dict[str, Any], str]:
    """A ModelDeployment that serves OLD and has a new validated engine waiting; the Secrets its pods need exist."""
    obj: dict[str, Any] = {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": "cams", "namespace": "vision", "uid": UID, "generation": 1},
        "spec": raw_spec(steps, **analysis),
        "status": {"revision": {"current": OLD}},
    }
    parsed = spec.parse(obj["spec"])
    pod = triton.deployment(parsed, owners.Owner.from_body(obj), SETTINGS, OLD)["spec"]["template"]["spec"]
    for name in serving.referenced_secrets(pod):
        kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "vision"}, "data": {}})
    return obj, validated(obj)


def run(kube: FakeKube, obj: dict[str, Any], now: datetime.datetime, metrics: Metrics) -> context.Context:
    ctx = context.Context.load(kube, copy.deepcopy(obj), now)
    serving.reconcile(ctx, SETTINGS, metrics)
    obj["status"] = ctx.status.to_wire()
    annotations = obj["metadata"].get("annotations", {})
    for annotation, value in ctx.answered.items():  # as run.py does after the status write
        if annotations.get(annotation) == value:
            del annotations[annotation]
    return ctx


def available(kube: FakeKube, key: tuple[str, str, str | None, str]) -> None:
    """Play the Deployment controller: every replica of the current template is up."""
    found = kube.objects[key]
    wanted = found["spec"]["replicas"]
    found["status"] = {n: wanted for n in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
    found["status"]["observedGeneration"] = found["metadata"]["generation"]


def engine_of(kube: FakeKube, key: tuple[str, str, str | None, str]) -> str:
    return str(kube.objects[key]["spec"]["template"]["metadata"]["annotations"]["kestrel.dev/engine-key"])


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)
