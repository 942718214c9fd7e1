"""Helpers for the operator suites: wait for conditions, and play the kubelet of a node kwok leaves alone."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from kubernetes import client

from kestrel.api import crd, keys, result, spec, status
from kestrel.manifests import build_job, names
from tests.unit.spec_support import UNMEASURED

if TYPE_CHECKING:
    # Only for the annotations: tests/cluster_fixtures.py imports this module.
    from tests.cluster_fixtures import Cluster

NODE_LABEL = "kestrel.dev/test-kubelet"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def mdep_spec(namespace: str, **engine: Any) -> dict[str, Any]:
    return {
        "model": {"source": {"uri": "file:///models/shapes.pt"}, "imgsz": 320},
        "validation": UNMEASURED,
        "engine": {"format": "onnx", **engine},
        "target": {"nodeSelector": {NODE_LABEL: namespace}},
    }


def get_mdep(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = kube.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name)
    return cast(dict[str, Any], found)  # the custom objects API types what it returns as object


class _Object(Protocol):
    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


def meta(obj: _Object) -> client.V1ObjectMeta:
    """An object's metadata, which the API server always returns and the typed client declares optional."""
    assert obj.metadata is not None, f"{type(obj).__name__} without metadata"
    return obj.metadata


def name_of(obj: _Object) -> str:
    name = meta(obj).name
    assert name is not None, f"{type(obj).__name__} without a name"
    return name


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def required_condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition `kind` of a status that must have one by now."""
    found = condition(body, kind)
    assert found is not None, f"no condition {kind} in {body.get('status')}"
    return found


def jobs(kube: Cluster, namespace: str) -> list[client.V1Job]:
    return client.BatchV1Api(kube.api).list_namespaced_job(namespace).items


def finish_build_pod(kube: Cluster, namespace: str, job_name: str, node: str, message: str, exit_code: int = 0) -> None:
    """Play the kubelet: the Job's pod ran on `node` and ended with `message` in its termination log."""
    pod = wait_for(
        "the build pod to be scheduled",
        lambda: next(
            (
                p
                for p in kube.core.list_namespaced_pod(
                    namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
                ).items
                if p.spec is not None and p.spec.node_name == node
            ),
            None,
        ),
    )
    assert pod.metadata is not None and pod.spec is not None, "a pod without metadata or spec"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": now,
        "finishedAt": now,
    }
    kube.core.patch_namespaced_pod_status(
        name_of(pod),
        namespace,
        _content_type="application/merge-patch+json",
        body={
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": build_job.CONTAINER,
                        "image": pod.spec.containers[0].image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        },
    )


def report(
    parsed: spec.ModelDeploymentSpec, *, passed: bool, reason: str = "Passed", message: str = "", fmt: str = "onnx"
) -> str:
    return result.BuildResult(
        engine_key=keys.engine_key(parsed),
        format=fmt,
        precision=parsed.engine.precision,
        digest="sha256:" + "d" * 64,
        size_bytes=12_345_678,
        uri="pvc://engines/kestrel/x/",
        gate=result.Gate(passed=passed, reason=reason, message=message),
        validation=status.ValidationStatus(map_source=0.81, map_engine=0.74 if not passed else 0.805, p50_ms=21.5),
    ).to_termination_message()


def make_pods_ready(kube: Cluster, namespace: str, engine_key: str) -> int:
    """Play the kubelet for the Triton pods of one engine revision; return how many are Ready."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = 0
    selector = f"app.kubernetes.io/component=triton,kestrel.dev/engine-key={names.short_key(engine_key)}"
    for pod in kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
        assert pod.metadata is not None and pod.spec is not None, "a pod without metadata or spec"
        if not pod.spec.node_name or meta(pod).deletion_timestamp:
            continue
        if pod.status is None or pod.status.phase != "Running":
            kube.core.patch_namespaced_pod_status(
                name_of(pod),
                namespace,
                _content_type="application/merge-patch+json",
                body={
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                        ],
                        "containerStatuses": [
                            {
                                "name": c.name,
                                "image": c.image,
                                "imageID": "",
                                "ready": True,
                                "restartCount": 0,
                                "started": True,
                                "state": {"running": {"startedAt": now}},
                            }
                            for c in pod.spec.containers
                        ],
                    }
                },
            )
        ready += 1
    return ready


def build(kube: Cluster, namespace: str, raw: dict[str, Any], node: str) -> str:
    parsed = spec.parse(raw)
    key = keys.engine_key(parsed)
    job_name = names.build_job("cams", key)
    wait_for(
        f"build Job {job_name}",
        lambda: any(name_of(j) == job_name for j in jobs(kube, namespace)),
    )
    finish_build_pod(kube, namespace, job_name, node, report(parsed, passed=True))
    return key
