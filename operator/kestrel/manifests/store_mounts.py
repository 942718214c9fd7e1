"""How pods reach the engine store and the spec's data: where an engine lives, which claims and Secrets to mount.

No pod gets the store's credentials: an s3:// store is reached through store grants (`storage.grants`), each for
one engine, mounted as a Secret file (never environment variables or arguments, which `kubectl describe` and process
listings show), and only into the pods that read or write that engine.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from kestrel import settings as operator_settings
from kestrel.manifests import files, labels, names, owners

PVC_ROOT = "/mnt/pvc"  # pvc://claim/path is read at <PVC_ROOT>/<claim>/<path>, as `kestrel.engine.fetch` expects
SECRETS_ROOT = "/var/run/secrets/kestrel"
STORE_GRANT_DIR = f"{SECRETS_ROOT}/store"
GRANT_FILE = "grant.json"
STORE_VOLUME = "engine-store"
GRANT_LABEL = "kestrel.dev/store-grant"
GRANT_EXPIRES_ANNOTATION = "kestrel.dev/grant-expires"
# Owner-readable and group-readable: the container runs as the pod's fsGroup, which owns the files.
SECRET_MODE = 0o440


def engine_prefix(settings: operator_settings.Settings, owner: owners.Owner) -> str:
    """Where every engine of one ModelDeployment lives (what its garbage collection walks)."""
    return settings.store.uri(owner.namespace, owner.name)


def engine_uri(settings: operator_settings.Settings, owner: owners.Owner, engine_key: str) -> str:
    """`<store>/<namespace>/<name>/<engine key>`: the build Job writes here, `kestrel load` reads here."""
    return settings.store.uri(owner.namespace, owner.name, engine_key)


GrantKind = Literal["upload", "download", "samples"]
_GRANT_NAMES = {"upload": names.upload_grant, "download": names.download_grant, "samples": names.samples_grant}


def grant_secret(
    owner: owners.Owner, engine_key: str, *, kind: GrantKind, document: str, expires: str
) -> dict[str, Any]:
    """The Secret holding one store grant (`storage.grants`) for the engine `engine_key`, owned by the model.

    A grant is a bearer capability for one engine's objects (`samples`: for the samples folder of a served engine);
    only the pods of that engine mount it.
    """
    name = _GRANT_NAMES[kind]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name(owner.name, engine_key),
            "namespace": owner.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "kestrel",
                "app.kubernetes.io/part-of": "kestrel",
                "kestrel.dev/model": names.label_value(owner.name),
                GRANT_LABEL: kind,
            },
            "annotations": {labels.ENGINE_KEY_ANNOTATION: engine_key, GRANT_EXPIRES_ANNOTATION: expires},
            "ownerReferences": [owner.owner_reference()],
        },
        "type": "Opaque",
        "data": {GRANT_FILE: base64.b64encode(document.encode()).decode()},
    }


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


def store_access(
    settings: operator_settings.Settings, owner: owners.Owner, engine_key: str, *, writable: bool
) -> files.Files:
    """What gives a container the engine store: this model's folder of the claim (pvc://), or the store grant for
    `engine_key` (s3://).

    An s3:// store whose credentials the operator holds (`store_credentials_secret`) is reached through grants
    only: the build Job gets an upload grant for its engine, the loader a download grant for its engine. Neither
    holds a credential, and neither can reach another engine. A pvc:// store is mounted as the sub-path of this
    model's engines only (`<prefix>/<namespace>/<name>`), at the place `storage.pvc` expects it: writable for the
    build, read-only for the loader, so neither sees another model's engines.
    """
    store = settings.store
    if store.scheme == "pvc":
        return _model_folder(settings, owner, writable=writable)
    if settings.store_credentials_secret is None:
        # Ambient credentials (IRSA, GKE workload identity, a node role) need nothing mounted.
        return files.Files()
    grant = names.upload_grant if writable else names.download_grant
    volume = secret_volume("store-grant", grant(owner.name, engine_key), [GRANT_FILE])
    mount = read_only_mount("store-grant", STORE_GRANT_DIR)
    return files.Files((volume,), (mount,), (("store-grant", f"{STORE_GRANT_DIR}/{GRANT_FILE}"),))


def _model_folder(settings: operator_settings.Settings, owner: owners.Owner, *, writable: bool) -> files.Files:
    store = settings.store
    # The kubelet creates a missing sub-path with the mode of the volume's root (and, under a setgid root, its
    # group): a claim whose root the pods' fsGroup may write works as it did when mounted whole.
    sub_path = "/".join(part for part in (store.prefix, owner.namespace, owner.name) if part)
    volume = {"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": store.root, "readOnly": not writable}}
    mount = {
        "name": STORE_VOLUME,
        "mountPath": f"{PVC_ROOT}/{store.root}/{sub_path}",
        "subPath": sub_path,
        "readOnly": not writable,
    }
    return files.Files((volume,), (mount,), (("pvc-root", PVC_ROOT),))
