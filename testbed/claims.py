"""Claims backed by a folder of this machine: a hostPath PersistentVolume pre-bound to its claim.

The quickstart's model claim (the fixture detector and its validation images) and engine store claim, for the
demo and the end-to-end suites, on the process kubelet and on the real node alike.
"""

from __future__ import annotations

import pathlib
from typing import Any


def objects(claim: str, path: pathlib.Path, namespace: str) -> list[dict[str, Any]]:
    """A hostPath PersistentVolume pre-bound to the claim, and the claim."""
    volume = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    ]


def open_to_pods(path: pathlib.Path) -> None:
    """Let the uid Kestrel's images run as read and write the folder: a hostPath volume ignores fsGroup."""
    path.mkdir(parents=True, exist_ok=True)
    for item in (path, *path.rglob("*")):
        item.chmod(0o777 if item.is_dir() else 0o666)
