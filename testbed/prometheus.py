"""A Prometheus server for the test bed: it scrapes what a Prometheus Operator would scrape for a PodMonitor.

No Prometheus Operator runs here (it is a controller with its own images); `pod_monitor_scrape` writes the scrape
job the operator generates for one PodMonitor (the shape of prometheus-operator v0.92's own golden files under
pkg/prometheus/testdata: pod service discovery in the monitor's namespace, the phase filter, a keep rule per
matchLabels entry and for the port name, the `namespace`/`container`/`pod`/`job`/`endpoint` target labels, then
the monitor's own relabelings; sharding left out, as one server has one shard). Only the fields Kestrel's
PodMonitors use are translated; any other field is refused rather than dropped.

Prometheus itself is built from its Go module with Kubernetes service discovery only (components.PROMETHEUS),
listens on loopback and keeps its data in a fresh folder that `stop()` removes (servers.ServerProcess).
"""

from __future__ import annotations

import json
import pathlib
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import yaml

from testbed import build, components, servers
from testbed.ports import free_port

START_TIMEOUT = 60.0

_ENDPOINT_FIELDS = {"port", "path", "interval", "relabelings"}
_RELABEL_FIELDS = {
    "action": "action",
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
}


_PORT_NAME = "__meta_kubernetes_pod_container_port_name"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed; the message says which and quotes what Prometheus said."""


def _label_name(name: str) -> str:
    """A Kubernetes label name as service discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _relabeling(rule: dict[str, Any]) -> dict[str, Any]:
    unknown = set(rule) - set(_RELABEL_FIELDS)
    if unknown:
        raise ValueError(f"relabeling fields {sorted(unknown)} are not translated here")
    return {_RELABEL_FIELDS[key]: value for key, value in rule.items()}


def pod_monitor_scrape(pod_monitor: dict[str, Any], kubeconfig: pathlib.Path) -> list[dict[str, Any]]:
    """The scrape jobs a Prometheus Operator writes for `pod_monitor`, reading pods through `kubeconfig`."""
    meta, spec = pod_monitor["metadata"], pod_monitor["spec"]
    namespace, name = meta["namespace"], meta["name"]
    unknown = set(spec) - {"selector", "podMetricsEndpoints"}
    if unknown or set(spec["selector"]) - {"matchLabels"}:
        raise ValueError(f"PodMonitor {namespace}/{name}: fields {sorted(unknown)} are not translated here")
    keep_labels = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_pod_label_{_label_name(key)}",
                f"__meta_kubernetes_pod_labelpresent_{_label_name(key)}",
            ],
            "regex": f"({value});true",
        }
        for key, value in sorted(spec["selector"].get("matchLabels", {}).items())
    ]
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        if set(endpoint) - _ENDPOINT_FIELDS:
            raise ValueError(f"podMetricsEndpoints fields {sorted(set(endpoint) - _ENDPOINT_FIELDS)} not translated")
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{namespace}/{name}/{index}",
            "honor_labels": False,
            "kubernetes_sd_configs": [
                {"role": "pod", "namespaces": {"names": [namespace]}, "kubeconfig_file": str(kubeconfig)}
            ],
        }
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        if "path" in endpoint:
            job["metrics_path"] = endpoint["path"]
        job["relabel_configs"] = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            *keep_labels,
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": endpoint["port"],
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{namespace}/{name}"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            *(_relabeling(rule) for rule in endpoint.get("relabelings", [])),
        ]
        jobs.append(job)
    return jobs


class Prometheus(servers.ServerProcess):
    """One Prometheus process with the given scrape jobs; `start()` returns once it answers /-/ready."""

    name = "Prometheus"

    def __init__(self, scrape_configs: list[dict[str, Any]], *, evaluation_interval: str = "5s") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-prometheus-"))
        super().__init__(root, root / "prometheus.log")
        config = {"global": {"evaluation_interval": evaluation_interval}, "scrape_configs": scrape_configs}
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> Prometheus:
        build.build(components.PROMETHEUS)
        argv = [
            str(components.PROMETHEUS.binary("prometheus")),
            f"--config.file={self.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.launch(argv)
        try:
            self.wait_ready(self.url + "/-/ready", START_TIMEOUT, PrometheusError)
        except BaseException:
            self.stop()
            raise
        return self

    def _api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise PrometheusError(
                f"{path} {params}: HTTP {error.code}: {error.read().decode(errors='replace')}"
            ) from error
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector `expression` evaluates to now: a list of {"metric": labels, "value": [t, "v"]}."""
        data = self._api("query", query=expression)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expression!r} gave a {data['resultType']}, not an instant vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their labels, health and last error."""
        active: list[dict[str, Any]] = self._api("targets", state="active")["activeTargets"]
        return active

    def __enter__(self) -> Prometheus:
        return self.start()
