"""The operator against the real API server: one build Job per engine key, results read from the build pod's
termination message, the gate reported in Validated, and all of it visible in status and `kubectl get`.

The build pod runs on a node no kwok manages; the test plays its kubelet and reports the pod's end the way a
kubelet does, through the pod status, so everything else (scheduler, Job controller, operator) is real.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from kestrel.api import crd, keys, spec
from kestrel.manifests import labels, names
from tests.cluster.operator_support import (
    build,
    condition,
    finish_build_pod,
    get_mdep,
    jobs,
    make_pods_ready,
    mdep_spec,
    meta,
    name_of,
    report,
    required_condition,
    wait_for,
)
from tests.cluster_fixtures import Cluster, Operator


def _when(kube: Cluster, namespace: str, kind: str, **wanted: str) -> dict[str, Any]:
    """The model once its condition `kind` has every field in `wanted`."""
    found: dict[str, Any] = wait_for(
        f"{kind} with {wanted}",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, kind))
            and all(c.get(k) == v for k, v in wanted.items())
            and b
        ),
        timeout=60,
    )
    return found


def _events(kube: Cluster, namespace: str, reason: str) -> list[client.CoreV1Event]:
    """The model's Events of `reason`, once there is one."""
    found: list[client.CoreV1Event] = wait_for(
        f"the {reason} Event",
        lambda: [
            e
            for e in kube.core.list_namespaced_event(namespace).items
            if e.reason == reason and e.involved_object.name == "cams"
        ],
    )
    return found


def test_one_job_per_key_across_an_operator_crash_and_a_validated_engine(
    kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    parsed = spec.parse(raw)
    job_name = names.build_job("cams", keys.engine_key(parsed))

    job = wait_for("the build Job", lambda: next((j for j in jobs(kube, namespace) if name_of(j) == job_name), None))
    assert (meta(job).owner_references or [])[0].kind == "ModelDeployment"
    assert job.spec.template.spec.automount_service_account_token is False
    building = wait_for(
        "Built=False/Building",
        lambda: (
            (c := condition(get_mdep(kube, namespace, "cams"), "Built"))
            and c["reason"] == "Building"
            and get_mdep(kube, namespace, "cams")
        ),
    )
    assert building["status"]["phase"] == "Building"
    assert required_condition(building, "Ready")["status"] == "False"

    # Crash the operator mid-build and start it again: it finds its Job instead of making another.
    operator.kill()
    operator.start()
    time.sleep(4)  # several resync periods of the new operator
    assert [name_of(j) for j in jobs(kube, namespace)] == [job_name]

    finish_build_pod(kube, namespace, job_name, manual_node, report(parsed, passed=True, message="mAP50-95 0.805"))
    done = wait_for(
        "Built=True",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, "Validated"))
            and c["status"] == "True"
            and b
        ),
    )
    assert required_condition(done, "Built")["status"] == "True"
    assert done["status"]["engine"]["key"] == keys.engine_key(parsed)
    assert done["status"]["engine"]["format"] == "onnx"
    assert done["status"]["validation"]["mapEngine"] == 0.805
    assert done["status"]["validation"]["passed"] is True
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert done["status"]["revision"]["current"] == keys.engine_key(parsed)
    assert [name_of(j) for j in jobs(kube, namespace)] == [job_name]
    exported = operator.metrics()  # of the restarted operator, which saw the build finish
    assert 'kestrel_events_total{reason="Passed",type="Normal"} 1.0' in exported
    assert 'kestrel_reconciles_total{result="ok"}' in exported
    assert "Traceback" not in operator.log()
    # No RBAC denial: the chart's role covers every call (a namespace being deleted also refuses writes: not RBAC).
    assert 'forbidden: User "system:serviceaccount:' not in operator.log()


