"""The Triton Deployment (stable or canary) and the per-model ServiceAccount its pods run as.

An init container, `kestrel load`, fetches the engine repository from the store, verifies its signature
and hashes, and decrypts it into a memory-backed volume; Triton then serves exactly that model with
explicit model control and strict config, so nothing it loads was not built, validated and signed.
"""

from __future__ import annotations

import math
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import (
    files,
    hardening,
    key_volumes,
    labels,
    names,
    owners,
    placement,
    pod_lifecycle,
    pull_secrets,
    sampling,
    store_mounts,
    transport,
)
from kestrel.serving.backends import drift

MODELS_DIR = "/models"  # the memory-backed volume's mount point
# The repository is a folder inside the volume: `kestrel load` stages beside its target and renames the staging
# folder onto it, which cannot work on the mount point itself (EBUSY), nor beside it on a read-only root.
REPOSITORY_DIR = f"{MODELS_DIR}/repository"
DEFAULT_MODELS_MIB = 4096  # when the engine's size is not known yet
MODELS_HEADROOM = 1.1
LOADER_MEMORY_MIB = 512  # the loader streams in constant memory; this is its own working set
DEFAULT_CPU_REQUEST = "1"
DEFAULT_MEMORY_REQUEST = "2Gi"
DEFAULT_SERVER_MEMORY_MIB = 8192  # Triton itself: host copies of the engine, batches, the backends' runtimes
REVISION_HISTORY = 2  # rollback re-applies `revision.previous` by engine key; old ReplicaSets are not needed


def image(spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings) -> str:
    if spec.serving.triton.image:
        return spec.serving.triton.image
    hardware = placement.hardware(spec.target)
    if hardware == "cpu" and spec.serving.triton.runtime == "python":
        # Kestrel's CPU Triton carries the Python backend only: native models (Triton's onnxruntime and openvino
        # backends) keep NVIDIA's image, which runs them on CPU too.
        return settings.triton_cpu_image
    return settings.triton_igpu_image if hardware == "igpu" else settings.triton_image


def models_mib(engine_size_bytes: int | None) -> int:
    if engine_size_bytes is None:
        return DEFAULT_MODELS_MIB
    return math.ceil(engine_size_bytes * MODELS_HEADROOM / 2**20) + 64


