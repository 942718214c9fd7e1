"""Apply the generated install manifests to the shared test bed without touching what other suites use.

deploy/kestrel.yaml installs release `kestrel` into kestrel-system: the namespace, ServiceAccount and
ClusterRole the operator suites run under. A test moves every one of those names aside (its own namespace, its
own ServiceAccount and ClusterRole), and applies the CRD under the field manager the suites install it with,
so no second owner appears on a shared object and a later `make crd` still applies without conflicts.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import yaml

CRD_FIELD_MANAGER = "kestrel-tests"  # the manager tests/cluster_fixtures.py installs the CRD with
RELEASE_NAMESPACE = "kestrel-system"
RELEASE_OBJECTS = "kestrel-operator"


def isolated(text: str, *renames: tuple[str, str]) -> tuple[str, str, str]:
    """The manifests with their own operator namespace and object names; return (text, namespace, prefix)."""
    suffix = uuid.uuid4().hex[:8]
    namespace, prefix = f"ki-{suffix}", f"ki{suffix}"
    text = re.sub(rf"\b(name|serviceAccountName): {RELEASE_OBJECTS}", rf"\1: {prefix}-operator", text)
    text = re.sub(rf"\b{RELEASE_NAMESPACE}\b", namespace, text)
    for old, new in renames:
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return text, namespace, prefix


def split(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the CRDs, everything else), in file order."""
    objects = [o for o in yaml.safe_load_all(text) if o]
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    return crds, [o for o in objects if o["kind"] != "CustomResourceDefinition"]


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def apply_crds(kube: Any, crds: list[dict[str, Any]]) -> None:
    """Server-side apply the CRDs under the manager the session's CRD was installed with: one owner, no conflict."""
    kube.kubectl("apply", "--server-side", f"--field-manager={CRD_FIELD_MANAGER}", "-f", "-", stdin=dump(crds))


def delete_model(kube: Any, namespace: str, name: str) -> None:
    """Delete a ModelDeployment while its operator still runs; if its finalizer stays, drop it so nothing leaks."""
    deleted = kube.kubectl(
        "delete", "mdep", name, f"--namespace={namespace}", "--ignore-not-found", "--timeout=60s", check=False
    )
    if deleted.returncode != 0:
        kube.kubectl(
            "patch",
            "mdep",
            name,
            f"--namespace={namespace}",
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def cleanup(kube: Any, namespace: str, prefix: str) -> None:
    kube.kubectl(
        "delete",
        f"clusterrole/{prefix}-operator",
        f"clusterrolebinding/{prefix}-operator",
        "--ignore-not-found",
        check=False,
    )
    kube.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)
