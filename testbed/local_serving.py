"""The quickstart on the process kubelet (node `local-0`, pods as host processes): its placement, and how a client
here reaches a serving pod through the local ports that kubelet publishes.

The end-to-end rollout, rollback and canary suites use it because it starts pods in about a second; what it cannot
show (securityContext, read-only roots, resources, image contents) the real node's suites show (tests/realnode).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import yaml

from kestrel import infer
from kestrel.manifests import transport
from testbed import cluster, install, kubelet_pods
from testbed.kubelet import LOCAL_LABEL

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart" / "modeldeployment.yaml"


def model_deployment(namespace: str) -> dict[str, Any]:
    """The quickstart example, pinned to the process kubelet's node (the test bed's other nodes are kwok's)."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"].setdefault("target", {})["nodeSelector"] = {LOCAL_LABEL: "true"}
    return body


def serving_pods(bed: cluster.Testbed, namespace: str, name: str) -> list[dict[str, Any]]:
    """The model's Ready Triton pods on the process kubelet (which publishes their local ports)."""
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=triton"
    pods = json.loads(bed.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)
    return [
        pod
        for pod in pods["items"]
        if kubelet_pods.PORTS_ANNOTATION in pod["metadata"].get("annotations", {})
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]


def pod_endpoint(
    bed: cluster.Testbed, pod: dict[str, Any], name: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    """How a client in the model's namespace would reach this pod: its gRPC port as published here."""
    ports = json.loads(pod["metadata"]["annotations"][kubelet_pods.PORTS_ANNOTATION])
    address = f"127.0.0.1:{ports[str(transport.GRPC_PORT)]}"
    return install.endpoint(bed, pod["metadata"]["namespace"], name, address, work, with_key=with_key)


def local_endpoint(
    bed: cluster.Testbed, namespace: str, name: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    serving = serving_pods(bed, namespace, name)
    if not serving:
        raise AssertionError("no Ready serving pod with published local ports")
    return pod_endpoint(bed, serving[0], name, work, with_key=with_key)
