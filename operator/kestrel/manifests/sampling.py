"""What a Triton pod needs to sample live requests (spec.monitoring.sampling, `serving.backends.sampling`).

The Triton container gets the KEK's public key (the Secret the operator derives it into, that one key), so it can
seal samples and open none; and a place for them, in the served engine's own folder of the store
(`<namespace>/<name>/<engine key>/samples/`), so that they are collected with the engine:

- s3://: an upload grant for that folder only (`NAME-samples-KEY8-grant`, objects of at most
  `layout.MAX_SAMPLE_SIZE`), renewed by the operator; the pod reads the file again for each upload, so a renewed
  grant needs no restart;
- pvc://: that folder of the claim, mounted writable by itself (a sub-path: the engine beside it stays out of reach).

Nothing is rendered while sampling is off: the Deployment stays what it was.
"""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import files, names, owners, secrets
from kestrel.manifests import store_mounts as store
from kestrel.serving.backends import sampling
from kestrel.storage import layout

KEY_DIR = f"{store.SECRETS_ROOT}/samples-key"
GRANT_DIR = f"{store.SECRETS_ROOT}/samples-grant"
MOUNT_DIR = "/var/run/kestrel/samples"


def folder(owner: owners.Owner, engine_key: str) -> str:
    """The samples folder below the store's prefix: what each sample's seal is bound to."""
    return f"{owner.namespace}/{owner.name}/{engine_key}/{layout.SAMPLES_DIR}"


def triton(
    spec: specs.ModelDeploymentSpec, owner: owners.Owner, settings: operator_settings.Settings, engine_key: str
) -> tuple[files.Files, list[dict[str, str]]]:
    """Volumes, mounts and environment of the Triton container; empty while sampling is off."""
    wanted = spec.monitoring.sampling
    if not wanted.enabled:
        return files.Files(), []
    key = store.secret_volume("samples-key", names.kek_public_secret(owner.name), [secrets.KEK_PUBLIC_KEY])
    parts = files.Files((key,), (store.read_only_mount("samples-key", KEY_DIR),))
    env = {
        sampling.RATE_ENV: str(wanted.rate_per_minute),
        sampling.MAX_BYTES_ENV: str(wanted.max_bytes_per_day),
        sampling.INCLUDE_ENV: ",".join(wanted.include),
        sampling.PUBLIC_KEY_ENV: f"{KEY_DIR}/{secrets.KEK_PUBLIC_KEY}",
        sampling.FOLDER_ENV: folder(owner, engine_key),
    }
    if settings.store.scheme == "pvc":
        sub_path = "/".join(p for p in (settings.store.prefix, folder(owner, engine_key)) if p)
        volume: dict[str, Any] = {
            "name": "samples-store",
            "persistentVolumeClaim": {"claimName": settings.store.root, "readOnly": False},
        }
        mount = {"name": "samples-store", "mountPath": MOUNT_DIR, "subPath": sub_path}
        parts += files.Files((volume,), (mount,))
        env[sampling.DIR_ENV] = MOUNT_DIR
    else:
        grant = store.secret_volume("samples-grant", names.samples_grant(owner.name, engine_key), [store.GRANT_FILE])
        parts += files.Files((grant,), (store.read_only_mount("samples-grant", GRANT_DIR),))
        env[sampling.GRANT_ENV] = f"{GRANT_DIR}/{store.GRANT_FILE}"
    return parts, [{"name": name, "value": value} for name, value in env.items()]
