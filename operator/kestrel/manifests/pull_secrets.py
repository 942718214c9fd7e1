"""The registry credentials of every pod Kestrel creates: the operator-wide `imagePullSecrets` setting.

A cluster behind a private registry or a pull-through mirror names its pull Secrets once, in the chart; the build
Job and the Triton pods (Deployment, canary, Argo Rollout) then pull with them. Left out when none are set, so an
install without them renders the same objects as before the setting existed.
"""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings


def apply(pod_spec: dict[str, Any], settings: operator_settings.Settings) -> dict[str, Any]:
    """Add the pull Secrets to a pod spec, and return it."""
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return pod_spec
