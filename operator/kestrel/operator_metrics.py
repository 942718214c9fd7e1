"""The operator's own Prometheus metrics: how often it reconciles, how long that takes, what it reports.

Every Event the operator records is counted by type and reason, so builds started, gates failed, rollouts
completed and rollbacks are all visible without a metric per code path.
"""

from __future__ import annotations

import contextlib

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
BUILD_SECONDS = prometheus_client.Histogram(
    "kestrel_build_duration_seconds",
    "Build Jobs this operator saw finish, by outcome (succeeded, gate_failed, failed): the Job's start to its end, "
    "as the cluster recorded them. Cache hits run no build and are not counted.",
    ["outcome"],
    buckets=(30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
)
CERTIFICATE_EXPIRY = prometheus_client.Gauge(
    "kestrel_certificate_expiry_timestamp_seconds",
    "When the server certificate a model serves with expires (Unix time); absent while TLS is off.",
    ["namespace", "name"],
)
# The series that name one model: removed when it is deleted, so a dashboard never shows models that are gone.
PER_MODEL = (READY, CERTIFICATE_EXPIRY)


def forget_model(namespace: str, name: str) -> None:
    """Remove every series of the model `namespace/name` (those never set are skipped)."""
    for metric in PER_MODEL:
        forget(metric, namespace, name)


def forget(metric: prometheus_client.Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set for this model
        metric.remove(*labels)


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the pod
    """Expose /metrics on `port` from a background thread."""
    prometheus_client.start_http_server(port, addr=address)
