"""Service ports follow the protocols, the PDB allows one eviction at a time, and the autoscaler fits the metric."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import autoscaling, disruption, owners, service
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="u-1")
SETTINGS = operator_settings.Settings(engine_store="s3://engines", prometheus_url="http://prom:9090")


def parse(**sections: Any) -> specs.ModelDeploymentSpec:
    return specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED, **sections})


def port_names(spec: specs.ModelDeploymentSpec) -> list[str]:
    return [p["name"] for p in service.service(spec, OWNER)["spec"]["ports"]]


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({}, ["grpc", "https", "metrics"]),
        ({"serving": {"protocols": ["grpc"]}}, ["grpc", "metrics"]),
        ({"serving": {"protocols": ["http"]}, "security": {"tls": {"mode": "disabled"}}}, ["http", "metrics"]),
        ({"security": {"tls": {"mode": "disabled"}}}, ["grpc", "http", "metrics"]),
    ],
)
def test_service_exposes_the_specs_protocols_and_metrics(sections: dict[str, Any], expected: list[str]) -> None:
    assert port_names(parse(**sections)) == expected


def test_plain_http_never_leaves_the_pod_while_tls_is_on() -> None:
    ports = service.service(parse(), OWNER)["spec"]["ports"]
    assert 8000 not in [p["port"] for p in ports]
    assert service.endpoints(parse(), OWNER)["http"] == "https://cams.vision.svc:8443"


def test_endpoints_name_the_services_cluster_address() -> None:
    assert service.endpoints(parse(security={"tls": {"mode": "disabled"}}), OWNER) == {
        "grpc": "cams.vision.svc:8001",
        "http": "http://cams.vision.svc:8000",
        "metrics": "http://cams.vision.svc:8002/metrics",
    }


def test_disruption_budget_allows_one_eviction_at_a_time() -> None:
    budget = disruption.pod_disruption_budget(OWNER)["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["selector"]["matchLabels"] == service.service(parse(), OWNER)["spec"]["selector"]


def test_fixed_replicas_have_no_autoscaler() -> None:
    assert autoscaling.autoscaler(parse(serving={"replicas": 2}), OWNER, SETTINGS, keda_available=True) is None


def test_cpu_metric_is_an_hpa_even_where_keda_is_installed() -> None:
    spec = parse(serving={"autoscaling": {"min": 2, "max": 6, "metric": "cpu", "target": 60}})
    hpa = autoscaling.autoscaler(spec, OWNER, SETTINGS, keda_available=True)
    assert hpa is not None
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cams-triton"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}


@pytest.mark.parametrize(
    ("metric", "metric_type", "promql"),
    [("queueTime", "Value", "nv_inference_queue_duration_us"), ("inferenceRate", "AverageValue", "nv_inference_count")],
)
def test_triton_metrics_scale_through_keda_on_prometheus(metric: str, metric_type: str, promql: str) -> None:
    spec = parse(serving={"autoscaling": {"min": 1, "max": 4, "metric": metric, "target": 250}})
    scaled = autoscaling.autoscaler(spec, OWNER, SETTINGS, keda_available=True)
    assert scaled is not None
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == metric_type
    assert trigger["metadata"]["threshold"] == "250"
    assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert promql in trigger["metadata"]["query"]
    assert 'namespace="vision",model="cams"' in trigger["metadata"]["query"]


def test_without_keda_a_triton_metric_falls_back_to_cpu_and_says_so() -> None:
    spec = parse(serving={"autoscaling": {"metric": "queueTime", "target": 5000}})
    assert not autoscaling.uses_keda(spec, keda_available=False)
    hpa = autoscaling.autoscaler(spec, OWNER, SETTINGS, keda_available=False)
    assert hpa is not None
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    # 5000 is microseconds of queue time, not a CPU percentage.
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target["averageUtilization"] == autoscaling.DEFAULT_CPU_UTILIZATION
