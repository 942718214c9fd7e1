"""The build Job: `kestrel build` turns the checkpoint into a validated engine, bound for the store.

The pod gets no API token and no API access: the spec arrives as a file (the pod's own annotation through
the downward API, frozen with the Job's immutable template), the engine goes to the store, and the result
comes back as JSON in the container's termination message, which the operator reads from the pod status.

One Job per engine key, created once and never updated: a Job's pod template is immutable, and a spec
change that does not change the key (replicas, a deadline) must not touch a build that is already running.
"""

from __future__ import annotations

import json
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
    pull_secrets,
    store_mounts,
)

CONTAINER = "build"
SPEC_DIR = "/etc/kestrel/spec"
SPEC_FILE = "spec.json"
WORK_DIR = "/work"
OUT_DIR = f"{WORK_DIR}/out"
TERMINATION_LOG = "/dev/termination-log"  # where `kestrel build` writes its result (KESTREL_TERMINATION_LOG)
SOURCE_CREDENTIALS_DIR = f"{store_mounts.SECRETS_ROOT}/source"
# `kestrel build` exits 2 when the engine was built but failed the gate (and argparse on a bad command line):
# a retry would build the same engine and fail the same way, so the Job fails at once instead.
EXIT_GATE_FAILED = 2
DEFAULT_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}
# Exported ONNX/TensorRT intermediates of a large model plus the calibration and validation images.
WORK_SIZE_LIMIT = "20Gi"
SHM_SIZE_LIMIT = "1Gi"  # PyTorch's data loaders pass batches through /dev/shm


def image(settings: operator_settings.Settings, target: specs.TargetSpec) -> str:
    # A Jetson (igpu) builds its onnx and torchscript engines with the CPU builder's arm64 image: the API refuses
    # the formats that would need Jetson's own TensorRT (spec.py).
    return settings.builder_gpu_image if placement.hardware(target) == "gpu" else settings.builder_image


def spec_document(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> str:
    """The spec file the build reads; its `metadata.name` names the model in the Triton repository."""
    document = {"metadata": {"name": names.triton_model(owner.name)}, "spec": spec.to_wire()}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def build_job(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings, engine_key: str
) -> dict[str, Any]:
    """The Job `NAME-build-KEY8` that builds the engine with key `engine_key` for `spec`."""
    job_labels = labels.common(owner.name, "build", engine_key)
    annotations = {labels.ENGINE_KEY_ANNOTATION: engine_key}
    pod_annotations = {**annotations, labels.SPEC_ANNOTATION: spec_document(spec, owner)}
    inputs = _inputs(spec, settings)
    publish = _publish(spec, owner, settings, engine_key)
    container = {
        "name": CONTAINER,
        "image": image(settings, spec.target),
        "command": ["kestrel"],
        "args": ["build", "--spec", f"{SPEC_DIR}/{SPEC_FILE}", "--out", OUT_DIR, *inputs.flags()],
        "env": [
            # Ultralytics and friends write caches under $HOME; the root filesystem is read-only.
            {"name": "HOME", "value": WORK_DIR},
            {"name": "YOLO_CONFIG_DIR", "value": f"{WORK_DIR}/.ultralytics"},
            {"name": "TMPDIR", "value": hardening.TMP_DIR},
            {"name": "KESTREL_TERMINATION_LOG", "value": TERMINATION_LOG},
            *publish.env(),
        ],
        "resources": placement.resources(
            spec.engine.build.resources,
            DEFAULT_RESOURCES,
            # One device builds the engine whatever the serving count; a MIG slice builds for that slice.
            placement.accelerator_limits(spec.target, count=1),
        ),
        "volumeMounts": [*inputs.mounts, *publish.mounts],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": hardening.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": hardening.pod_security_context(),
        "containers": [container],
        "volumes": [*inputs.volumes, *publish.volumes],
    }
    placement.apply(pod_spec, spec.target)
    pull_secrets.apply(pod_spec, settings)
    build = spec.engine.build
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.build_job(owner.name, engine_key),
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": dict(annotations),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "backoffLimit": build.backoff_limit,
            "activeDeadlineSeconds": build.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.build_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_GATE_FAILED]},
                    },
                    # A preempted or drained build is not a failed build: it must not use up the retries.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {"metadata": {"labels": dict(job_labels), "annotations": pod_annotations}, "spec": pod_spec},
        },
    }


def _inputs(spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings) -> files.Files:
    """What `kestrel build` reads, as its own flags: the spec file, scratch space, data claims, source credentials.

    Data claims are read-only, whole; a pvc:// store is mounted by `_publish`, as this model's folder only.
    """
    volumes: list[dict[str, Any]] = [
        {
            "name": "spec",
            "downwardAPI": {
                "items": [
                    {"path": SPEC_FILE, "fieldRef": {"fieldPath": f"metadata.annotations['{labels.SPEC_ANNOTATION}']"}}
                ]
            },
        },
        hardening.empty_dir("work", WORK_SIZE_LIMIT),
        hardening.empty_dir("tmp", "1Gi"),
        hardening.empty_dir("shm", SHM_SIZE_LIMIT, memory=True),
    ]
    mounts: list[dict[str, Any]] = [
        store_mounts.read_only_mount("spec", SPEC_DIR),
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "tmp", "mountPath": hardening.TMP_DIR},
        {"name": "shm", "mountPath": hardening.SHM_DIR},
    ]
    data_uris = [
        spec.model.source.uri,
        spec.engine.calibration.dataset if spec.engine.calibration else None,
        spec.engine.prune.dataset if spec.engine.prune else None,
        spec.validation.dataset,
    ]
    claims = dict.fromkeys(store_mounts.claims_of(data_uris), False)
    options: list[tuple[str, str]] = []
    if claims:
        claim_volumes, claim_mounts = store_mounts.claim_volumes(claims)
        volumes += claim_volumes
        mounts += claim_mounts
        options.append(("pvc-root", store_mounts.PVC_ROOT))
    source = spec.model.source.credentials_secret
    if source:
        volumes.append(store_mounts.secret_volume("source-credentials", source))
        mounts.append(store_mounts.read_only_mount("source-credentials", SOURCE_CREDENTIALS_DIR))
        options.append(("credentials-dir", SOURCE_CREDENTIALS_DIR))
    return files.Files(tuple(volumes), tuple(mounts), tuple(options))


def _publish(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings, engine_key: str
) -> files.Files:
    """Where the built engine goes and what seals it, as `KESTREL_*` variables: the store, the keys."""
    destination = files.Files(
        options=(("engine-uri", store_mounts.engine_uri(settings, owner, engine_key)), ("engine-key", engine_key))
    )
    access = store_mounts.store_access(settings, owner, engine_key, writable=True)
    encryption = key_volumes.encryption_public(owner, spec.security.encryption)
    return files.total([destination, access, key_volumes.signing(owner, "sign"), encryption])
