"""Deployments Kestrel applied: a change its owner should report or undo runs the owner's pass at once."""

from __future__ import annotations

from typing import Any

import kopf

from kestrel.handlers import modeldeployment, state
from kestrel.reconcilers import owned, serial


def _owner_pass(namespace: str, name: str) -> None:
    settings, remembered = state.config_().settings, modeldeployment.REGISTRY.get(namespace, name)
    serial.reconcile_named(state.kube(), namespace, name, settings, trust=modeldeployment.TRUST, remembered=remembered)


PASSES = owned.Passes(_owner_pass)


@kopf.on.event("apps", "v1", "deployments", labels={state.MANAGED_BY: "kestrel"})
async def deployment(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    """Async, so it runs on Kopf's event loop: the event is remembered at once, and only a pass takes a thread."""
    key = owned.pass_needed(state.kube(), type or "", dict(body))
    if key is not None:
        PASSES.request(state.executor(), key)
