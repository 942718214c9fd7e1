"""ModelDeployment handlers: create, update, resume and a drift timer all run the same reconcile().

A spec change (create, update, resume) trusts nothing remembered: every child is applied and read. The timer
trusts what was confirmed within `config.trust_interval()`, so a quiet model costs (almost) no requests.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kestrel.api import crd, errors
from kestrel.handlers import config, state
from kestrel.reconcilers import run, serial

Logger = logging.Logger | logging.LoggerAdapter[Any]
RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)
TRUST = config.trust_interval()


def _reconcile(body: kopf.Body, logger: Logger, trust: float = 0.0) -> None:
    try:
        serial.reconcile(state.kube(), dict(body), state.config_().settings, trust=trust)
    except errors.SpecError as error:
        raise kopf.PermanentError(str(error)) from error
    except errors.TransientError as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error
    except errors.ClusterError as error:
        # Refusals (RBAC, a namespace being deleted, admission) may clear up: retry slowly, say why, no traceback.
        raise kopf.TemporaryError(str(error), delay=30) from error


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(*, body: kopf.Body, logger: Logger, **_: Any) -> None:
    _reconcile(body, logger)


@kopf.timer(*RESOURCE, interval=config.resync_interval(), initial_delay=1.0, idle=None)
def resync(*, body: kopf.Body, logger: Logger, **_: Any) -> None:
    _reconcile(body, logger, trust=TRUST)


@kopf.on.delete(*RESOURCE)
def delete(*, body: kopf.Body, retry: int, logger: Logger, **_: Any) -> None:
    # Bounded inside: after a few refused attempts the engines are left behind with an Event, and deletion goes on.
    try:
        run.delete(state.kube(), dict(body), state.config_().settings, retry)
    except errors.TransientError as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error
    serial.forget(dict(body))
