"""The test bed is a real control plane: the pinned version, RBAC, fake GPU nodes, and scheduling onto them."""

from __future__ import annotations

import json
import time

from kubernetes import client

from testbed import components, nodes
from tests.cluster.operator_support import meta
from tests.cluster_fixtures import Cluster


def test_version_is_the_pinned_release(kube: Cluster) -> None:
    version = client.VersionApi(kube.api).get_code()
    assert version.git_version == components.KUBERNETES
    assert (version.major, version.minor) == ("1", "34")


def test_rbac_is_enforced(kube: Cluster) -> None:
    denied = kube.kubectl("auth", "can-i", "list", "secrets", "--as=system:serviceaccount:default:default", check=False)
    assert denied.stdout.strip() == "no"
    allowed = kube.kubectl("auth", "can-i", "list", "secrets", check=False)
    assert allowed.stdout.strip() == "yes"


def test_fake_gpu_nodes_of_two_products_and_cpu_nodes(kube: Cluster) -> None:
    items = kube.core.list_node().items
    products = {(meta(n).labels or {}).get("nvidia.com/gpu.product") for n in items}
    assert set(nodes.GPU_PRODUCTS) <= products
    assert None in products  # CPU nodes
    gpu_node = next(n for n in items if (meta(n).labels or {}).get("nvidia.com/gpu.product") == "NVIDIA-L4")
    assert gpu_node.status is not None and (gpu_node.status.allocatable or {})["nvidia.com/gpu"] == "4"


def test_deployment_becomes_available_on_a_fake_gpu_node(kube: Cluster, pod_namespace: str) -> None:
    namespace = pod_namespace
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gpu-app", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "gpu-app"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-app"}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A10G"},
                    "containers": [
                        {
                            "name": "app",
                            "image": "example.invalid/app:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }
    kube.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(manifest))
    apps = client.AppsV1Api(kube.api)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = apps.read_namespaced_deployment_status("gpu-app", namespace).status
        if status is not None and status.available_replicas == 2:
            break
        time.sleep(0.5)
    assert status is not None and status.available_replicas == 2
    pods = kube.core.list_namespaced_pod(namespace, label_selector="app=gpu-app").items
    assert {p.spec is not None and (p.spec.node_name or "").startswith("gpu-a10g-") for p in pods} == {True}
    assert all(p.status is not None and p.status.phase == "Running" for p in pods)
