"""The build pods' NetworkPolicy: nothing in, and out only DNS and the ports the store and the source need.

A build unpickles the checkpoint the spec names, so it runs code the user chose. The policy selects every build pod
of one model (all engine keys) and admits no ingress. Egress is DNS (UDP and TCP 53) and TCP to the ports of what
the build reads or writes over the network: the engine store (s3://) and the source (https://, s3://). With neither
(a pvc:// store and a pvc:// or file:// source) there is no egress rule at all, DNS included.

What this does not do: NetworkPolicy selects by address and port, not by host name, so these rules limit ports, not
hosts; a build may open an allowed port at any address but the cloud metadata endpoint (169.254.169.254 and AWS's
fd00:ec2::254), which every rule leaves out. Whether an ipBlock also matches the addresses of pods is up to the
enforcer: Cilium documents that its CIDR rules select only endpoints outside the cluster, so there a store served
from a pod (MinIO in the cluster) is out of the build's reach. The policy takes effect only where the cluster runs a
NetworkPolicy enforcer, and it is applied before the build Job is created; how soon an enforcer acts on it is the
enforcer's.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners

METADATA_V4 = "169.254.169.254/32"
METADATA_V6 = "fd00:ec2::254/128"  # AWS's instance metadata service over IPv6
DNS_PORT = 53
HTTPS_PORT = 443
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The cluster DNS pods where they carry the labels kubeadm and the managed distributions give CoreDNS: an enforcer
# whose ipBlocks do not match pods would otherwise leave the build no resolver. Only kube-system's: a tenant can
# label a pod of its own `k8s-app: kube-dns`.
CLUSTER_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def _anywhere() -> list[dict[str, Any]]:
    """Every IPv4 and IPv6 address but the metadata endpoint."""
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA_V4]}},
        {"ipBlock": {"cidr": "::/0", "except": [METADATA_V6]}},
    ]


def _port(url: str) -> int | None:
    """The TCP port an http:// or https:// URL connects to; None for any other URL, or a port that is not one."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range: nothing could connect to it
        return None
    if port is None:
        return _DEFAULT_PORTS[parts.scheme]
    return port if port > 0 else None


def _store_port(settings: operator_settings.Settings, store_endpoint: str | None) -> int | None:
    if settings.store.scheme == "pvc":
        return None  # mounted: no network
    if store_endpoint is None:
        # Ambient credentials: the pod is given no endpoint, and the S3 client's default endpoint is https.
        return HTTPS_PORT
    return _port(store_endpoint)


def _download_port(uri: str | None) -> int | None:
    """The port a download of the source or of a dataset archive connects to.

    An s3:// object is read with the endpoint in `spec.model.source.credentialsSecret`, which the operator does not
    read: 443 is allowed for it (an endpoint on another port stays closed). file:// and pvc:// need no network.
    """
    if uri is None:
        return None
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme == "https":
        return _port(uri)
    if scheme == "s3":
        return HTTPS_PORT
    return None


def _downloads(spec: specs.ModelDeploymentSpec) -> list[str | None]:
    """What a build fetches: the source, and each dataset (an s3:// or https:// one is an archive it downloads)."""
    return [
        spec.model.source.uri,
        spec.engine.calibration.dataset if spec.engine.calibration else None,
        spec.engine.prune.dataset if spec.engine.prune else None,
        spec.validation.dataset,
    ]


def ports(
    spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings, store_endpoint: str | None
) -> list[int]:
    """The TCP ports (besides DNS) a build of `spec` needs, sorted."""
    found = {_store_port(settings, store_endpoint), *(_download_port(uri) for uri in _downloads(spec))}
    return sorted(port for port in found if port is not None)


def network_policy(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    store_endpoint: str | None,
) -> dict[str, Any]:
    """`NAME-build`: the policy of every build pod of `owner`'s model.

    `store_endpoint` is the S3 endpoint the operator opens the store with (`reconcilers.engine.storage.Access`), None
    where it has none to give (ambient credentials); a pvc:// store ignores it.
    """
    tcp = ports(spec, settings, store_endpoint)
    egress: list[dict[str, Any]] = []
    if tcp:
        egress = [
            {
                "to": [*_anywhere(), CLUSTER_DNS],
                "ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}],
            },
            {"to": _anywhere(), "ports": [{"port": port, "protocol": "TCP"} for port in tcp]},
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.build_network_policy(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "build"),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            # The labels every build of this model shares; never the engine key, which changes with each build.
            "podSelector": {"matchLabels": labels.selector(owner.name, "build")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }
