"""The operator's configuration, read once from its environment (the Helm chart sets it)."""

from __future__ import annotations

import dataclasses
import os
import pathlib

from kestrel.manifests import context

PREFIX = "KESTREL_"


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    settings: context.Settings
    watch_namespaces: tuple[str, ...]


def from_environment(environ: dict[str, str] | None = None) -> OperatorConfig:
    """Build the configuration; a missing or malformed variable names itself in the error."""
    env = dict(os.environ if environ is None else environ)
    store = env.get(f"{PREFIX}ENGINE_STORE")
    if not store:
        raise ValueError(f"{PREFIX}ENGINE_STORE is required: s3://bucket/prefix or pvc://claim/prefix")
    overrides = {
        field.name: env[f"{PREFIX}{field.name.upper()}"]
        for field in dataclasses.fields(context.Settings)
        if field.name != "engine_store"
        and f"{PREFIX}{field.name.upper()}" in env
        and field.type in ("str", "str | None")
    }
    pvc_root = env.get(f"{PREFIX}PVC_ROOT")
    settings = context.Settings(
        engine_store=store,
        pvc_root=pathlib.Path(pvc_root) if pvc_root else None,
        **overrides,  # type: ignore[arg-type]
    )
    namespaces = tuple(n for n in env.get(f"{PREFIX}WATCH_NAMESPACES", "").split(",") if n)
    return OperatorConfig(
        settings=settings,
        watch_namespaces=namespaces,
    )


def resync_interval() -> float:
    """Seconds between drift checks of each ModelDeployment; read at import, when Kopf registers the timer."""
    return float(os.environ.get(f"{PREFIX}RESYNC_SECONDS", "30"))
