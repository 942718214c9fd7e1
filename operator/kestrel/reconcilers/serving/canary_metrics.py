"""Reads the canary pods' Triton metrics, pod by pod, as the canary's analysis needs them; owns no condition.

Each ready canary pod's /metrics page is read at `podIP:8002` (the model's NetworkPolicy admits the operator's
namespace to the metrics port) and the readings are combined: counters added, the p95 the slowest pod's. One pod
at a time, rather than through a Service, because counters are per process: a Service would hand each read to
any pod, and the difference of two pods' counters means nothing. An operator outside the pod network reaches the
pods through the address map (serving/addresses.py, `settings.address_map`). No ready pod, an unreachable pod or a
page without the model's counters is an error, never an empty (and so passing) window. Pages are read through
serving/pod_http.py: a pod is tenant code, so no redirect is followed, the size and time are capped, and no error
quotes what the pod sent.
"""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings
from kestrel.manifests import labels, names, transport
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary_analysis
from kestrel.serving import addresses, metrics, pod_http

TIMEOUT_SECONDS = 5.0


def _ready(pod: dict[str, Any]) -> bool:
    found = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in found.get("conditions") or [])
    return ready and bool(found.get("podIP")) and not pod["metadata"].get("deletionTimestamp")


def canary_pods(ctx: context.Context) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.track_selector(ctx.name, "canary").items())
    return [p for p in ctx.kube.list("v1", "Pod", ctx.namespace, labels=selector) if _ready(p)]


def fetch(address: str, model: str, mapping: dict[str, str]) -> metrics.Reading:
    """GET one pod's /metrics page (through the address map) and read `model` from it; MetricsError otherwise."""
    url = f"http://{addresses.route(address, mapping).address}/metrics"
    try:
        text = pod_http.get(url, timeout=TIMEOUT_SECONDS).decode("utf-8", "replace")
        return metrics.model_reading(metrics.parse(text), model)
    except (OSError, metrics.MetricsError) as error:  # pod_http.PodHTTPError is an OSError
        raise metrics.MetricsError(f"{address} ({url}): {error}") from error


def scrape(ctx: context.Context, settings: operator_settings.Settings, deployment: str) -> canary_analysis.Reading:
    """The canary's combined reading; `deployment` names the canary Deployment whose pods are read."""
    pods = canary_pods(ctx)
    if not pods:
        raise metrics.MetricsError(f"Deployment {deployment} has no ready pod to read metrics from")
    try:
        mapping = addresses.load(settings.address_map)
    except addresses.AddressMapError as error:
        raise metrics.MetricsError(str(error)) from error
    model = names.triton_model(ctx.name)
    found = metrics.combine(fetch(f"{p['status']['podIP']}:{transport.METRICS_PORT}", model, mapping) for p in pods)
    return canary_analysis.Reading(success=found.success, failure=found.failure, p95_ms=found.request_p95_ms())
