"""Who may reach a model: the Role that lets allowed subjects read the API key, and the NetworkPolicy.

Two independent fences. The NetworkPolicy admits the allowed namespaces to the client ports only, the scrapers
to metrics, and of the operator's namespace only the operator's own pods; Triton's plain HTTP port stays closed
whenever TLS is on (the kubelet's probes come from the node, which NetworkPolicy does not filter). The API key then
decides, per request, who is let in.

With mutual TLS each allowed subject also gets a client certificate of its own, in a Secret that a Role
lets that subject alone `get`: one client cannot present another's identity.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any, Literal

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners, service

NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
# On a client certificate's Secret, Role and RoleBinding (and cert-manager Certificate): a digest of the subject,
# so the reconciler finds the ones whose subject left the spec.
CLIENT_LABEL = "kestrel.dev/mtls-client"
CLIENT_ANNOTATION = "kestrel.dev/mtls-client"  # the subject, readable: "ServiceAccount apps/camera-gateway"
CLIENT_DOMAIN = "kestrel.dev"


@dataclasses.dataclass(frozen=True)
class Client:
    """A subject of spec.security.access that gets a mutual-TLS client certificate."""

    kind: Literal["ServiceAccount", "Group"]
    name: str
    namespace: str | None = None

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def label(self) -> str:
        return hashlib.sha256(self.subject.encode()).hexdigest()[:16]

    @property
    def common_name(self) -> str:
        """A DNS-style identity (also the certificate's SAN): `sa.ns.serviceaccount.kestrel.dev`, `g.group.…`."""
        if self.namespace is not None:
            return f"{names.child(self.name)}.{names.child(self.namespace)}.serviceaccount.{CLIENT_DOMAIN}"
        return f"{names.child(self.name)}.group.{CLIENT_DOMAIN}"

    def secret_name(self, owner: owners.Owner) -> str:
        """The Secret (and the Role, RoleBinding and Certificate) of this client of `owner`'s model."""
        return names.child(owner.name, "client", self.label[:8])

    def rbac_subject(self) -> dict[str, Any]:
        if self.kind == "Group":
            return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": self.name}
        return {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}


def subjects(spec: specs.ModelDeploymentSpec) -> list[Client]:
    """Every allowed group and ServiceAccount: who may read the API key."""
    access = spec.security.access
    found = [Client("Group", group) for group in access.allowed_groups or []]
    for account in access.allowed_service_accounts or []:
        namespace, name = account.split("/", 1)
        found.append(Client("ServiceAccount", name, namespace))
    return found


def mtls_clients(spec: specs.ModelDeploymentSpec) -> list[Client]:
    """Who gets a client certificate: every allowed subject, when TLS is mutual."""
    tls = spec.security.tls
    if tls.mode == "disabled" or not tls.mutual:
        return []
    return subjects(spec)


def client_selector(owner: owners.Owner) -> str:
    """The label selector of every client-certificate object of one model."""
    return f"{labels.MODEL}={names.label_value(owner.name)},{CLIENT_LABEL}"


def _client_metadata(owner: owners.Owner, client: Client) -> dict[str, Any]:
    metadata = _metadata(client.secret_name(owner), owner)
    metadata["labels"] = {**metadata["labels"], CLIENT_LABEL: client.label}
    metadata["annotations"] = {CLIENT_ANNOTATION: client.subject}
    return metadata


def client_secret(
    owner: owners.Owner, client: Client, certificate_pem: bytes, key_pem: bytes, ca_pem: bytes
) -> dict[str, Any]:
    """A client's certificate and key, with the CA that verifies the server (the operator mode writes it)."""
    data = {"ca.crt": ca_pem, "tls.crt": certificate_pem, "tls.key": key_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _client_metadata(owner, client),
        "type": "kubernetes.io/tls",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def client_role(owner: owners.Owner, client: Client) -> dict[str, Any]:
    """`get` on the client's own certificate Secret, by name, and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _client_metadata(owner, client),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [client.secret_name(owner)],
                "verbs": ["get"],
            }
        ],
    }


def client_role_binding(owner: owners.Owner, client: Client) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _client_metadata(owner, client),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": client.secret_name(owner)},
        "subjects": [client.rbac_subject()],
    }


def _metadata(name: str, owner: owners.Owner) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels.common(owner.name, "triton"),
        "ownerReferences": [owner.owner_reference()],
    }


def api_key_role(owner: owners.Owner) -> dict[str, Any]:
    """`get` on this one Secret and the CA bundle, by name: the key and the CA are all an allowed client needs."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(names.api_key_reader(owner.name), owner),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [names.api_key_secret(owner.name)],
                "verbs": ["get"],
            },
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.ca_bundle(owner.name)],
                "verbs": ["get"],
            },
        ],
    }


def api_key_role_binding(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> dict[str, Any] | None:
    """The binding of `api_key_role` to the allowed groups and ServiceAccounts, or None when nobody is allowed."""
    access = spec.security.access
    subjects: list[dict[str, Any]] = [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}
        for group in access.allowed_groups or []
    ]
    for account in access.allowed_service_accounts or []:
        namespace, name = account.split("/", 1)
        subjects.append({"kind": "ServiceAccount", "name": name, "namespace": namespace})
    if not subjects:
        return None
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(names.api_key_reader(owner.name), owner),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.api_key_reader(owner.name)},
        "subjects": subjects,
    }


def _from(namespaces: set[str], settings: operator_settings.Settings) -> list[dict[str, Any]]:
    """Every pod of `namespaces`, and the operator's own pods: the operator is a client of every model (the smoke
    inference that gates a rollout, the metrics it reads into status), but nothing else in its namespace is."""
    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: settings.operator_namespace}},
        "podSelector": {"matchLabels": labels.operator_selector(settings.operator_instance)},
    }
    if not namespaces:
        return [operator]
    selector = {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "In", "values": sorted(namespaces)}]}
    return [{"namespaceSelector": selector}, operator]


def network_policy(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings
) -> dict[str, Any]:
    """Ingress to the model's pods: client ports from the allowed namespaces, metrics from the scrapers."""
    clients = set(spec.security.access.allowed_namespaces or [owner.namespace])
    client_ports = [p for p in service.ports(spec) if p["name"] != "metrics"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(names.network_policy(owner.name), owner),
        "spec": {
            "podSelector": {"matchLabels": labels.selector(owner.name, "triton")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": _from(clients, settings),
                    "ports": [{"port": p["targetPort"], "protocol": "TCP"} for p in client_ports],
                },
                {
                    "from": _from(set(settings.scraper_namespaces), settings),
                    "ports": [{"port": "metrics", "protocol": "TCP"}],
                },
            ],
        },
    }
