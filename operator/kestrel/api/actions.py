"""Requests a person makes of the operator, as annotations on the ModelDeployment (`kestrel canary promote|abort`).

An annotation, not a spec field: a request is an event, not desired state. The operator removes it once it has acted
on it, or found nothing to act on, so the same request can be made again later. Not under `kestrel.dev/`: Kopf keeps
its own records under that prefix (handlers/state.py) and leaves every annotation there out of the changes it
reacts to, so a request there would wait for the next drift check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

CANARY_ACTION = "canary.kestrel.dev/action"

CanaryAction = Literal["promote", "abort"]
PROMOTE: CanaryAction = "promote"
ABORT: CanaryAction = "abort"
CANARY_ACTIONS: tuple[CanaryAction, ...] = (PROMOTE, ABORT)


def requested(metadata: Mapping[str, Any], annotation: str) -> str | None:
    """The value of a request annotation in an object's metadata, or None when it is not set."""
    found = (metadata.get("annotations") or {}).get(annotation)
    return str(found) if found is not None else None
