"""Every rendered object is valid for the Kubernetes release the test bed runs, in strict mode (no unknown field).

The schemas come from `kubernetes_validate`, offline. KEDA's ScaledObject and Argo's kinds are not part of
Kubernetes: the pod template of a Rollout is validated as a Deployment's, the rest against what their CRDs require.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.unit import test_manifests_golden as golden

# The test bed's pinned release (testbed/go/kube/go.mod: k8s.io/kubernetes v1.34.x).
KUBERNETES_VERSION = "1.34"
CORE = [p for p in golden.params() if not p.values[2]["apiVersion"].startswith(("keda.sh/", "argoproj.io/"))]
KEDA = [p for p in golden.params() if p.values[2]["apiVersion"].startswith("keda.sh/")]
ROLLOUTS = [p for p in golden.params() if p.values[2]["kind"] == "Rollout"]


@pytest.mark.parametrize(("case", "kind", "obj"), CORE)
def test_object_is_valid_for_kubernetes(case: golden.Case, kind: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_an_invalid_object_is_refused() -> None:
    # The check itself must be able to fail: an unknown field in strict mode.
    obj = CORE[0].values[2]
    broken = {**obj, "spec": {**obj["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("case", "kind", "obj"), KEDA)
def test_scaled_object_has_what_kedas_crd_requires(case: golden.Case, kind: str, obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert spec["scaleTargetRef"]["name"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] in ("AverageValue", "Value", "Utilization")
        # KEDA's trigger metadata is a map of strings: a number here is refused by its CRD.
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        assert set(trigger["metadata"]) >= {"serverAddress", "query", "threshold"}


@pytest.mark.parametrize(("case", "kind", "obj"), ROLLOUTS)
def test_rollout_pod_template_is_valid_for_kubernetes(case: golden.Case, kind: str, obj: dict[str, Any]) -> None:
    # Argo's Rollout embeds a core PodTemplateSpec and selector: check them as a Deployment's.
    as_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": obj["metadata"],
        "spec": {"selector": obj["spec"]["selector"], "template": obj["spec"]["template"]},
    }
    kubernetes_validate.validate(as_deployment, KUBERNETES_VERSION, strict=True)
    assert set(obj["spec"]) <= {
        "replicas", "selector", "template", "strategy", "progressDeadlineSeconds", "progressDeadlineAbort",
        "revisionHistoryLimit", "minReadySeconds",
    }  # fmt: skip
