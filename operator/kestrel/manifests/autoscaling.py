"""The autoscaler of the stable Triton Deployment: an HPA on CPU, or a KEDA ScaledObject on Triton's metrics.

The caller says whether KEDA's CRDs exist; without them a Triton metric falls back to CPU at the default
utilization (`uses_keda` tells the caller, which should say so in an Event), because an HPA on a custom
metric would need a metrics adapter that is no more likely to be installed than KEDA.
"""

from __future__ import annotations

from typing import Any, Literal

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners

TargetKind = Literal["Deployment", "Rollout"]
_TARGET_API_VERSIONS: dict[TargetKind, str] = {"Deployment": "apps/v1", "Rollout": "argoproj.io/v1alpha1"}
DEFAULT_CPU_UTILIZATION = 70
RATE_WINDOW = "1m"
# Keeps the queue-time ratio at 0 rather than NaN when no request arrived in the window.
MIN_REQUEST_RATE = "0.001"


def uses_keda(spec: specs.ModelDeploymentSpec, *, keda_available: bool) -> bool:
    scaling = spec.serving.autoscaling
    return scaling is not None and scaling.metric != "cpu" and keda_available


def autoscaler(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    *,
    keda_available: bool,
    target_kind: TargetKind = "Deployment",
) -> dict[str, Any] | None:
    """The one autoscaler the spec asks for, or None with fixed replicas; it scales the stable workload."""
    if spec.serving.autoscaling is None:
        return None
    if uses_keda(spec, keda_available=keda_available):
        return scaled_object(spec, owner, settings, target_kind=target_kind)
    return horizontal_pod_autoscaler(spec, owner, target_kind=target_kind)


def _metadata(owner: owners.Owner) -> dict[str, Any]:
    return {
        "name": names.autoscaler(owner.name),
        "namespace": owner.namespace,
        "labels": labels.common(owner.name, "triton"),
        "ownerReferences": [owner.owner_reference()],
    }


def _target(owner: owners.Owner, kind: TargetKind) -> dict[str, str]:
    # The Argo Rollout takes the stable Deployment's name, so only the kind tells them apart.
    return {"apiVersion": _TARGET_API_VERSIONS[kind], "kind": kind, "name": names.triton(owner.name)}


def _scaling(spec: specs.ModelDeploymentSpec) -> specs.AutoscalingSpec:
    if spec.serving.autoscaling is None:
        raise ValueError("spec.serving.autoscaling is not set")
    return spec.serving.autoscaling


def horizontal_pod_autoscaler(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, *, target_kind: TargetKind = "Deployment"
) -> dict[str, Any]:
    scaling = _scaling(spec)
    utilization = scaling.target if scaling.metric == "cpu" else DEFAULT_CPU_UTILIZATION
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner),
        "spec": {
            "scaleTargetRef": _target(owner, target_kind),
            "minReplicas": scaling.min,
            "maxReplicas": scaling.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}},
                }
            ],
        },
    }


def query(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> tuple[str, str]:
    """The PromQL query and KEDA metric type for a Triton metric, over every pod serving this model."""
    scaling = _scaling(spec)
    # Triton labels its metrics with the model; the scrape adds the namespace (a PodMonitor's target label, see
    # pod_monitor.py; Kubernetes service discovery's in a hand-written scrape configuration).
    selector = f'{{namespace="{owner.namespace}",model="{names.triton_model(owner.name)}"}}'
    if scaling.metric == "queueTime":
        queued = f"sum(rate(nv_inference_queue_duration_us{selector}[{RATE_WINDOW}]))"
        requests = f"sum(rate(nv_inference_request_success{selector}[{RATE_WINDOW}]))"
        # A mean wait per request does not add up over pods: compare it as a value, not per replica.
        return f"{queued} / clamp_min({requests}, {MIN_REQUEST_RATE})", "Value"
    if scaling.metric == "inferenceRate":
        return f"sum(rate(nv_inference_count{selector}[{RATE_WINDOW}]))", "AverageValue"
    raise ValueError(f"spec.serving.autoscaling.metric {scaling.metric!r} is not a Triton metric")


def scaled_object(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    *,
    target_kind: TargetKind = "Deployment",
) -> dict[str, Any]:
    scaling = _scaling(spec)
    promql, metric_type = query(spec, owner)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(owner),
        "spec": {
            "scaleTargetRef": _target(owner, target_kind),
            "minReplicaCount": scaling.min,
            "maxReplicaCount": scaling.max,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": metric_type,
                    "metadata": {
                        "serverAddress": settings.prometheus_url,
                        "query": promql,
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }
