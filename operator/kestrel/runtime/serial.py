"""One pass at a time per ModelDeployment, on a body at least as new as the status this process last wrote.

Kopf runs the change handlers of one object one after another, but its timers beside them, and handlers of
other resources (the Deployment events of `owned`) on their own. Two passes over one model at once would race:
both read the same old status, both emit the same Events, and the slower one's merge patch undoes the faster
one's. So every pass runs under a per-object lock. A lock rather than routing every trigger through the
ModelDeployment's own handler (an annotation touch): that costs a write, a watch event and Kopf's own patches
for each trigger, and the pass would wait for the round trip; the lock costs nothing when nobody else holds it.

A pass also needs the newest status: a watch event can still carry the status from before the previous pass's
write. A body whose status is not the one this process last stored is read again first (`get_model_deployment`);
an unchanged one, the usual case, costs no request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from kestrel import settings as operator_settings
from kestrel.kube import client
from kestrel.reconcilers import context, run

_guard = threading.Lock()
_locks: dict[tuple[str, str], threading.Lock] = {}
_stored: dict[str, bytes] = {}  # uid -> digest of the status the API server stored after this process's last pass
_passed: dict[str, float] = {}  # uid -> when this process last finished a pass over it (time.monotonic)


def _lock(namespace: str, name: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _meta(body: dict[str, Any]) -> tuple[str, str, str]:
    meta = body["metadata"]
    return str(meta["namespace"]), str(meta["name"]), str(meta["uid"])


def _digest(status: dict[str, Any]) -> bytes:
    """Equal statuses, whatever their key order, give equal digests: 32 bytes kept per model, not its whole status."""
    return hashlib.sha256(json.dumps(status, sort_keys=True, separators=(",", ":")).encode()).digest()


def _pass(kube: client.Kube, body: dict[str, Any], settings: operator_settings.Settings) -> context.Context | None:
    _, _, uid = _meta(body)
    ctx = run.reconcile(kube, body, settings)
    if ctx.stored_status is not None:
        _stored[uid] = _digest(ctx.stored_status)
    _passed[uid] = time.monotonic()
    return ctx


def _current(body: dict[str, Any]) -> bool:
    uid = str(body["metadata"].get("uid", ""))
    return uid in _stored and _digest(body.get("status") or {}) == _stored[uid]


def passed_within(body: dict[str, Any], seconds: float) -> bool:
    """Whether a pass over this object (any trigger) finished in the last `seconds`: the drift check skips it then."""
    at = _passed.get(_meta(body)[2])
    return at is not None and time.monotonic() - at < seconds


def reconcile(
    kube: client.Kube, body: dict[str, Any], settings: operator_settings.Settings, *, trust: float
) -> context.Context | None:
    """A pass over `body` (as a handler received it), trusting what was confirmed within `trust` seconds.

    None when the object turned out to be gone or being deleted.
    """
    namespace, name, uid = _meta(body)
    with _lock(namespace, name):
        view = kube.view(trust)
        if uid in _stored and not _current(body):
            fresh = view.get_model_deployment(namespace, name)
            if fresh is None or fresh["metadata"].get("uid") != uid or fresh["metadata"].get("deletionTimestamp"):
                return None
            body = fresh
        return _pass(view, body, settings)


def reconcile_named(
    kube: client.Kube,
    namespace: str,
    name: str,
    settings: operator_settings.Settings,
    *,
    trust: float,
    remembered: dict[str, Any] | None = None,
) -> context.Context | None:
    """A pass over the ModelDeployment as stored now, for triggers that have no body of it (owned objects).

    `remembered`: the body its last watch event brought; used without a request when its status is the one this
    process last stored (nothing has written it since), else the object is read."""
    with _lock(namespace, name):
        view = kube.view(trust)
        body = remembered if remembered is not None and _current(remembered) else None
        if body is None:
            body = view.get_model_deployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        return _pass(view, body, settings)


def forget(body: dict[str, Any]) -> None:
    """Drop what is kept about a ModelDeployment that is gone."""
    namespace, name, uid = _meta(body)
    with _guard:
        _locks.pop((namespace, name), None)
        _stored.pop(uid, None)
        _passed.pop(uid, None)
