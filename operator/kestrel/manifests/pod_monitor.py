"""The Prometheus Operator's PodMonitor of one model: how a Prometheus it runs finds Triton's metrics.

The Prometheus Operator ignores the pods' `prometheus.io/*` annotations (kept for the Prometheus setups that read
them) and scrapes only what a PodMonitor or ServiceMonitor selects. One PodMonitor per model selects every Triton
pod of it, stable and canary and an Argo Rollout's alike, by the labels the Service selects them by, and scrapes
the container port named `metrics`.

What the KEDA query (autoscaling.query) and the canary analysis (analysis.py) select by comes from that scrape:
`namespace` and `pod` are target labels the Prometheus Operator gives every series of a PodMonitor (with
`container`, `endpoint` and `job`), and `model` is Triton's own label on its per-model series. `honorLabels` stays
off, and no relabeling here writes `model`: Prometheus would rename Triton's own label to `exported_model`, and the
queries would find nothing. The one added label, `kestrel_model`, names the ModelDeployment on every series,
including Triton's GPU and CPU series, which carry no `model`.
"""

from __future__ import annotations

import re
from typing import Any

from kestrel import settings as operator_settings
from kestrel.manifests import labels, names, owners

API_VERSION = "monitoring.coreos.com/v1"
PORT = "metrics"  # the Triton container's port (transport.container_ports)
PATH = "/metrics"
MODEL_LABEL = "kestrel_model"


def _pod_label(name: str) -> str:
    """The service-discovery meta label of a pod label: every character Prometheus refuses becomes `_`."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_monitor(owner: owners.Owner, settings: operator_settings.Settings) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": {
            "name": names.pod_monitor(owner.name),
            "namespace": owner.namespace,
            # The setting's labels let a Prometheus whose podMonitorSelector asks for them (release: prometheus)
            # pick this one; Kestrel's own cannot be overridden (kestrel/settings.py refuses them).
            "labels": {**dict(settings.pod_monitor_labels), **labels.common(owner.name, "triton")},
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "selector": {"matchLabels": labels.selector(owner.name, "triton")},
            "podMetricsEndpoints": [
                {
                    "port": PORT,
                    "path": PATH,
                    "interval": settings.pod_monitor_interval,
                    "relabelings": [
                        {
                            "action": "replace",
                            "sourceLabels": [_pod_label(labels.MODEL)],
                            "targetLabel": MODEL_LABEL,
                        }
                    ],
                }
            ],
        },
    }
