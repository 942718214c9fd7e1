"""What a canary step must show on Triton's metrics to be promoted, as PromQL over the canary's own pods.

Both canary forms use these queries: the operator's own stepping (two Deployments; canary pods named
`NAME-triton-canary-…`) and Argo Rollouts (one Rollout; canary pods carry the new pod-template hash in their
names). They need the scraper to label series with `namespace` and `pod`, as the model's PodMonitor does
(pod_monitor.py: target labels of every PodMonitor scrape) and hand-written Kubernetes service discovery usually does;
`model` is Triton's own label.
A window without traffic reads as 0 (a pass): the analysis judges the requests a canary served, and a
canary with none has served none badly.
"""

from __future__ import annotations

from kestrel.api import base
from kestrel.api import spec as specs
from kestrel.manifests import names, owners

# Triton's counters and its (opt-in) latency summary; the summary needs `--metrics-config=summary_latencies=true`.
SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
LATENCY_SUMMARY = "nv_inference_request_summary_us"


def window(canary: specs.CanarySpec) -> str:
    """The step's analysis window in whole seconds: Prometheus ranges take no fractions ("1.5m")."""
    return f"{max(1, int(base.parse_duration(canary.interval)))}s"


def canary_pods(owner: owners.Owner) -> str:
    """A regular expression for the pods of the operator-stepped canary Deployment."""
    return f"{names.canary(owner.name)}-.*"


def _selector(owner: owners.Owner, pods: str) -> str:
    return f'namespace="{owner.namespace}",model="{names.triton_model(owner.name)}",pod=~"{pods}"'


def error_rate(owner: owners.Owner, pods: str, range_: str) -> str:
    """Failed requests as a fraction of all requests the matching pods answered in the window."""
    selector = _selector(owner, pods)
    failed = f"sum(rate({FAILURE}{{{selector}}}[{range_}]))"
    answered = f"sum(rate({SUCCESS}{{{selector}}}[{range_}])) + {failed}"
    return f"({failed} / clamp_min({answered}, 0.001)) or vector(0)"


def p95_latency_ms(owner: owners.Owner, pods: str) -> str:
    """The worst pod's 95th-percentile request latency, in milliseconds.

    Quantiles of a summary cannot be averaged across pods; the slowest pod is the honest bound.
    """
    return f'(max({LATENCY_SUMMARY}{{{_selector(owner, pods)},quantile="0.95"}}) / 1000) or vector(0)'


def needs_latency_summary(spec: specs.ModelDeploymentSpec) -> bool:
    """Whether Triton must export the latency summary that the p95 criterion reads."""
    canary = spec.rollout.canary
    return spec.rollout.strategy == "canary" and canary is not None and canary.analysis.max_p95_latency_ms is not None
