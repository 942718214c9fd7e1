"""Deployments Kestrel applied: a change its owner should report or undo runs the owner's pass at once."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import kopf

from kestrel import settings as operator_settings
from kestrel.handlers import modeldeployment, state
from kestrel.runtime import owned, serial

_pool: dict[str, concurrent.futures.ThreadPoolExecutor] = {}


def _owner_pass(namespace: str, name: str) -> None:
    configuration, remembered = state.config_(), modeldeployment.REGISTRY.get(namespace, name)
    serial.reconcile_named(
        state.kube(), namespace, name, configuration.settings, trust=configuration.trust, remembered=remembered
    )


PASSES = owned.Passes(_owner_pass)


def start_owned_passes(configuration: operator_settings.Configuration) -> None:
    """A few threads of their own, not Kopf's pool: there a model whose pods became ready waited behind every queued
    first pass, so with many new models at once most reported Ready long after their pods were (bench/scale.py)."""
    _pool["executor"] = concurrent.futures.ThreadPoolExecutor(
        configuration.side_threads, thread_name_prefix="kestrel-owned"
    )


def stop_owned_passes() -> None:
    found = _pool.pop("executor", None)
    if found is not None:
        found.shutdown(wait=True, cancel_futures=True)


@kopf.on.event("apps", "v1", "deployments", labels={state.MANAGED_BY: "kestrel"})
async def deployment(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    """Async, so it runs on Kopf's event loop: the event is remembered at once, and only a pass takes a thread."""
    key = owned.pass_needed(state.kube(), type or "", dict(body))
    if key is not None:
        PASSES.request(_pool["executor"], key)
