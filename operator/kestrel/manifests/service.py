"""The Service in front of every Triton pod of a model (stable and canary), and the endpoints it gives clients."""

from __future__ import annotations

from typing import Any

from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners, transport


def ports(spec: specs.ModelDeploymentSpec) -> list[dict[str, Any]]:
    """Named ports: one per protocol the spec exposes, plus metrics (for the scraper and the autoscaler)."""
    found: list[dict[str, Any]] = []
    if "grpc" in spec.serving.protocols:
        found.append(_port("grpc", transport.GRPC_PORT))
    if transport.proxied_http(spec):
        found.append(_port("https", transport.HTTPS_PORT))
    elif "http" in spec.serving.protocols:
        found.append(_port("http", transport.HTTP_PORT))
    found.append(_port("metrics", transport.METRICS_PORT))
    return found


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "port": number, "targetPort": name, "protocol": "TCP"}


def service(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.service(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "triton"),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "type": "ClusterIP",
            # Both tracks: during a canary, traffic splits in proportion to ready pods.
            "selector": labels.selector(owner.name, "triton"),
            "ports": ports(spec),
        },
    }


def endpoints(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> dict[str, str]:
    """`status.endpoints`: where clients reach the model, by the Service's cluster DNS name."""
    host = f"{names.service(owner.name)}.{owner.namespace}.svc"
    found: dict[str, str] = {}
    if "grpc" in spec.serving.protocols:
        found["grpc"] = f"{host}:{transport.GRPC_PORT}"
    if transport.proxied_http(spec):
        found["http"] = f"https://{host}:{transport.HTTPS_PORT}"
    elif "http" in spec.serving.protocols:
        found["http"] = f"http://{host}:{transport.HTTP_PORT}"
    found["metrics"] = f"http://{host}:{transport.METRICS_PORT}/metrics"
    if spec.security.tls.mode != "disabled":
        found["caConfigMap"] = names.ca_bundle(owner.name)
    return found
