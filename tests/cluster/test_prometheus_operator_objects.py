"""Where the Prometheus Operator's CRDs are installed (its real v0.92.1 schemas, vendored under fixtures/), the API
server accepts what Kestrel writes for them: each model's PodMonitor, applied by the operator beside its Triton
Deployment, and the chart's PrometheusRule. No Prometheus runs here: what it scrapes is not shown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kestrel.manifests import names
from tests.cluster import crd_support
from tests.cluster.operator_support import build, make_pods_ready, mdep_spec, meta, wait_for
from tests.unit.helm_support import find, render

pytestmark = pytest.mark.cluster

CRDS = ("podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")


@pytest.fixture
def prometheus_operator_crds(kube: Any) -> Iterator[None]:
    crd_support.install(kube, CRDS)
    yield
    crd_support.remove(kube, CRDS)


def _pod_monitor(kube: Any, namespace: str) -> dict[str, Any] | None:
    found = kube.kubectl(
        "get", "podmonitor", names.pod_monitor("cams"), f"--namespace={namespace}", "-o", "json", check=False
    )
    return json.loads(found.stdout) if found.returncode == 0 else None


def test_the_operator_writes_a_pod_monitor_the_real_schema_accepts(
    prometheus_operator_crds: None, kube: Any, operator: Any, namespace: str, manual_node: str
) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    key = build(kube, namespace, raw, manual_node)
    wait_for("the model's pod", lambda: make_pods_ready(kube, namespace, key) == 1, timeout=60)
    monitor = wait_for("the PodMonitor", lambda: _pod_monitor(kube, namespace), timeout=60)
    (owner,) = monitor["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", "cams")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # It selects the model's Triton pods: the one the test's kubelet made ready carries every selected label.
    pods = kube.core.list_namespaced_pod(namespace).items
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert [p for p in pods if selector.items() <= (meta(p).labels or {}).items()]


def test_the_charts_prometheus_rule_is_accepted_by_the_real_schema(prometheus_operator_crds: None, kube: Any) -> None:
    rule = find(render("metrics.prometheusRule.enabled=true", namespace="default"), "PrometheusRule")
    rendered = yaml.safe_dump(rule)
    applied = kube.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered)
    assert "prometheusrule.monitoring.coreos.com/kestrel-operator serverside-applied (server dry run)" in applied.stdout
