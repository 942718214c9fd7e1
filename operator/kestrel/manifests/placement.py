"""Where a pod runs and which accelerators it gets: the serving hardware, for the build Job and Triton alike.

TensorRT engines are specific to the GPU they were built on, so the build is placed exactly like serving:
same product label, same architecture, same tolerations, same MIG slice.
"""

from __future__ import annotations

from typing import Any, Literal

from kestrel.api import spec as specs

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ARCH_LABEL = "kubernetes.io/arch"
# The NVIDIA device plugin's taint on GPU nodes (GKE, AKS and the GPU Operator's docs all use it).
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

Hardware = Literal["cpu", "gpu", "igpu"]


def architecture(target: specs.TargetSpec) -> str:
    if target.architecture is not None:
        return target.architecture
    return "arm64" if target.environment == "edge" else "amd64"


def hardware(target: specs.TargetSpec) -> Hardware:
    """cpu, a discrete GPU, or an edge device's integrated GPU (Jetson): what picks the image flavour."""
    if target.gpu is None:
        return "cpu"
    return "igpu" if target.environment == "edge" else "gpu"


def gpu_resource_name(gpu: specs.GpuSpec) -> str:
    # With the device plugin's "mixed" MIG strategy each profile is its own extended resource.
    return f"nvidia.com/mig-{gpu.mig}" if gpu.mig else GPU_RESOURCE


def accelerator_limits(target: specs.TargetSpec, count: int | None = None) -> dict[str, int]:
    """Extended-resource limits (their requests default to the limits); `count` overrides the spec's."""
    if target.gpu is None:
        return {}
    return {gpu_resource_name(target.gpu): target.gpu.count if count is None else count}


def node_selector(target: specs.TargetSpec) -> dict[str, str]:
    selector = {ARCH_LABEL: architecture(target)}
    if target.gpu is not None and target.gpu.product:
        selector[GPU_PRODUCT_LABEL] = target.gpu.product
    # The user's labels come last: they may narrow the choice (a site, a pool), and they win on a clash.
    return {**selector, **(target.node_selector or {})}


def tolerations(target: specs.TargetSpec) -> list[dict[str, Any]]:
    declared = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in target.tolerations or []]
    if target.gpu is not None and GPU_TOLERATION not in declared:
        declared.append(dict(GPU_TOLERATION))
    return declared


def resources(
    declared: specs.ResourcesSpec, defaults: dict[str, dict[str, str]], gpus: dict[str, int]
) -> dict[str, Any]:
    """Container resources: the spec's when given (else `defaults`), plus the GPU limits placement needs."""
    given = declared.requests or declared.limits
    requests = dict(declared.requests or {}) if given else dict(defaults.get("requests", {}))
    limits: dict[str, int | str] = dict(declared.limits or {}) if given else dict(defaults.get("limits", {}))
    for resource, count in gpus.items():
        limits.setdefault(resource, count)
    rendered: dict[str, Any] = {}
    if requests:
        rendered["requests"] = requests
    if limits:
        rendered["limits"] = limits
    return rendered


def apply(pod_spec: dict[str, Any], target: specs.TargetSpec) -> dict[str, Any]:
    """Add node selector, tolerations and runtime class to a pod spec, and return it."""
    pod_spec["nodeSelector"] = node_selector(target)
    found = tolerations(target)
    if found:
        pod_spec["tolerations"] = found
    if target.runtime_class_name:
        pod_spec["runtimeClassName"] = target.runtime_class_name
    return pod_spec