def service_account(owner: owners.Owner) -> dict[str, Any]:
    """Triton needs no API access: its own account, with no token mounted, keeps RBAC grants elsewhere off it."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": names.service_account(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "triton"),
            "ownerReferences": [owner.owner_reference()],
        },
        "automountServiceAccountToken": False,
    }


def deployment(
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
    """The stable Deployment serving `engine_key`; without `replicas` when an autoscaler owns the count."""
    replicas = None if spec.serving.autoscaling else (1 if spec.serving.replicas is None else spec.serving.replicas)
    return _deployment(
        spec,
        owner,
        settings,
        engine_key,
        track="stable",
        replicas=replicas,
        load_seconds=load_seconds,
        tls_checksum=tls_checksum,
        api_key_id=api_key_id,
        engine_size_bytes=engine_size_bytes,
    )


def canary_deployment(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    *,
    replicas: int,
    load_seconds: float = pod_lifecycle.DEFAULT_LOAD_SECONDS,
    tls_checksum: str | None = None,
    api_key_id: str | None = None,
    engine_size_bytes: int | None = None,
) -> dict[str, Any]:
    """The canary Deployment serving the new `engine_key` beside the stable one, behind the same Service."""
    return _deployment(
        spec,
        owner,
        settings,
        engine_key,
        track="canary",
        replicas=replicas,
        load_seconds=load_seconds,
        tls_checksum=tls_checksum,
        api_key_id=api_key_id,
        engine_size_bytes=engine_size_bytes,
    )


def canary_replicas(spec: specs.ModelDeploymentSpec, percent: int) -> int:
    """Canary pods for a step: `percent` of the serving count, at least one (the Service splits by pods)."""
    total = spec.serving.autoscaling.min if spec.serving.autoscaling else (spec.serving.replicas or 1)
    return max(1, math.ceil(total * percent / 100))


def _deployment(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    *,
    track: labels.Track,
    replicas: int | None,
    load_seconds: float,
    tls_checksum: str | None,
    api_key_id: str | None,
    engine_size_bytes: int | None,
) -> dict[str, Any]:
    pod_labels = {**labels.common(owner.name, "triton", engine_key), labels.TRACK: track}
    # A new engine, a renewed certificate or a rotated API key changes the template, and so rolls the pods.
    annotations = {labels.ENGINE_KEY_ANNOTATION: engine_key}
    if tls_checksum is not None:
        annotations[labels.TLS_CHECKSUM_ANNOTATION] = tls_checksum
    if api_key_id is not None:
        annotations[labels.API_KEY_ID_ANNOTATION] = api_key_id
    pod_annotations = {
        **annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(transport.METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    models = models_mib(engine_size_bytes)
    init_containers = [_loader(spec, owner, settings, engine_key, models)]
    proxy = transport.tls_proxy(spec, settings)
    if proxy is not None:
        init_containers.append(proxy)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": names.service_account(owner.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": pod_lifecycle.termination_grace_seconds(),
        "securityContext": hardening.pod_security_context(),
        "initContainers": init_containers,
        "containers": [_server(spec, owner, settings, engine_key, load_seconds=load_seconds, models=models)],
        "volumes": _volumes(spec, owner, settings, engine_key, models),
        "topologySpreadConstraints": [
            {
                # Spread when possible, never refuse to schedule: a GPU pool may well be a single node.
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels.track_selector(owner.name, track)},
            }
        ],
    }
    placement.apply(pod_spec, spec.target)
    pull_secrets.apply(pod_spec, settings)
    deployment_spec: dict[str, Any] = {}
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec |= {
        "selector": {"matchLabels": labels.track_selector(owner.name, track)},
        # A new revision is added before an old one goes: capacity never drops during a rollout.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": REVISION_HISTORY,
        "template": {"metadata": {"labels": dict(pod_labels), "annotations": pod_annotations}, "spec": pod_spec},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.triton(owner.name) if track == "stable" else names.canary(owner.name),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "annotations": dict(annotations),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": deployment_spec,
    }


def _loader(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    models: int,
) -> dict[str, Any]:
    reads = _loader_files(spec, owner, settings, engine_key)
    return {
        "name": "load",
        "image": settings.loader_image,
        "command": ["kestrel"],
        "args": [
            "load",
            "--from",
            store_mounts.engine_uri(settings, owner, engine_key),
            "--to",
            REPOSITORY_DIR,
            *reads.flags(),
            # Refuses a plaintext engine, however validly signed, once the spec asks for encryption.
            *(["--require-encryption"] if spec.security.encryption.enabled else []),
        ],
        # Pages written to a memory-backed volume are charged to the writer: the loader's limit must hold the
        # whole decrypted repository, or it is OOM-killed on the last file.
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": hardening.mebibytes(models + LOADER_MEMORY_MIB)},
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": hardening.TMP_DIR},
            *reads.mounts,
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": hardening.container_security_context(),
    }


def _loader_files(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings, engine_key: str
) -> files.Files:
    """What `kestrel load` reads: the store, the verify key, and the key-encryption key of an encrypted engine."""
    return files.total(
        [
            store_mounts.store_access(settings, owner, engine_key, writable=False),
            key_volumes.signing(owner, "verify"),
            key_volumes.encryption(spec.security.encryption),
        ]
    )


def _server(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    *,
    load_seconds: float,
    models: int,
) -> dict[str, Any]:
    model = names.triton_model(owner.name)
    samples, samples_env = sampling.triton(spec, owner, settings, engine_key)
    container: dict[str, Any] = {
        "name": "triton",
        "image": image(spec, settings),
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={REPOSITORY_DIR}",
            "--model-control-mode=explicit",
            f"--load-model={model}",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            f"--exit-timeout-secs={pod_lifecycle.EXIT_TIMEOUT_SECONDS}",
            *transport.server_args(spec),
        ],
        "ports": transport.container_ports(spec),
        "resources": _resources(spec, models),
        "startupProbe": pod_lifecycle.startup(load_seconds, transport.probe_port(spec)),
        "livenessProbe": pod_lifecycle.liveness(transport.probe_port(spec)),
        "readinessProbe": pod_lifecycle.readiness(owner.name, transport.probe_port(spec)),
        "lifecycle": pod_lifecycle.lifecycle(),
        "volumeMounts": [
            store_mounts.read_only_mount("models", MODELS_DIR),
            {"name": "shm", "mountPath": hardening.SHM_DIR},
            {"name": "tmp", "mountPath": hardening.TMP_DIR},
            *transport.tls_mounts(spec),
            *samples.mounts,
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": hardening.container_security_context(),
    }
    drift_spec = spec.monitoring.drift
    # The served model's drift window (serving/backends/drift.py); 0 turns its metrics off.
    window = {"name": drift.WINDOW_ENV, "value": str(drift_spec.window if drift_spec.enabled else 0)}
    container["env"] = [*transport.server_env(spec, owner), window, *samples_env]
    return container


def _resources(spec: specs.ModelDeploymentSpec, models: int) -> dict[str, Any]:
    # RAM-backed volumes count against the pod's memory limit, which is the sum of its containers' limits:
    # the default limit makes room for the model repository (charged to the pod once the loader exits)
    # and /dev/shm (charged to Triton, which writes it) on top of Triton's own use.
    memory = DEFAULT_SERVER_MEMORY_MIB + models + pod_lifecycle.shm_mib(spec.serving.triton.instances)
    defaults = {
        "requests": {"cpu": DEFAULT_CPU_REQUEST, "memory": DEFAULT_MEMORY_REQUEST},
        "limits": {"memory": hardening.mebibytes(memory)},
    }
    rendered = placement.resources(spec.serving.triton.resources, defaults, placement.accelerator_limits(spec.target))
    if spec.serving.autoscaling is not None:
        # CPU utilization is a share of the request: without one an HPA (or the CPU fallback) cannot scale.
        rendered.setdefault("requests", {}).setdefault("cpu", DEFAULT_CPU_REQUEST)
    return rendered


def _volumes(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    settings: operator_settings.Settings,
    engine_key: str,
    models: int,
) -> list[dict[str, Any]]:
    volumes = [
        # Plaintext weights live only in RAM: they vanish with the pod and never touch the node's disk.
        hardening.empty_dir("models", hardening.mebibytes(models), memory=True),
        pod_lifecycle.shm_volume(spec.serving.triton.instances),
        hardening.empty_dir("tmp", "1Gi"),
    ]
    return [
        *volumes,
        *_loader_files(spec, owner, settings, engine_key).volumes,
        *transport.tls_volumes(spec, owner),
        *sampling.triton(spec, owner, settings, engine_key)[0].volumes,
    ]
