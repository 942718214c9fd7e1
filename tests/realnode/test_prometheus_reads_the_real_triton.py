"""A real Prometheus scrapes the real node's Triton as Kestrel's PodMonitor says, and Kestrel's PromQL finds it.

The quickstart model is served on the real node with a canary rollout that bounds the p95 latency (so Triton
exports its latency summary) and with the Prometheus Operator's PodMonitor CRD installed (so the operator writes
the model's PodMonitor). A Prometheus built from its Go module scrapes the pods through Kubernetes service
discovery with the scrape job a Prometheus Operator generates for that PodMonitor (testbed/prometheus.py); a
client drives inferences, some with input the model refuses, through the model's Service. Then the queries the
product's own manifest builders write for this model are evaluated: the KEDA ScaledObject's (both Triton metrics;
rendered for the served spec, as no KEDA is installed here) and the Argo AnalysisTemplate's (its canary-hash
argument set to the serving pods' pod-template-hash, as Argo sets it). Each must select the series the scrape
produced and give values that agree with what the client counted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from kestrel import infer
from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import argo, autoscaling, names, owners
from testbed import demo, install, prometheus
from tests.cluster import crd_support
from tests.realnode import support
from tests.realnode.support import RealNode

pytestmark = pytest.mark.timeout(3600)

NAMESPACE = "realnode-metrics"
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
SCRAPE_INTERVAL = "2s"
CANARY = {
    "strategy": "canary",
    "canary": {"steps": [50, 100], "interval": "30s", "analysis": {"maxErrorRate": 0.5, "maxP95LatencyMs": 10000}},
}


@dataclasses.dataclass(frozen=True)
class Scraped:
    node: RealNode
    body: dict[str, Any]  # the ModelDeployment as served
    pods: list[dict[str, Any]]  # its Triton pods
    server: prometheus.Prometheus
    answered: int
    refused: int  # requests the model answered with an error: unusable input

    @property
    def owner(self) -> owners.Owner:
        return owners.Owner.from_body(self.body)

    @property
    def spec(self) -> specs.ModelDeploymentSpec:
        return specs.parse(self.body["spec"])

    def value(self, query: str) -> float:
        """The single value `query` gives; fails when it selects nothing or gives several series."""
        result = self.server.query(query)
        assert len(result) == 1, f"{query!r} gave {result}; targets: {json.dumps(self.server.targets(), indent=1)}"
        return float(result[0]["value"][1])


def _triton_pods(node: RealNode, name: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=triton"
    listed = node.kube.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout
    pods: list[dict[str, Any]] = json.loads(listed)["items"]
    return pods


def _drive(endpoint: infer.Endpoint, image: infer.Image, seconds: float) -> tuple[int, int]:
    """Inferences for `seconds`, every fifth one an image with no rows, which the served model answers with an
    error (the client's fault, not the server's); returns (answered, refused) as the client saw them."""
    empty = np.zeros((0, *image.shape[1:]), dtype=np.uint8)
    answered = refused = 0
    deadline = time.monotonic() + seconds
    with infer.Client(endpoint) as client:
        while time.monotonic() < deadline:
            if (answered + refused) % 5 == 4:
                try:
                    client.detect(empty)
                except infer.InferError:
                    refused += 1
                    continue
                raise AssertionError("Triton answered an image with no rows")
            client.detect(image)
            answered += 1
    return answered, refused


@pytest.fixture(scope="module")
def scraped(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    bed = real_node.kube.bed
    work = tmp_path_factory.mktemp("metrics")
    crd_support.install(real_node.kube, [POD_MONITOR_CRD])
    chart_values = install.values(
        f"pvc://{demo.STORE_CLAIM}/engines",
        resyncSeconds=5,
        modelMetrics={"podMonitor": {"enabled": True, "interval": SCRAPE_INTERVAL}},
    )
    install.helm_install(bed, chart_values)
    server: prometheus.Prometheus | None = None
    try:
        name, _ = support.deploy_quickstart(real_node, work, NAMESPACE, {"rollout": CANARY})
        monitor = json.loads(
            bed.kubectl("get", "podmonitor", names.pod_monitor(name), "-n", NAMESPACE, "-o", "json").stdout
        )
        server = prometheus.Prometheus(prometheus.pod_monitor_scrape(monitor, bed.kubeconfig)).start()
        endpoint = install.service_endpoint(bed, NAMESPACE, name, work)
        image = infer.read_image(next(work.rglob("*.png")))
        answered, refused = _drive(endpoint, image, 25)
        time.sleep(6)  # at least two scrapes after the last request
        body = support.mdep(real_node, NAMESPACE, name)
        yield Scraped(real_node, body, _triton_pods(real_node, name), server, answered, refused)
    finally:
        if server is not None:
            server.stop()
        support.remove(real_node, NAMESPACE)
        install.helm_uninstall(bed)
        crd_support.remove(real_node.kube, [POD_MONITOR_CRD])


def test_the_pod_monitors_scrape_finds_each_triton_pod_and_no_other(scraped: Scraped) -> None:
    """The scrape job made from the PodMonitor the operator wrote has exactly the model's Triton pods as targets,
    all up, with the target labels the queries select by."""
    targets = scraped.server.targets()
    assert sorted(t["labels"]["pod"] for t in targets) == sorted(p["metadata"]["name"] for p in scraped.pods)
    for target in targets:
        assert target["health"] == "up", target
        assert target["labels"]["namespace"] == NAMESPACE
        assert target["labels"]["container"] == "triton"
        assert target["labels"]["kestrel_model"] == scraped.owner.name


def _scaled_by(scraped: Scraped, metric: str, target: int) -> specs.ModelDeploymentSpec:
    """The served spec with Triton-metric autoscaling: what the operator renders a KEDA ScaledObject from."""
    spec = scraped.spec
    scaling = specs.AutoscalingSpec(metric=metric, target=target)
    return spec.model_copy(update={"serving": spec.serving.model_copy(update={"autoscaling": scaling})})


def test_the_keda_inference_rate_query_counts_what_the_client_sent(scraped: Scraped) -> None:
    """`sum(rate(nv_inference_count{...}[1m]))` selects this model's series and is positive after traffic; the
    counter behind it (the same selector, its largest value in the window) holds every request the client sent
    (Triton counts the ones answered with an error too) and not many more (the operator's serving checks)."""
    query, metric_type = autoscaling.query(_scaled_by(scraped, "inferenceRate", 10), scraped.owner)
    assert metric_type == "AverageValue"
    assert scraped.value(query) > 0
    counted = scraped.value(query.replace("rate(", "max_over_time("))
    sent = scraped.answered + scraped.refused
    assert sent <= counted <= sent + 50, (scraped.answered, scraped.refused, counted)


def test_the_keda_queue_time_query_gives_a_finite_wait(scraped: Scraped) -> None:
    """The queue-time query (mean queue wait per request, in microseconds) selects this model's series: one finite
    value, not an empty result that KEDA would read as an error."""
    query, metric_type = autoscaling.query(_scaled_by(scraped, "queueTime", 50000), scraped.owner)
    assert metric_type == "Value"
    waited_us = scraped.value(query)
    assert math.isfinite(waited_us) and 0 <= waited_us < 10_000_000, waited_us


def _analysis_queries(scraped: Scraped) -> dict[str, str]:
    """The AnalysisTemplate's queries with Argo's canary-hash argument set to the serving pods' template hash."""
    template = argo.analysis_template(scraped.spec, scraped.owner, operator_settings.Settings(engine_store="pvc://x/y"))
    (pod_hash,) = {pod["metadata"]["labels"]["pod-template-hash"] for pod in scraped.pods}
    argument = "{{args." + argo.CANARY_HASH_ARG + "}}"
    return {
        metric["name"]: metric["provider"]["prometheus"]["query"].replace(argument, pod_hash)
        for metric in template["spec"]["metrics"]
    }


def test_the_canary_analysis_error_rate_reads_these_pods_and_holds_refused_input_against_no_one(
    scraped: Scraped,
) -> None:
    """The error-rate query of the AnalysisTemplate, without its `or vector(0)` fallback, still gives one value:
    it selects these pods' series (a wrong label would leave nothing to divide). The value is 0: requests refused
    for their own unusable input are client errors, which Triton counts as answered; the engine's own failures
    are counted as failed (tests/e2e/test_triton_harness.py), so a canary is judged on what the server did."""
    assert scraped.refused > 0
    query = _analysis_queries(scraped)["error-rate"]
    fallback = " or vector(0)"
    assert query.endswith(fallback), query
    assert scraped.value(query.removesuffix(fallback)) == 0.0


def test_the_canary_analysis_p95_latency_reads_tritons_summary(scraped: Scraped) -> None:
    """Triton exports its latency summary (the canary bounds p95), and the AnalysisTemplate's p95 query reads it
    from these pods: a positive latency in milliseconds, not the query's fallback of 0."""
    p95_ms = scraped.value(_analysis_queries(scraped)["p95-latency-ms"])
    assert 0 < p95_ms < 10_000, p95_ms
