"""The operator's own Prometheus metrics: how often it reconciles, how long that takes, what it reports.

Every Event the operator records is counted by type and reason, so builds started, gates failed, rollouts
completed and rollbacks are all visible without a metric per code path.
"""

from __future__ import annotations

import prometheus_client

RECONCILES = prometheus_client.Counter(
    "kestrel_reconciles", "Reconcile passes over ModelDeployments, by result.", ["result"]
)
RECONCILE_SECONDS = prometheus_client.Histogram(
    "kestrel_reconcile_duration_seconds",
    "Time one reconcile pass takes, API calls included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS = prometheus_client.Counter(
    "kestrel_events", "Events recorded on ModelDeployments, by type and reason.", ["type", "reason"]
)
API_REQUESTS = prometheus_client.Counter(
    "kestrel_api_requests",
    "Requests Kestrel's own client sent to the Kubernetes API (not Kopf's watches), by verb and resource.",
    ["verb", "resource"],
)
REQUESTS_SAVED = prometheus_client.Counter(
    "kestrel_api_requests_saved",
    "Applies, reads and deletes Kestrel's client answered from what a pass recently confirmed, not the API server.",
    ["verb"],
)
READY = prometheus_client.Gauge(
    "kestrel_model_deployment_ready", "1 when the ModelDeployment's Ready condition is True.", ["namespace", "name"]
)


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the pod
    """Expose /metrics on `port` from a background thread."""
    prometheus_client.start_http_server(port, addr=address)
