"""Where each kind Kestrel touches lives in the REST API.

A fixed table instead of API discovery: Kestrel works with a known set of kinds, discovery costs a burst
of requests at start-up, and its on-disk cache would need a writable filesystem the operator pod lacks.
"""

from __future__ import annotations

import dataclasses

from kestrel.api import crd, errors


@dataclasses.dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path; a namespaced kind without a namespace lists across all namespaces."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            prefix += f"/namespaces/{namespace}"
        elif self.namespaced and name:
            raise errors.ClusterError(f"{self.kind} is namespaced: a namespace is required")
        path = f"{prefix}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


_KNOWN = [
    Resource("v1", "ConfigMap", "configmaps"),
    Resource("v1", "Secret", "secrets"),
    Resource("v1", "Service", "services"),
    Resource("v1", "ServiceAccount", "serviceaccounts"),
    Resource("v1", "Pod", "pods"),
    Resource("v1", "Event", "events"),
    Resource("v1", "Namespace", "namespaces", namespaced=False),
    Resource("v1", "Node", "nodes", namespaced=False),
    Resource("apps/v1", "Deployment", "deployments"),
    Resource("batch/v1", "Job", "jobs"),
    Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Resource("coordination.k8s.io/v1", "Lease", "leases"),
    Resource("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False),
    Resource("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    Resource("cert-manager.io/v1", "Certificate", "certificates"),
    Resource("argoproj.io/v1alpha1", "Rollout", "rollouts"),
    Resource("argoproj.io/v1alpha1", "AnalysisTemplate", "analysistemplates"),
    Resource("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    Resource(crd.API_VERSION, crd.KIND, crd.PLURAL),
]
_BY_KIND = {(r.api_version, r.kind): r for r in _KNOWN}

MODEL_DEPLOYMENT = _BY_KIND[(crd.API_VERSION, crd.KIND)]


def lookup(api_version: str, kind: str) -> Resource:
    """The resource for an apiVersion and kind; a kind outside the table is a programming error."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise errors.ClusterError(f"Kestrel does not manage {kind} ({api_version})") from None
