"""How pods reach the engine store and the spec's data: where an engine lives, which claims and Secrets to mount.

Credentials travel only as mounted Secret files (never environment variables or arguments, which
`kubectl describe` and process listings show), and only into the pods that read or write the store.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from kestrel.manifests import context, files, names

PVC_ROOT = "/mnt/pvc"  # pvc://claim/path is read at <PVC_ROOT>/<claim>/<path>, as `kestrel.engine.fetch` expects
SECRETS_ROOT = "/var/run/secrets/kestrel"
STORE_CREDENTIALS_DIR = f"{SECRETS_ROOT}/store"
# Owner-readable and group-readable: the container runs as the pod's fsGroup, which owns the files.
SECRET_MODE = 0o440


def engine_prefix(settings: context.Settings, owner: context.Owner) -> str:
    """Where every engine of one ModelDeployment lives (what its garbage collection walks)."""
    return settings.store.uri(owner.namespace, owner.name)


def engine_uri(settings: context.Settings, owner: context.Owner, engine_key: str) -> str:
    """`<store>/<namespace>/<name>/<engine key>`: the build Job writes here, `kestrel load` reads here."""
    return settings.store.uri(owner.namespace, owner.name, engine_key)


def credentials_secret(owner: context.Owner, settings: context.Settings, data: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the store's credentials in the model's namespace, owned by (and deleted with) the model.

    `data` is the operator-namespace Secret's `data` as read (base64 values); pods mount this copy.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": names.store_credentials(owner.name),
            "namespace": owner.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "kestrel",
                "app.kubernetes.io/part-of": "kestrel",
                "kestrel.dev/model": names.label_value(owner.name),
            },
            "annotations": {
                "kestrel.dev/copied-from": f"{settings.operator_namespace}/{settings.store_credentials_secret}"
            },
            "ownerReferences": [owner.owner_reference()],
        },
        "type": "Opaque",
        "data": {key: _checked_base64(key, value) for key, value in sorted(data.items())},
    }


def _checked_base64(key: str, value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        raise ValueError(
            f"store credentials: value of {key!r} is not base64 (pass the Secret's data as read)"
        ) from None
    return value


def claims_of(uris: Iterable[str | None]) -> list[str]:
    """The PersistentVolumeClaims that `pvc://` URIs name, sorted and without duplicates."""
    found = {urllib.parse.urlsplit(uri).netloc for uri in uris if uri and uri.startswith("pvc://")}
    return sorted(found)


def claim_volumes(claims: Mapping[str, bool]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts for claims (claim -> writable), each at `<PVC_ROOT>/<claim>`."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    # Volume names are indices: a claim name may be longer than a volume name may be.
    for index, (claim, writable) in enumerate(sorted(claims.items())):
        volume = f"pvc-{index}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable}})
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": not writable})
    return volumes, mounts


def secret_volume(volume: str, secret: str, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """A Secret as files; `keys` limits which of its keys this pod gets."""
    source: dict[str, Any] = {"secretName": secret, "defaultMode": SECRET_MODE}
    if keys is not None:
        source["items"] = [{"key": key, "path": key} for key in keys]
    return {"name": volume, "secret": source}


def read_only_mount(volume: str, path: str) -> dict[str, Any]:
    return {"name": volume, "mountPath": path, "readOnly": True}


def store_access(settings: context.Settings, owner: context.Owner, *, writable: bool) -> files.Files:
    """What gives a container the engine store: the claim (pvc://) or the credentials' files (s3://)."""
    store = settings.store
    if store.scheme == "pvc":
        volumes, mounts = claim_volumes({store.root: writable})
        return files.Files(tuple(volumes), tuple(mounts), (("pvc-root", PVC_ROOT),))
    if settings.store_credentials_secret is None:
        # Ambient credentials (IRSA, GKE workload identity, a node role) need nothing mounted.
        return files.Files()
    volume = secret_volume("store-credentials", names.store_credentials(owner.name))
    mount = read_only_mount("store-credentials", STORE_CREDENTIALS_DIR)
    return files.Files((volume,), (mount,), (("store-credentials", STORE_CREDENTIALS_DIR),))
