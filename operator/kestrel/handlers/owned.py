"""Deployments Kestrel applied: a change its owner should report or undo runs the owner's pass at once."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kestrel.api import errors
from kestrel.handlers import modeldeployment, state
from kestrel.reconcilers import owned

Logger = logging.Logger | logging.LoggerAdapter[Any]


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": "kestrel"})
def deployment(*, type: str | None, body: kopf.Body, logger: Logger, **_: Any) -> None:
    try:
        owned.deployment_changed(
            state.kube(), state.config_().settings, type or "", dict(body), trust=modeldeployment.TRUST
        )
    except errors.KestrelError as error:
        # Not retried here: the owner's own handlers and its timer pass again and report it in its status.
        logger.warning("Did not pass over the owner of Deployment %s: %s", body.meta.get("name"), error)
