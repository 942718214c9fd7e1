"""The restricted Pod Security Standard, applied to every pod and container Kestrel creates."""

from __future__ import annotations

from typing import Any

# Kestrel's images and Triton's (user `triton-server`) both run as uid 1000; a shared fsGroup lets the loader
# write the model repository that Triton then reads.
USER_ID = 1000
# Always emptyDirs of the pod (never the node's directories): the only writable paths a container has.
TMP_DIR = "/tmp"  # noqa: S108
SHM_DIR = "/dev/shm"  # noqa: S108


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    # Every writable path is an explicit emptyDir, so a compromised process cannot persist a change.
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def empty_dir(name: str, size_limit: str, *, memory: bool = False) -> dict[str, Any]:
    """A scratch volume; memory-backed ones count against the pod's memory, so each has a limit."""
    source: dict[str, Any] = {"sizeLimit": size_limit}
    if memory:
        source["medium"] = "Memory"
    return {"name": name, "emptyDir": source}


def mebibytes(value: int) -> str:
    return f"{value}Mi"
