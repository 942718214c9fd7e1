"""The fake nodes kwok keeps alive: GPU nodes of two products, CPU nodes and arm64 Jetson edge nodes."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

FAKE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_PRODUCTS = ("NVIDIA-A10G", "NVIDIA-L4")
EDGE_PRODUCT = "NVIDIA-Jetson-AGX-Orin"

# kwok's "fast" stages: nodes become Ready at once and renew a Lease; pods scheduled on them become Ready
# at once, complete when their containers would, and go away when deleted.
STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def kwok_stages(stage_root: pathlib.Path) -> str:
    """The stage definitions kwok plays, concatenated into one config file."""
    return "\n---\n".join((stage_root / name).read_text().strip() for name in STAGE_FILES) + "\n"


def node(
    name: str, *, arch: str = "amd64", gpu_product: str | None = None, gpus: int = 0, cpu: str = "32"
) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "type": "kwok",
    }
    capacity = {"cpu": cpu, "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    if gpu_product:
        labels["nvidia.com/gpu.product"] = gpu_product
        labels["nvidia.com/gpu.count"] = str(gpus)
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {FAKE_ANNOTATION: "fake"}},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def render(*, gpu_nodes: int, cpu_nodes: int, edge_nodes: int) -> str:
    """All fake nodes as one multi-document YAML."""
    objects = []
    for product in GPU_PRODUCTS:
        slug = product.removeprefix("NVIDIA-").lower()
        objects += [node(f"gpu-{slug}-{i}", gpu_product=product, gpus=4) for i in range(gpu_nodes)]
    objects += [node(f"cpu-{i}") for i in range(cpu_nodes)]
    objects += [node(f"edge-{i}", arch="arm64", gpu_product=EDGE_PRODUCT, gpus=1, cpu="12") for i in range(edge_nodes)]
    return yaml.safe_dump_all(objects, sort_keys=False)
