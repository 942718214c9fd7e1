"""Storage: reads the engine store's credentials for the operator itself; owns no condition.

With an s3:// store and `store_credentials_secret` set, the operator reads that Secret of its own namespace through
the API (never from files or logs) and opens the store with it: the engine cache, garbage collection, and the store
grants it signs for the model's pods (`grants`). The credentials never leave the operator: no copy is made in a
model's namespace, and a copy an older operator made is deleted. Without the Secret no grant can be signed, so the
engine reconciler, which owns `Built`, reports `Built=False` with reason `StoreCredentialsMissing` (`Access.problem`).

With an s3:// store and no `store_credentials_secret` (ambient credentials), the operator opens the store with its
own identity (`operator_identity`: keys in its environment, else IRSA's web identity or an ECS or EC2 role), one per
process so that temporary credentials are fetched once and renewed rather than fetched every pass. The pods then use
their own identity too, and get no grant. Where the operator has none, the store's first use says what to set.

A pvc:// store is open to the operator only where its own pod mounts the
claim (`Settings.pvc_root`); otherwise the cache is skipped, and said so once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import os

from kestrel import settings as operator_settings
from kestrel.kube import protocol
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.storage import errors as storage_errors
from kestrel.storage import layout, pvc, s3, store

log = logging.getLogger("kestrel")

MISSING = "StoreCredentialsMissing"
REQUIRED_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Reasons already logged, so that a setting that keeps the operator out of the store is said once per process.
_SAID: set[str] = set()
# Models whose legacy credentials copy this process has removed (or found absent).
_CLEANED: set[str] = set()


@dataclasses.dataclass(frozen=True)
class Access:
    """What one pass found: why pods cannot reach the store yet, and what the operator may open it with."""

    problem: str | None = None
    credentials: s3.Credentials | None = dataclasses.field(default=None, repr=False)
    # True when the operator should sign for the store with its own environment (ambient credentials).
    ambient: bool = False


def _fix(settings: operator_settings.Settings) -> str:
    where = f"{settings.operator_namespace}/{settings.store_credentials_secret}"
    return (
        f"create Secret {where} with the keys {' and '.join(REQUIRED_KEYS)} (and AWS_ENDPOINT_URL, AWS_REGION where "
        f"needed): kubectl -n {settings.operator_namespace} create secret generic "
        f"{settings.store_credentials_secret} --from-literal=AWS_ACCESS_KEY_ID=... "
        "--from-literal=AWS_SECRET_ACCESS_KEY=..., or point the chart's storeCredentialsSecret at an existing one"
    )


def decode(data: dict[str, str]) -> dict[str, str]:
    """A Secret's `data` as text; values that are not base64 UTF-8 are left out (and named by nobody)."""
    decoded: dict[str, str] = {}
    for key, value in data.items():
        try:
            decoded[key] = base64.b64decode(value, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return decoded


def credentials_from_secret(data: dict[str, str]) -> s3.Credentials:
    """`s3.Credentials` from a Secret's `data` as the API returns it; StoreConfigError when keys are missing."""
    values = decode(data)
    # Only the AWS variables count: a Secret is not an environment, and AWS_CA_BUNDLE would name a file here.
    return s3.Credentials.load(None, {key: value for key, value in values.items() if key.startswith("AWS_")})


@functools.cache
def operator_identity() -> s3.Credentials | s3.Ambient:
    """What the operator opens a store with where no Secret is named: keys in its environment, else its ambient
    identity, whose credentials are fetched at the first use and renewed from then on."""
    return s3.load(None, os.environ)


def read_access(kube: protocol.KubeApi, settings: operator_settings.Settings) -> tuple[Access, dict[str, str] | None]:
    """Read the operator-namespace Secret (s3:// with `store_credentials_secret`); its `data` when usable."""
    if settings.store.scheme != "s3":
        return Access(), None
    if settings.store_credentials_secret is None:
        return Access(ambient=True), None
    # A rotation reaches the copies at a spec change (within context.OPERATOR_WIDE_TRUST) or once a pass may no
    # longer trust the last read; a missing Secret is never remembered, so creating it is seen at the next pass.
    source = kube.get(
        "v1",
        "Secret",
        settings.operator_namespace,
        settings.store_credentials_secret,
        cached=True,
        trust=context.OPERATOR_WIDE_TRUST,
    )
    where = f"{settings.operator_namespace}/{settings.store_credentials_secret}"
    if source is None:
        return Access(problem=f"The engine store's credentials Secret {where} does not exist: {_fix(settings)}"), None
    data = source.get("data") or {}
    try:
        credentials = credentials_from_secret(data)
    except storage_errors.StoreConfigError:
        missing = ", ".join(key for key in REQUIRED_KEYS if not decode(data).get(key))
        return Access(problem=f"The engine store's credentials Secret {where} lacks {missing}: {_fix(settings)}"), None
    return Access(credentials=credentials), data


def reconcile(ctx: context.Context, settings: operator_settings.Settings) -> Access:
    """What the operator may open the store with this pass (also kept as `ctx.store_access` for the grants)."""
    access, _ = read_access(ctx.kube, settings)
    ctx.store_access = access
    if access.credentials is not None:
        _remove_legacy_copy(ctx)
    return access


def _remove_legacy_copy(ctx: context.Context) -> None:
    """Delete the credentials copy an operator before store grants made in this model's namespace, where the model
    owns it (once per model and process)."""
    if ctx.uid in _CLEANED:
        return
    ctx.kube.delete("v1", "Secret", ctx.namespace, names.store_credentials(ctx.name), owner=ctx.uid)
    _CLEANED.add(ctx.uid)


def say_once(reason: str) -> None:
    if reason not in _SAID:
        _SAID.add(reason)
        log.info("Skipped the engine cache: %s", reason)


def open_store(settings: operator_settings.Settings, access: Access) -> tuple[store.Store | None, str]:
    """The store as the operator may open it, or None and why not."""
    location = layout.parse_store_uri(settings.engine_store)
    if location.scheme == "pvc":
        if settings.pvc_root is None:
            return None, (
                f"the operator does not mount the claim of {location.uri} (mount it and set KESTREL_PVC_ROOT to the "
                "folder that holds <claim>/)"
            )
        return pvc.PvcStore(location, settings.pvc_root), ""
    if access.credentials is not None:
        return s3.S3Store(location, access.credentials), ""
    if not access.ambient:
        return None, f"the credentials of {location.uri} could not be read ({access.problem or 'no Secret'})"
    try:
        return s3.S3Store(location, operator_identity()), ""
    except storage_errors.StoreConfigError as error:  # one key in the environment without the other
        return None, f"{location.uri}: {error}"


def engine_ref(ctx: context.Context, key: str) -> layout.EngineRef:
    return layout.EngineRef(ctx.namespace, ctx.name, key)


def prefix(settings: operator_settings.Settings, namespace: str, name: str) -> str:
    """Where one ModelDeployment's engines live, for messages."""
    return settings.store.uri(namespace, name)
