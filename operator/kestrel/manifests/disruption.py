"""The PodDisruptionBudget that keeps voluntary evictions (node drains, cluster upgrades) from emptying a model.

`maxUnavailable: 1` for every replica count, rather than `minAvailable`:
- one replica: `minAvailable: 1` would block every drain of its node forever; `maxUnavailable: 1` lets the
  drain proceed (a single replica cannot survive the loss of its node anyway);
- several replicas: `minAvailable: 1` would allow all but one to go at once, and `minAvailable: N-1` must be
  rewritten whenever the autoscaler moves N; `maxUnavailable: 1` means "one at a time" for any N.
"""

from __future__ import annotations

from typing import Any

from kestrel.manifests import labels, names, owners


def pod_disruption_budget(owner: owners.Owner) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names.pod_disruption_budget(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "triton"),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels.selector(owner.name, "triton")},
            # Pods that are not ready (a revision that never came up) serve nothing: evicting them costs nothing
            # and must not wedge a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
