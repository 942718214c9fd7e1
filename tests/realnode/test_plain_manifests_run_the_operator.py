"""`kubectl apply --server-side -f deploy/kestrel.yaml`, the install without Helm, runs the operator on the real node.

The file is applied as generated, with its namespace and object names moved aside (tests/cluster/install_support.py)
and the real node's selector and toleration added to the operator's pod, as a user of this cluster would: the test
bed's other nodes are kwok's, which run nothing. The kubelet's own readiness probe must pass on the operator's
health endpoint, and runc must run its image as the non-root user the manifest asks for.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from testbed import realnode
from tests.cluster import install_support
from tests.realnode import support
from tests.realnode.support import RealNode

pytestmark = pytest.mark.timeout(900)

PLAIN = pathlib.Path(__file__).parents[2] / "deploy" / "kestrel.yaml"


def _placed(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for body in objects:
        if body["kind"] == "Deployment":
            pod = body["spec"]["template"]["spec"]
            pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **realnode.NODE_SELECTOR}
            pod["tolerations"] = [*pod.get("tolerations", []), dict(realnode.TOLERATION)]
    return objects


def test_kubectl_apply_of_the_plain_manifests_runs_the_operator_on_the_real_node(real_node: RealNode) -> None:
    kube = real_node.kube
    text, namespace, prefix = install_support.isolated(PLAIN.read_text())
    crds, objects = install_support.split(text)
    try:
        install_support.apply_crds(kube, crds)
        kube.kubectl("apply", "--server-side", "-f", "-", stdin=install_support.dump(_placed(objects)))
        kube.kubectl("rollout", "status", f"deployment/{prefix}-operator", f"--namespace={namespace}", "--timeout=300s")
        pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
        (pod,) = pods
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME
        (container,) = support.containers(real_node, namespace)
        assert support.image_name(container) == "kestrel-operator"
        assert container["status"]["state"] == "CONTAINER_RUNNING"
        assert container["info"]["runtimeSpec"]["process"]["user"]["uid"] == 65532
        log = kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
        assert "Traceback" not in log, log[-3000:]
    finally:
        install_support.cleanup(kube, namespace, prefix)