def test_failed_gate_is_reported_with_its_reason_and_an_event(
    kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    parsed = spec.parse(raw)
    job_name = names.build_job("cams", keys.engine_key(parsed))
    wait_for("the build Job", lambda: jobs(kube, namespace))
    finish_build_pod(
        kube,
        namespace,
        job_name,
        manual_node,
        report(parsed, passed=False, reason="AccuracyDrop", message="mAP50-95 dropped 0.070 > maxMapDrop 0.020"),
    )
    failed = _when(kube, namespace, "Validated", status="False")
    validated = required_condition(failed, "Validated")
    assert validated["reason"] == "AccuracyDrop"
    assert "0.070" in validated["message"]
    assert failed["status"]["phase"] == "Failed"
    assert required_condition(failed, "Ready")["reason"] == "AccuracyDrop"
    events = _events(kube, namespace, "AccuracyDrop")
    assert events[0].type == "Warning"
    # A model whose only engine failed its gate serves nothing: no Deployment, no Service, through several resyncs.
    time.sleep(3)
    apps = client.AppsV1Api(kube.api)
    assert [name_of(d) for d in apps.list_namespaced_deployment(namespace).items] == []
    assert [name_of(s) for s in kube.core.list_namespaced_service(namespace).items] == []


def test_a_revision_that_fails_its_gate_leaves_the_previous_one_serving(
    kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    first = build(kube, namespace, raw, manual_node)
    wait_for("the first revision's pods", lambda: make_pods_ready(kube, namespace, first))
    wait_for(
        "Ready=True", lambda: (c := condition(get_mdep(kube, namespace, "cams"), "Ready")) and c["status"] == "True"
    )
    apps = client.AppsV1Api(kube.api)
    (deployment,) = apps.list_namespaced_deployment(namespace).items
    service = kube.core.read_namespaced_service(names.service("cams"), namespace)

    changed = {**raw, "validation": {**raw["validation"], "maxMapDrop": 0.01}}
    kube.custom.patch_namespaced_custom_object(
        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "cams", {"spec": {"validation": {"maxMapDrop": 0.01}}}
    )
    parsed = spec.parse(changed)
    second = keys.engine_key(parsed)
    job_name = names.build_job("cams", second)
    wait_for("the second build Job", lambda: any(name_of(j) == job_name for j in jobs(kube, namespace)))
    failing = report(parsed, passed=False, reason="AccuracyDrop", message="mAP50-95 dropped 0.070 > maxMapDrop 0.010")
    finish_build_pod(kube, namespace, job_name, manual_node, failing)
    failed = wait_for(
        "Validated=False for the second engine",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (b["status"].get("engine") or {}).get("key") == second
            and (c := condition(b, "Validated"))
            and c["status"] == "False"
            and b
        ),
    )
    time.sleep(3)  # several resyncs: nothing moves toward the failed engine
    failed = get_mdep(kube, namespace, "cams")
    assert failed["status"]["revision"]["current"] == first
    (kept,) = apps.list_namespaced_deployment(namespace).items
    assert kept.spec is not None and kept.spec.template.metadata is not None, "a Deployment without a pod template"
    assert (kept.spec.template.metadata.annotations or {})[labels.ENGINE_KEY_ANNOTATION] == first
    assert meta(kept).uid == meta(deployment).uid
    assert meta(kube.core.read_namespaced_service(names.service("cams"), namespace)).uid == meta(service).uid
    assert [name_of(d) for d in apps.list_namespaced_deployment(namespace).items] == [name_of(deployment)]
    assert required_condition(failed, "Available")["status"] == "True"


def test_a_build_pod_no_node_can_take_is_reported_unschedulable_within_a_resync(
    kube: Cluster, operator: Operator, namespace: str
) -> None:
    """The real scheduler finds no node for the build pod: Built says so with the scheduler's own words, instead of
    "Build Job ... is running" until the build's deadline."""
    raw = {**mdep_spec(namespace), "target": {"nodeSelector": {"kestrel.dev/test-no-such-pool": namespace}}}
    kube.create_mdep(namespace, "cams", raw)
    held = _when(kube, namespace, "Built", reason="Unschedulable")
    message = required_condition(held, "Built")["message"]
    assert "is held up: pod " in message and "cannot be scheduled: 0/" in message, message
    assert "node affinity/selector" in message or "didn't match" in message, message
    events = _events(kube, namespace, "Unschedulable")
    assert events[0].type == "Warning"


def test_a_crashed_build_is_reported_as_build_failed(
    kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = mdep_spec(namespace, build={"backoffLimit": 0})
    kube.create_mdep(namespace, "cams", raw)
    job_name = names.build_job("cams", keys.engine_key(spec.parse(raw)))
    wait_for("the build Job", lambda: jobs(kube, namespace))
    finish_build_pod(kube, namespace, job_name, manual_node, "spec.model.source.sha256 mismatch", exit_code=1)
    failed = _when(kube, namespace, "Built", reason="BuildFailed")
    assert "sha256 mismatch" in required_condition(failed, "Built")["message"]
    assert failed["status"]["phase"] == "Failed"
