"""Where Argo Rollouts' CRDs exist, the canary is an Argo `Rollout` with its `AnalysisTemplate`: the API server
accepts both under Argo's real schemas (v1.8.3, vendored under fixtures/), no plain stable Deployment is made, and
the Rollout's status, as Argo's controller would write it, shows in the ModelDeployment's conditions.

Argo's controller does not run here: the test plays it through the Rollout's status subresource. The operator
runs as `kestrel run` under the chart's RBAC, so the new verbs on Rollouts are checked too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import exceptions

from kestrel.manifests import labels, names
from tests.cluster import crd_support
from tests.cluster.operator_support import build, condition, get_mdep, mdep_spec, name_of, required_condition, wait_for

CRDS = ("rollouts.argoproj.io", "analysistemplates.argoproj.io")
ARGO = ("argoproj.io", "v1alpha1")


@pytest.fixture
def argo_crds(kube: Any) -> Iterator[None]:
    """Argo Rollouts' CRDs for this test only: other suites expect a cluster without Argo."""
    crd_support.install(kube, CRDS)
    deadline = time.monotonic() + 30
    while kube.kubectl("get", "rollouts.argoproj.io,analysistemplates.argoproj.io", "-A", check=False).returncode:
        assert time.monotonic() < deadline, "Argo's resources are not served"
        time.sleep(0.3)
    yield
    crd_support.remove(kube, CRDS)


def _rollout(kube: Any, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            *ARGO, namespace, "rollouts", names.triton("cams")
        )
    except exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def _engine_of(rollout: dict[str, Any]) -> str:
    return str(rollout["spec"]["template"]["metadata"]["labels"][labels.ENGINE_KEY])


def _play_argo(kube: Any, namespace: str, rollout: dict[str, Any], **found: Any) -> None:
    """Write the Rollout's status the way Argo's controller does, for the Rollout's current generation."""
    body = {"status": {"observedGeneration": str(rollout["metadata"]["generation"]), **found}}
    kube.custom.patch_namespaced_custom_object_status(*ARGO, namespace, "rollouts", names.triton("cams"), body)


def _mdep_condition(kube: Any, namespace: str, kind: str, reason: str) -> dict[str, Any] | None:
    body = get_mdep(kube, namespace, "cams")
    found = condition(body, kind)
    return body if found and found["reason"] == reason else None


def test_the_canary_is_an_argo_rollout_whose_status_drives_the_conditions(
    kube: Any, argo_crds: None, operator: Any, namespace: str, manual_node: str
) -> None:
    raw = {
        **mdep_spec(namespace),
        "serving": {"replicas": 2},
        "rollout": {
            "strategy": "canary",
            "canary": {"steps": [10, 50, 100], "interval": "1m", "analysis": {"maxP95LatencyMs": 40}},
        },
    }
    kube.create_mdep(namespace, "cams", raw)
    first = build(kube, namespace, raw, manual_node)

    rollout = wait_for("the Rollout", lambda: _rollout(kube, namespace), timeout=60)
    assert _engine_of(rollout) == names.short_key(first)
    assert [s.get("setWeight") for s in rollout["spec"]["strategy"]["canary"]["steps"] if "setWeight" in s] == [10, 50]
    template = kube.custom.get_namespaced_custom_object(*ARGO, namespace, "analysistemplates", names.triton("cams"))
    assert {m["name"] for m in template["spec"]["metrics"]} == {"error-rate", "p95-latency-ms"}
    apps = client.AppsV1Api(kube.api)
    assert [name_of(d) for d in apps.list_namespaced_deployment(namespace).items] == []

    _play_argo(kube, namespace, rollout, phase="Healthy", replicas=2, readyReplicas=2, availableReplicas=2)
    ready = wait_for("RolloutComplete", lambda: _mdep_condition(kube, namespace, "Progressing", "RolloutComplete"))
    assert required_condition(ready, "Available")["status"] == "True"
    assert ready["status"]["revision"]["current"] == first

    # A second engine: Argo starts stepping; then its analysis fails and it aborts.
    kube.custom.patch_namespaced_custom_object(
        "kestrel.dev", "v1alpha1", namespace, "modeldeployments", "cams", {"spec": {"engine": {"opset": 17}}}
    )
    raw["engine"] = {**raw["engine"], "opset": 17}
    second = build(kube, namespace, raw, manual_node)
    rollout = wait_for(
        "the Rollout's template to take the second engine",
        lambda: (r := _rollout(kube, namespace)) and _engine_of(r) == names.short_key(second) and r,
        timeout=60,
    )
    _play_argo(
        kube, namespace, rollout, phase="Paused", currentStepIndex=1, message="CanaryPauseStep", availableReplicas=2
    )
    stepping = wait_for("CanaryStep", lambda: _mdep_condition(kube, namespace, "Progressing", "CanaryStep"))
    assert "step 1/3, 10%" in required_condition(stepping, "Progressing")["message"]

    _play_argo(
        kube,
        namespace,
        rollout,
        phase="Degraded",
        abort=True,
        message='RolloutAborted: Rollout aborted update to revision 2: Metric "p95-latency-ms" assessed Failed',
        availableReplicas=2,
    )
    failed = wait_for(
        "CanaryAnalysisFailed", lambda: _mdep_condition(kube, namespace, "Degraded", "CanaryAnalysisFailed")
    )
    assert required_condition(failed, "Degraded")["status"] == "True"
    assert "p95-latency-ms" in required_condition(failed, "Degraded")["message"]
    assert failed["status"]["revision"] == {"current": first, "failed": second}
    back = wait_for(
        "the Rollout's template back at the first engine",
        lambda: (r := _rollout(kube, namespace)) and _engine_of(r) == names.short_key(first) and r,
    )
    assert back["spec"]["strategy"]["canary"]["steps"]
    events = [e.reason for e in kube.core.list_namespaced_event(namespace).items if e.involved_object.name == "cams"]
    assert "CanaryAnalysisFailed" in events
