"""The PromQL Kestrel writes (KEDA's trigger, Argo's analysis, the canary criteria) selects only labels that a
series scraped through the model's PodMonitor carries: the Prometheus Operator's target labels, the PodMonitor's
relabelings, and Triton's own labels. And the PodMonitor writes none of Triton's, which would rename them."""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import analysis, autoscaling, owners, pod_monitor
from testbed import build, components, prometheus
from tests.unit import test_manifests_golden as golden
from tests.unit.spec_support import UNMEASURED

# What the Prometheus Operator sets on every target of a PodMonitor, whatever the PodMonitor says (its generated
# scrape configuration, pkg/prometheus/promcfg.go: namespace, container and pod from service discovery, job as
# NAMESPACE/NAME, endpoint as the port's name).
TARGET_LABELS = {"namespace", "container", "pod", "job", "endpoint"}
# Triton's own labels on its per-model series (nv_inference_*), and the quantile of its latency summary.
TRITON_LABELS = {"model", "version", "quantile"}
OWNER = owners.Owner(name="cams", namespace="vision", uid="u-1")
SETTINGS = operator_settings.Settings(engine_store="s3://engines")


def selected_labels(promql: str) -> set[str]:
    """Every label name a selector of `promql` matches on (string contents, Argo's {{args}} too, left out)."""
    unquoted = re.sub(r'"[^"]*"', '""', promql)
    found: set[str] = set()
    for selector in re.findall(r"\{([^{}]*)\}", unquoted):
        found |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    return found


def scraped_labels(monitor: dict[str, Any]) -> set[str]:
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    written = {r["targetLabel"] for endpoint in endpoints for r in endpoint.get("relabelings", [])}
    return TARGET_LABELS | written | TRITON_LABELS


def written_queries() -> list[Any]:
    """Every query in a rendered ScaledObject or AnalysisTemplate of the golden cases, and each KEDA metric's."""
    found = []
    for case, kind, obj in golden.rendered():
        if obj["kind"] == "ScaledObject":
            found += [(f"{case.name}/{kind}", t["metadata"]["query"]) for t in obj["spec"]["triggers"]]
        if obj["kind"] == "AnalysisTemplate":
            found += [(f"{case.name}/{kind}", m["provider"]["prometheus"]["query"]) for m in obj["spec"]["metrics"]]
    for metric in ("queueTime", "inferenceRate"):
        parsed = specs.parse(
            {
                "model": {"source": {"uri": "file:///models/m.pt"}},
                "validation": UNMEASURED,
                "serving": {"autoscaling": {"min": 1, "max": 3, "metric": metric, "target": 10}},
            }
        )
        found.append((f"keda/{metric}", autoscaling.query(parsed, OWNER)[0]))
    pods = analysis.canary_pods(OWNER)
    found += [("error-rate", analysis.error_rate(OWNER, pods, "60s")), ("p95", analysis.p95_latency_ms(OWNER, pods))]
    return [pytest.param(query, id=name) for name, query in found]


@pytest.mark.parametrize("query", written_queries())
def test_every_label_a_query_selects_is_on_the_scraped_series(query: str) -> None:
    labels = selected_labels(query)
    assert {"namespace", "model"} <= labels  # each query is confined to this model's series
    missing = labels - scraped_labels(pod_monitor.pod_monitor(OWNER, SETTINGS))
    assert not missing, f"{query} selects {sorted(missing)}, which a PodMonitor scrape does not give"


def test_the_label_check_can_fail() -> None:
    query = 'sum(rate(nv_inference_count{namespace="vision",kestrel_track="canary",pod=~"x-{{args.h}}-.*"}[1m]))'
    assert selected_labels(query) == {"namespace", "kestrel_track", "pod"}
    assert selected_labels(query) - scraped_labels(pod_monitor.pod_monitor(OWNER, SETTINGS)) == {"kestrel_track"}


def test_the_pod_monitor_renames_none_of_tritons_labels() -> None:
    # With honorLabels off, a target label named like one of Triton's turns Triton's into `exported_<name>`.
    monitor = pod_monitor.pod_monitor(OWNER, SETTINGS)
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert not endpoint.get("honorLabels", False)
        written = {r["targetLabel"] for r in endpoint.get("relabelings", [])}
        assert not written & (TRITON_LABELS | TARGET_LABELS)


def test_every_series_names_its_model_deployment() -> None:
    (endpoint,) = pod_monitor.pod_monitor(OWNER, SETTINGS)["spec"]["podMetricsEndpoints"]
    (relabeling,) = endpoint["relabelings"]
    # The pod label kestrel.dev/model, as Kubernetes service discovery spells it.
    assert relabeling["sourceLabels"] == ["__meta_kubernetes_pod_label_kestrel_dev_model"]
    assert relabeling["targetLabel"] == pod_monitor.MODEL_LABEL


@pytest.mark.slow
def test_the_test_beds_scrape_of_the_pod_monitor_is_a_configuration_promtool_accepts(tmp_path: pathlib.Path) -> None:
    """The scrape job testbed/prometheus.py makes of the model's PodMonitor (what the real-node suite's Prometheus
    runs) is valid Prometheus configuration, keeps only pods with every selector label, and writes `pod`."""
    build.build(components.PROMTOOL)  # cached with the test bed's components
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    monitor = pod_monitor.pod_monitor(OWNER, SETTINGS)
    (job,) = prometheus.pod_monitor_scrape(monitor, kubeconfig)
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert len(keeps) == len(monitor["spec"]["selector"]["matchLabels"]) + 1  # and the port's name
    assert {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"} in job["relabel_configs"]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [job]}))
    promtool = str(components.PROMTOOL.binary("promtool"))
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
