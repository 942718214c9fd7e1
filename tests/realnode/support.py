"""What the real-node suites share: the quickstart's claims and model on the real node, and containers as runc runs
them (read through crictl)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import yaml

from testbed import demo, install, realnode
from tests.cluster_fixtures import Cluster

READY_TIMEOUT = 1200.0


@dataclasses.dataclass(frozen=True)
class RealNode:
    """The session's test bed with its real node, Kestrel's images imported there."""

    kube: Cluster
    node: realnode.RealNode


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def mdep(node: RealNode, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(node.kube.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout)
    return body


def _ready_or_failed(node: RealNode, namespace: str, name: str, seen: list[str] | None = None) -> bool:
    body = mdep(node, namespace, name)
    built, validated = condition(body, "Built"), condition(body, "Validated")
    if seen is not None and built.get("message"):
        seen.append(str(built["message"]))
    failed = (
        (built.get("status") == "False" and built.get("reason") == "BuildFailed")
        or validated.get("status") == "False"
        or condition(body, "Degraded").get("status") == "True"
    )
    if failed:
        raise AssertionError(f"{namespace}/{name} failed: {json.dumps(body.get('status'), indent=1)}")
    return condition(body, "Ready").get("status") == "True"


def deploy_quickstart(
    node: RealNode,
    work: pathlib.Path,
    namespace: str,
    spec: dict[str, Any],
    extra: Sequence[dict[str, Any]] = (),
    seen: list[str] | None = None,
) -> tuple[str, float]:
    """The quickstart's claims, `extra` objects and ModelDeployment (its spec updated with `spec`) in a new
    `namespace` on the real node; returns the model's name and the seconds from apply to Ready."""
    bed = node.kube.bed
    remove(node, namespace)  # what an interrupted run left
    bed.kubectl("create", "namespace", namespace)
    models, engines = demo.prepare_claims(work)
    objects = install.owned_claim(demo.MODEL_CLAIM, models, namespace)
    objects += install.owned_claim(demo.STORE_CLAIM, engines, namespace)
    body = demo.model_deployment(namespace)
    body["spec"] |= spec
    manifest = work / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all([*objects, *extra, body]))
    node.kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", str(manifest))
    applied = time.monotonic()
    name: str = body["metadata"]["name"]
    try:
        install.wait_for(
            "the model to be Ready", lambda: _ready_or_failed(node, namespace, name, seen), READY_TIMEOUT, interval=1.0
        )
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(f"{error}\n--- operator ---\n{install.operator_log(bed)[-4000:]}") from error
    return name, time.monotonic() - applied


def remove(node: RealNode, namespace: str) -> None:
    bed = node.kube.bed
    bed.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
    for claim in (demo.MODEL_CLAIM, demo.STORE_CLAIM):
        bed.kubectl("delete", "pv", f"{namespace}-{claim}", "--ignore-not-found", check=False)


def containers(node: RealNode, namespace: str) -> list[dict[str, Any]]:
    """Every container (running or exited) of the pods in `namespace`, as runc runs it (crictl inspect)."""
    listed = json.loads(node.node.crictl("ps", "--all", "--namespace", namespace, "-o", "json").stdout)
    return [json.loads(node.node.crictl("inspect", item["id"]).stdout) for item in listed["containers"]]


def image_name(container: dict[str, Any]) -> str:
    image: str = container["status"]["image"]["image"]
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def running(node: RealNode, namespace: str, image: str) -> dict[str, Any]:
    """The one running container of `image` in `namespace`."""
    (found,) = [
        c for c in containers(node, namespace) if image_name(c) == image and c["status"]["state"] == "CONTAINER_RUNNING"
    ]
    return found


def mount_table(container: dict[str, Any]) -> list[list[str]]:
    """The container's mounts as its own process sees them (/proc/<pid>/mounts), split into fields."""
    return [line.split() for line in pathlib.Path(f"/proc/{container['info']['pid']}/mounts").read_text().splitlines()]
