"""The oracle of the fault campaign: what a namespace holds once a scenario has converged, comparable across runs.

A fault-free run of a scenario records its end state; a faulty run of the same scenario, in a namespace of its own,
must converge to the same one. What is compared (`EndState`):

- every object of the kinds a model's pass writes, by kind and name: its labels, its owner references (kind, name,
  controller), and what it specifies (a Secret: its type and key names, since its values are generated; everything
  else: its `spec`, `data` or `rules`/`subjects`, with the namespace's own name and uids written as placeholders, and
  the pod template's annotations by key only, since they carry digests of generated Secrets);
- the model's conditions (type, status, reason), its revision and engine key;
- the reasons of the Events about the model (a set: a restarted operator may say a thing twice), and how many
  times each one-time act (a key or a certificate made) was announced (at least as often: never lost);
- the engines in the store under the model's prefix (their keys, and whether each is complete);
- and the number of Jobs (a cache hit builds nothing).

`generated(...)` records the Secrets generated once (signing pair, API key, TLS certificate and key) as digests, so
that a run can prove one that existed at a crash point was kept, not generated again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from kubernetes import client

from kestrel.api import crd
from kestrel.storage import s3
from tests.cluster_fixtures import Cluster

# (apiVersion, kind, plural) of what a model's pass may write in its namespace.
KINDS: tuple[tuple[str, str, str], ...] = (
    ("v1", "Secret", "secrets"),
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Service", "services"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("apps/v1", "Deployment", "deployments"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ("batch/v1", "Job", "jobs"),
)
# Made by Kubernetes itself in every namespace, not by a model's pass.
NOT_WRITTEN_BY_A_PASS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
# Events that announce an act done once: each must be said exactly as often as in the fault-free run.
ONE_TIME = (
    "SigningKeyCreated",
    "ApiKeyCreated",
    "CertificateIssued",
    "CertificateReissued",
    "CertificateRenewed",
)
GENERATED_KEYS = ("signing.key", "api-key", "tls.key", "ca.key")
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclasses.dataclass(frozen=True)
class EndState:
    objects: dict[str, dict[str, Any]]  # "Kind/name" -> what is compared of it
    conditions: dict[str, tuple[str, str]]  # type -> (status, reason)
    revision: str | None
    event_reasons: frozenset[str]
    store: frozenset[str]
    jobs: int
    # How many Events announce a one-time act (a key or certificate made): fewer than the fault-free run is an act
    # never said. More is allowed (an operator killed between the Event and its status write says it again); an act
    # done twice shows in `generated` instead (a key or certificate that changed).
    announced: tuple[tuple[str, int], ...] = ()

    def differences(self, expected: EndState) -> list[str]:
        """What differs from `expected`, one line each; empty when the states match."""
        found: list[str] = []
        for name in sorted(set(expected.objects) | set(self.objects)):
            if name not in self.objects:
                found.append(f"missing {name}")
            elif name not in expected.objects:
                found.append(f"extra {name} (a duplicate or an orphan)")
            elif self.objects[name] != expected.objects[name]:
                fields = sorted(
                    key
                    for key in set(self.objects[name]) | set(expected.objects[name])
                    if self.objects[name].get(key) != expected.objects[name].get(key)
                )
                found.append(f"{name} differs in {', '.join(fields)}")
        if self.conditions != expected.conditions:
            found.append(f"conditions {self.conditions} != {expected.conditions}")
        if self.revision != expected.revision:
            found.append(f"revision {self.revision} != {expected.revision}")
        if self.event_reasons != expected.event_reasons:
            missing, extra = expected.event_reasons - self.event_reasons, self.event_reasons - expected.event_reasons
            found.append(f"Event reasons: missing {sorted(missing)}, extra {sorted(extra)}")
        if self.store != expected.store:
            found.append(
                f"store: missing {sorted(expected.store - self.store)}, extra {sorted(self.store - expected.store)}"
            )
        said, wanted = dict(self.announced), dict(expected.announced)
        unsaid = {reason: count for reason, count in wanted.items() if said.get(reason, 0) < count}
        if unsaid:
            found.append(f"one-time acts announced fewer times than done: {said}, expected {wanted}")
        if self.jobs != expected.jobs:
            found.append(f"{self.jobs} Jobs, expected {expected.jobs}")
        return found


def _normalised(value: Any, namespace: str, uids: dict[str, str]) -> Any:
    text = json.dumps(value, sort_keys=True).replace(namespace, "<namespace>")
    text = UID.sub(lambda m: uids.setdefault(m.group(0), f"<uid-{len(uids)}>"), text)
    return json.loads(text)


def _compared(kind: str, item: dict[str, Any], namespace: str, uids: dict[str, str]) -> dict[str, Any]:
    meta = item["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    owners = sorted((o["kind"], o["name"], bool(o.get("controller"))) for o in meta.get("ownerReferences") or [])
    what: dict[str, Any] = {"labels": labels, "owners": owners}
    if kind == "Secret":
        what["type"] = item.get("type")
        what["keys"] = sorted((item.get("data") or {}).keys())
        return what
    if kind == "Job":
        return what
    spec = dict(item.get("spec") or {})
    if kind == "Service":
        spec = {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")}
    if kind == "Deployment":
        template = dict(spec.get("template") or {})
        template_meta = dict(template.get("metadata") or {})
        template_meta["annotations"] = sorted((template_meta.get("annotations") or {}).keys())
        template["metadata"] = template_meta
        spec["template"] = template
    for field in ("spec", "data", "rules", "subjects", "roleRef"):
        source = spec if field == "spec" else item.get(field)
        if source:
            what[field] = _normalised(source, namespace, uids)
    return what


def capture(kube: Cluster, namespace: str, model: str, store: s3.S3Store) -> EndState:
    uids: dict[str, str] = {}
    objects: dict[str, dict[str, Any]] = {}
    plurals = ",".join(f"{plural}.{api.rpartition('/')[0]}".rstrip(".") for api, _, plural in KINDS)
    listed = json.loads(kube.kubectl("get", plurals, "-n", namespace, "-o", "json").stdout)
    for item in listed.get("items") or []:
        kind, name = item["kind"], item["metadata"]["name"]
        service_account_token = kind == "Secret" and str(item.get("type", "")).startswith("kubernetes.io/service-acc")
        if (kind, name) in NOT_WRITTEN_BY_A_PASS or service_account_token:
            continue
        objects[f"{kind}/{name}"] = _compared(kind, item, namespace, uids)
    try:
        body = kube.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, model)
    except client.ApiException as error:  # deleted: the scenario that deletes it compares what is left
        if error.status != 404:
            raise
        body = {}
    status = (body.get("status") if isinstance(body, dict) else None) or {}
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}
    revision = (status.get("revision") or {}).get("current")
    about_model = [
        e.reason
        for e in kube.core.list_namespaced_event(namespace).items
        if e.involved_object is not None and e.involved_object.kind == crd.KIND and e.reason
    ]
    reasons = frozenset(about_model)
    announced = tuple(sorted((reason, about_model.count(reason)) for reason in ONE_TIME if reason in about_model))
    stored = frozenset(
        f"{engine.key}{'' if engine.complete else ' (incomplete)'}" for engine in store.list_engines(namespace, model)
    )
    jobs = sum(1 for name in objects if name.startswith("Job/"))
    return EndState(objects, conditions, revision, reasons, stored, jobs, announced)


def generated(kube: Cluster, namespace: str) -> dict[str, str]:
    """Digests of the generated-once values of the namespace's Secrets, by Secret/key."""
    found: dict[str, str] = {}
    for secret in kube.core.list_namespaced_secret(namespace).items:
        name = secret.metadata.name if secret.metadata is not None else "?"
        for key, value in (secret.data or {}).items():
            if key in GENERATED_KEYS:
                data = value.encode() if isinstance(value, str) else value
                found[f"{name}/{key}"] = hashlib.sha256(data).hexdigest()[:16]
    return found
