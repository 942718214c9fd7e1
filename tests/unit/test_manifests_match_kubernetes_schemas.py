"""Every rendered object is valid for the Kubernetes release the test bed runs, in strict mode (no unknown field).

The schemas come from `kubernetes_validate`, offline. KEDA's ScaledObject, Argo's kinds and the Prometheus
Operator's PodMonitor are not part of Kubernetes: the pod template of a Rollout is validated as a Deployment's, the
rest against what their CRDs require.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.unit import test_manifests_golden as golden

# The test bed's pinned release (testbed/go/kube/go.mod: k8s.io/kubernetes v1.34.x).
KUBERNETES_VERSION = "1.34"
ADD_ONS = ("keda.sh/", "argoproj.io/", "monitoring.coreos.com/")
CORE = [p for p in golden.params() if not p.values[2]["apiVersion"].startswith(ADD_ONS)]
KEDA = [p for p in golden.params() if p.values[2]["apiVersion"].startswith("keda.sh/")]
ROLLOUTS = [p for p in golden.params() if p.values[2]["kind"] == "Rollout"]
POD_MONITORS = [p for p in golden.params() if p.values[2]["kind"] == "PodMonitor"]
# From the PodMonitor CRD of the Prometheus Operator (monitoring.coreos.com_podmonitors.yaml): the interval's
# pattern, the relabeling actions (either case), and a label name as Prometheus 2 accepts it.
POD_MONITOR_INTERVAL = re.compile(
    r"(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)"
)
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase"}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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


@pytest.mark.parametrize(("case", "kind", "obj"), POD_MONITORS)
def test_pod_monitor_has_what_its_crd_requires(case: golden.Case, kind: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, KUBERNETES_VERSION, strict=True
    )  # the metadata, checked as any object's
    spec = obj["spec"]
    assert set(spec) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
    assert spec["selector"]["matchLabels"]
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scheme", "relabelings", "metricRelabelings"}
        assert POD_MONITOR_INTERVAL.fullmatch(endpoint["interval"])
        for relabeling in endpoint["relabelings"]:
            assert relabeling["action"].lower() in RELABEL_ACTIONS
            assert all(LABEL_NAME.fullmatch(label) for label in relabeling["sourceLabels"])
            assert LABEL_NAME.fullmatch(relabeling["targetLabel"])
