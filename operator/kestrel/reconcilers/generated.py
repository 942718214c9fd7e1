"""Secrets a model's pass generates once and keeps (its signing key, its API key): created, never replaced.

Created with a POST, not applied: applies under one field manager never conflict, so an apply after a stale read
would replace a key that is already in use (signatures of stored engines, clients holding the API key). A create
that finds the Secret there fails instead, and the one that is there stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kestrel.api import errors
from kestrel.kube import ownership
from kestrel.reconcilers import context


def create_once(ctx: context.Context, name: str, make: Callable[[], dict[str, Any]]) -> bool:
    """Make the Secret `name` of the model's namespace unless it exists; True when this pass made it.

    A model's first pass skips the read (`Context.first_pass`): a request per Secret and new model saved, and the
    create still finds one left by a pass that failed before its status write. A Secret of that name that the model
    does not own is nobody's key to hand out: NameConflictError (from the create, too)."""
    if not ctx.first_pass:
        found = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
        ownership.require(found, ctx.uid)
        if found is not None:
            return False
    try:
        ctx.kube.create(make())
    except errors.ConflictError:
        return False
    return True
