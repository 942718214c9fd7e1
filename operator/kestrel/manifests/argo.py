"""The canary in Argo Rollouts' terms, for clusters that run it: a `Rollout` and its `AnalysisTemplate`.

The Rollout replaces the stable Deployment (same name, same pod template, same selector), so the Service, PDB
and autoscaler stay as they are; only the autoscaler's target kind changes (`autoscaling.autoscaler(...,
target_kind="Rollout")`). Without traffic routing Argo splits traffic by pod counts, as the operator's own
canary does. A failed analysis aborts the rollout, which scales the canary away: the rollback.
"""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import analysis, labels, names, owners, pod_lifecycle, triton

API_VERSION = "argoproj.io/v1alpha1"
CANARY_HASH_ARG = "canary-hash"


def _canary(spec: specs.ModelDeploymentSpec) -> specs.CanarySpec:
    if spec.rollout.canary is None:
        raise ValueError("spec.rollout.canary is not set: an Argo Rollout is only built for the canary strategy")
    return spec.rollout.canary


def rollout(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    *,
    load_seconds: float = pod_lifecycle.DEFAULT_LOAD_SECONDS,
    tls_checksum: str | None = None,
    api_key_id: str | None = None,
    engine_size_bytes: int | None = None,
) -> dict[str, Any]:
    """The stable Deployment's pod template, rolled out by Argo in the spec's canary steps."""
    canary = _canary(spec)
    deployment = triton.deployment(
        spec,
        owner,
        settings,
        engine_key,
        load_seconds=load_seconds,
        tls_checksum=tls_checksum,
        api_key_id=api_key_id,
        engine_size_bytes=engine_size_bytes,
    )
    pause = analysis.window(canary)
    steps: list[dict[str, Any]] = []
    for weight in canary.steps[:-1]:  # the last step is 100: Argo promotes after the final analysis
        steps += [
            {"setWeight": weight},
            {"pause": {"duration": pause}},
            {
                "analysis": {
                    "templates": [{"templateName": names.triton(owner.name)}],
                    "args": [{"name": CANARY_HASH_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}}],
                }
            },
        ]
    rollout_spec = {key: value for key, value in deployment["spec"].items() if key != "strategy"}
    rollout_spec["strategy"] = {"canary": {"maxSurge": 1, "maxUnavailable": 0, "steps": steps}}
    # Past the deadline, abort (and so roll back) rather than wait: what the operator does for Deployments.
    rollout_spec["progressDeadlineAbort"] = spec.rollout.auto_rollback
    return {"apiVersion": API_VERSION, "kind": "Rollout", "metadata": deployment["metadata"], "spec": rollout_spec}


def analysis_template(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings
) -> dict[str, Any]:
    """Error rate (and p95 latency when the spec bounds it) of the canary's pods over one step's window."""
    canary = _canary(spec)
    # Argo names canary pods `<rollout>-<pod-template-hash>-<random>`.
    pods = f"{names.triton(owner.name)}-{{{{args.{CANARY_HASH_ARG}}}}}-.*"
    metrics: list[dict[str, Any]] = [
        _metric(
            "error-rate",
            analysis.error_rate(owner, pods, analysis.window(canary)),
            canary.analysis.max_error_rate,
            settings,
        )
    ]
    if canary.analysis.max_p95_latency_ms is not None:
        metrics.append(
            _metric(
                "p95-latency-ms", analysis.p95_latency_ms(owner, pods), canary.analysis.max_p95_latency_ms, settings
            )
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": names.triton(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "triton"),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {"args": [{"name": CANARY_HASH_ARG}], "metrics": metrics},
    }


def _metric(name: str, query: str, bound: float, settings: operator_settings.Settings) -> dict[str, Any]:
    return {
        "name": name,
        "count": 1,
        "failureLimit": 0,
        "successCondition": f"result[0] <= {bound}",
        "provider": {"prometheus": {"address": settings.prometheus_url, "query": query}},
    }
