"""An in-memory `kestrel.kube.protocol.KubeApi`, the client the unit suites' passes run on: it keeps objects,
counts applies per object (so a test can tell one issuance from two), and records Events and status writes."""

from __future__ import annotations

import base64
import collections
import copy
import datetime
from typing import TYPE_CHECKING, Any

from kestrel import settings as operator_settings
from kestrel.api import crd, errors, spec
from kestrel.kube import ownership, protocol
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.security import tls
from tests.unit.spec_support import UNMEASURED

Key = tuple[str, str, str | None, str]
UID = "0b8c9a3e-52f1-4d7e-8a60-1c2d3e4f5a6b"
SETTINGS = operator_settings.Settings(engine_store="s3://engines/kestrel")


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.applies: collections.Counter[Key] = collections.Counter()
        self.events: list[tuple[str, str, str]] = []
        self.deleted: list[Key] = []
        # Container logs by (namespace, pod, container), as the kubelet would serve them.
        self.logs: dict[tuple[str, str, str], str] = {}
        # What run.reconcile wrote: status merge patches, and request annotations removed (key, value).
        self.status_patches: list[dict[str, Any]] = []
        self.removed_annotations: list[tuple[str, str]] = []

    @staticmethod
    def key(api_version: str, kind: str, namespace: str | None, name: str) -> Key:
        return (api_version, kind, namespace, name)

    def pod_log_tail(self, namespace: str, name: str, container: str, *, lines: int, limit_bytes: int) -> str:
        found = self.logs.get((namespace, name, container))
        if found is None:
            raise errors.NotFoundError(f"Failed to read the log of pod {name}: not found")
        tail = "\n".join(found.splitlines()[-lines:])
        return tail.encode()[:limit_bytes].decode(errors="replace")  # the API server stops after limitBytes

    def put(self, body: dict[str, Any]) -> None:
        """Store an object as someone else (cert-manager, a test) would, without counting it as the operator's."""
        meta = body["metadata"]
        self.objects[self.key(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])] = copy.deepcopy(
            body
        )

    def apply(self, body: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        meta = body["metadata"]
        key = self.key(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        stored = copy.deepcopy(body)
        if key in self.objects and "status" in self.objects[key]:
            stored["status"] = self.objects[key]["status"]  # apply does not touch another writer's status
        self.objects[key] = stored
        self.applies[key] += 1
        return copy.deepcopy(stored)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        key = self.key(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        if key in self.objects:
            raise errors.ConflictError(f"Failed to create {body['kind']} {meta['name']}: already exists")
        return self.apply(body)

    def get(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        cached: bool = False,
        trust: float = 0.0,
    ) -> dict[str, Any] | None:
        # `cached` and `trust` let the real client answer from what passes recently confirmed; this fake always
        # answers afresh.
        found = self.objects.get(self.key(api_version, kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, api_version: str, kind: str, namespace: str | None, *, labels: str | None = None
    ) -> list[dict[str, Any]]:
        wanted = [term.split("=", 1) for term in (labels or "").split(",") if term]
        found = []
        for (version, k, ns, _), body in self.objects.items():
            if (version, k) != (api_version, kind) or (namespace is not None and ns != namespace):
                continue
            have = body["metadata"].get("labels", {})
            if all(term[0] in have and (len(term) == 1 or have[term[0]] == term[1]) for term in wanted):
                found.append(copy.deepcopy(body))
        return found

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *, owner: str | None) -> bool:
        key = self.key(api_version, kind, namespace, name)
        found = self.objects.get(key)
        if owner is not None and found is not None and not ownership.owned_by(found, owner):
            return False  # as the real client: someone else's object of that name is left alone
        self.deleted.append(key)
        return self.objects.pop(key, None) is not None

    def adopt(self, found: dict[str, Any], owner: str) -> None:
        """The real client lets its next write of `found` go ahead; this one never refuses a write."""

    def event(self, regarding: dict[str, Any], *, type: str, reason: str, message: str, action: str) -> dict[str, Any]:
        self.events.append((type, reason, message))
        return {}

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Records the merge patch; the object the test holds is the one the next pass reads, not the stored one."""
        self.status_patches.append(copy.deepcopy(status))
        return {"status": copy.deepcopy(status)}

    def remove_model_deployment_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        self.removed_annotations.append((key, value))
        return True

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("v1", "Secret", namespace, name)


if TYPE_CHECKING:
    # mypy proves the fake answers every call a pass may make, with the real client's parameter types.
    _: protocol.KubeApi = FakeKube()


def body(tls: dict[str, Any], access: dict[str, Any] | None = None, name: str = "cams") -> dict[str, Any]:
    """A ModelDeployment as the API server would hand it to the operator."""
    raw_spec = {
        "model": {"source": {"uri": "file:///models/shapes.pt"}},
        "validation": UNMEASURED,
        "engine": {"format": "onnx"},
        # Copies: tests change the spec between passes, and must not change each other's constants.
        "security": {"tls": copy.deepcopy(tls), "access": copy.deepcopy(access or {})},
    }
    spec.parse(raw_spec)  # fail here, not in the reconciler, when a test writes a bad spec
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name, "namespace": "vision", "uid": UID, "generation": 1},
        "spec": raw_spec,
    }


def reconcile_tls(kube: FakeKube, obj: dict[str, Any], now: datetime.datetime) -> context.Context:
    """One TLS pass on the fake clock `now`; the status it writes carries over to the next pass, as on a cluster."""
    ctx = context.Context.load(kube, obj, now)
    tls.reconcile(ctx, SETTINGS)
    obj["status"] = ctx.status.to_wire()
    return ctx


def cert_manager_writes_secret(kube: FakeKube, data: dict[str, bytes], name: str = "cams") -> None:
    """What cert-manager writes once its issuer signed: the Secret the Certificate names, marked with its name."""
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": names.tls_secret(name),
                "namespace": "vision",
                "annotations": {tls.CERT_MANAGER_ANNOTATION: names.tls_secret(name)},
            },
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
    )
