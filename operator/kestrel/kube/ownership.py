"""Which objects a ModelDeployment owns: those whose ownerReferences carry its uid, and no others.

Child names are derived from the model's name, so a model named `web` asks for `web-tls`, `web-api-key` and the
Service `web`, names someone else may already use. Kestrel writes, deletes, or trusts what it reads of an object of
such a name only when the object is absent or carries the model's uid: a name match, or labels anyone can set, prove
nothing.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import errors

Body = dict[str, Any]


def controller_uid(body: Body) -> str | None:
    """The uid of the manifest's controller reference: whose child it is; None for an object of nobody's."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def owned_by(found: Body, uid: str) -> bool:
    """Whether `found` names `uid` among its owners."""
    return any(ref.get("uid") == uid for ref in found.get("metadata", {}).get("ownerReferences") or [])


def conflict(found: Body) -> errors.NameConflictError:
    """The error that stops a pass at `found`, naming it."""
    meta = found.get("metadata", {})
    return errors.NameConflictError(str(found.get("kind")), meta.get("namespace"), str(meta.get("name")))


def require(found: Body | None, uid: str) -> None:
    """NameConflictError when `found` exists without `uid` among its owners."""
    if found is not None and not owned_by(found, uid):
        raise conflict(found)
