"""Who may reach a model: the Role that lets allowed subjects read the API key, and the NetworkPolicy.

Two independent fences. The NetworkPolicy admits the allowed namespaces to the client ports only, and the
scraper to metrics; Triton's plain HTTP port stays closed whenever TLS is on (the kubelet's probes come from the
node, which NetworkPolicy does not filter). The API key then decides, per request, who is let in.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import spec as specs
from kestrel.manifests import context, labels, names, service

NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


def _metadata(name: str, owner: context.Owner) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels.common(owner.name, "triton"),
        "ownerReferences": [owner.owner_reference()],
    }


def api_key_role(owner: context.Owner) -> dict[str, Any]:
    """`get` on this one Secret, by name: reading the key is all an allowed client needs."""
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
            }
        ],
    }


def api_key_role_binding(spec: specs.ModelDeploymentSpec, owner: context.Owner) -> dict[str, Any] | None:
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


def _from_namespaces(namespaces: list[str]) -> list[dict[str, Any]]:
    return [
        {"namespaceSelector": {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "In", "values": namespaces}]}}
    ]


def network_policy(spec: specs.ModelDeploymentSpec, owner: context.Owner, settings: context.Settings) -> dict[str, Any]:
    """Ingress to the model's pods: client ports from the allowed namespaces, metrics from the scrapers."""
    # The operator's namespace is a client too: it runs the smoke inference that gates a rollout.
    allowed = spec.security.access.allowed_namespaces or [owner.namespace]
    clients = sorted({*allowed, settings.operator_namespace})
    client_ports = [p for p in service.ports(spec) if p["name"] != "metrics"]
    metrics_from = sorted({*settings.scraper_namespaces, settings.operator_namespace})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(names.network_policy(owner.name), owner),
        "spec": {
            "podSelector": {"matchLabels": labels.selector(owner.name, "triton")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": _from_namespaces(clients),
                    "ports": [{"port": p["targetPort"], "protocol": "TCP"} for p in client_ports],
                },
                {
                    "from": _from_namespaces(metrics_from),
                    "ports": [{"port": "metrics", "protocol": "TCP"}],
                },
            ],
        },
    }
