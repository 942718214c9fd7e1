"""What every builder needs besides the spec: the owning ModelDeployment and the operator's settings."""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

import kestrel
from kestrel.api import crd

_VERSION = kestrel.__version__
_REGISTRY = "ghcr.io/kestrel-dev"
_TRITON_RELEASE = "nvcr.io/nvidia/tritonserver:24.10"

StoreScheme = Literal["s3", "pvc"]


@dataclasses.dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns (and garbage-collects) every object built for it."""

    name: str
    namespace: str
    uid: str
    generation: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        """Read the owner from a ModelDeployment as the API server returns it."""
        metadata = body["metadata"]
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 0)),
        )

    def owner_reference(self) -> dict[str, Any]:
        # controller=True lets `kubectl get --show-kind` and the garbage collector name one owner;
        # blockOwnerDeletion keeps a foreground delete of the ModelDeployment waiting for its children.
        return {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclasses.dataclass(frozen=True)
class Store:
    """The operator-wide engine store, parsed: `s3://bucket/prefix` or `pvc://claim/prefix`."""

    scheme: StoreScheme
    root: str  # the bucket or the claim
    prefix: str  # without leading or trailing slash; may be empty

    @classmethod
    def parse(cls, uri: str) -> Store:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme not in ("s3", "pvc") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"engine store {uri!r} is not s3://bucket/prefix or pvc://claim/prefix")
        prefix = parts.path.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"engine store {uri!r} has an empty, '.' or '..' path component")
        scheme: StoreScheme = "s3" if parts.scheme == "s3" else "pvc"
        return cls(scheme=scheme, root=parts.netloc, prefix=prefix)

    def uri(self, *parts: str) -> str:
        # No trailing slash: the form `kestrel.storage.layout` writes, so URIs compare equal across modules.
        path = "/".join(p for p in (self.prefix, *parts) if p)
        return f"{self.scheme}://{self.root}/{path}" if path else f"{self.scheme}://{self.root}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator-wide configuration (the chart's values), the same for every ModelDeployment."""

    engine_store: str
    # A Secret in the operator's namespace with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally
    # AWS_ENDPOINT_URL, AWS_REGION); only the operator reads it: pods get store grants (`reconcilers.engine.grants`).
    store_credentials_secret: str | None = None
    operator_namespace: str = "kestrel-system"
    # The Helm release the operator was installed as: its pods carry it as `app.kubernetes.io/instance`
    # (labels.operator_selector), which is how a model's NetworkPolicy admits the operator and no other pod there.
    operator_instance: str = "kestrel"
    builder_image: str = f"{_REGISTRY}/kestrel-builder:{_VERSION}"
    # TensorRT engines are built (and profiled) on the GPU they serve on, which needs CUDA in the image. Jetsons
    # build with `builder_image` (published for arm64 too): no Jetson TensorRT builder exists yet.
    builder_gpu_image: str = f"{_REGISTRY}/kestrel-builder:{_VERSION}-gpu"
    # The loader image also runs the Triton pods' TLS proxy (`kestrel tls-proxy`).
    loader_image: str = f"{_REGISTRY}/kestrel-loader:{_VERSION}"
    triton_image: str = f"{_TRITON_RELEASE}-py3"
    # CPU targets served by the Python runtime: Kestrel's own Triton (docker/triton-cpu.Dockerfile), the CPU build
    # of the same server with only the Python backend and what Kestrel's Python models use (ONNX Runtime,
    # OpenVINO), several GB smaller than NVIDIA's image.
    triton_cpu_image: str = f"{_REGISTRY}/kestrel-triton-cpu:{_VERSION}"
    triton_igpu_image: str = f"{_TRITON_RELEASE}-py3-igpu"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    # Namespaces whose pods may scrape Triton's metrics port through each model's NetworkPolicy
    # (KESTREL_SCRAPER_NAMESPACES, the chart's modelMetrics.scrapeNamespaces); empty: none, only the operator's pods.
    scraper_namespaces: tuple[str, ...] = ("monitoring",)
    # A Prometheus Operator PodMonitor per model where its CRD is installed (KESTREL_POD_MONITOR), scraping every
    # `pod_monitor_interval`, with these labels for a Prometheus that selects PodMonitors by label
    # (KESTREL_POD_MONITOR_LABELS, e.g. release=prometheus).
    pod_monitor: bool = True
    pod_monitor_interval: str = "30s"
    pod_monitor_labels: tuple[tuple[str, str], ...] = ()
    # Long enough for an operator that was down to still read the result from the pod; the result is also
    # stored beside the engine, so a Job collected earlier costs a cache lookup, not a rebuild.
    build_ttl_seconds: int = 86400
    # Where the operator's own pod mounts claims (KESTREL_PVC_ROOT), for the engine cache and garbage collection
    # of a pvc:// store; None: the operator cannot see the claim and leaves the store to the pods.
    pvc_root: pathlib.Path | None = None
    # The operator as a client of each served model (reconcilers/serving/checks.py): after a rollout one inference
    # through the Service gates Available, and every pass reads Triton's metrics into status. Off
    # (KESTREL_SERVING_CHECKS=false) only where no real Triton answers, e.g. kwok-simulated nodes; status then says
    # they were not run.
    serving_checks: bool = True
    # KESTREL_ADDRESS_MAP: a JSON file mapping in-cluster "host:port" to where this operator reaches them, for an
    # operator outside the pod network (serving/addresses.py); None: dial cluster addresses directly.
    address_map: pathlib.Path | None = None
    # Secrets every pod Kestrel creates pulls its images with (KESTREL_IMAGE_PULL_SECRETS, the chart's
    # imagePullSecrets): a private registry or mirror. The kubelet reads them in the pod's own namespace, so each
    # model namespace needs its copy; the operator neither reads nor copies them.
    image_pull_secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Store.parse(self.engine_store)  # fail at start-up, not at the first build

    @property
    def store(self) -> Store:
        return Store.parse(self.engine_store)
