"""Secrets a model's pass generates once and keeps (its signing key, its API key): created, never replaced; owns no
condition.

Created with a POST, not applied: applies under one field manager never conflict, so an apply after a stale read
would replace a key that is already in use (signatures of stored engines, clients holding the API key). A create
that finds the Secret there fails instead, and the one that is there stays.

A first pass that finds one there was preceded by a pass that made it and stopped before its status write (killed,
or its API server gone): that pass never said so, so this one does (`Made.UNREPORTED`); the fault campaign's crash
points found the Event missing otherwise (tests/faults/).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from kestrel.api import errors
from kestrel.kube import ownership
from kestrel.reconcilers import context


class Made(enum.Enum):
    CREATED = "created"  # by this pass
    UNREPORTED = "unreported"  # there, never reported: made by a pass that stopped before saying so
    FOUND = "found"  # there, and reported by an earlier pass

    def __bool__(self) -> bool:
        """Whether this pass must announce the Secret (it made it, or found it unannounced)."""
        return self is not Made.FOUND

    def said(self, created: str) -> str:
        """An Event's message about the Secret: `created` ("Created ... Secret x"), or what was found instead."""
        if self is Made.UNREPORTED:
            return f"{created} (found, not yet reported: made by a pass that stopped before saying so)"
        return created


def create_once(ctx: context.Context, name: str, make: Callable[[], dict[str, Any]]) -> Made:
    """Make the Secret `name` of the model's namespace unless it exists; whether to announce it (`Made`).

    A model's first pass skips the read (`Context.first_pass`): a request per Secret and new model saved, and the
    create still finds one left by a pass that failed before its status write. A Secret of that name that the model
    does not own is nobody's key to hand out: NameConflictError (from the create, too)."""
    if not ctx.first_pass:
        found = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
        ownership.require(found, ctx.uid)
        if found is not None:
            return Made.FOUND
    try:
        ctx.kube.create(make())
    except errors.ConflictError:
        return Made.UNREPORTED if ctx.first_pass else Made.FOUND
    return Made.CREATED
