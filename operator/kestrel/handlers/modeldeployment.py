"""ModelDeployment handlers: create, update, resume and the drift check all run the same reconcile().

A spec change (create, update, resume) trusts nothing remembered: every child is applied and read. The drift check
trusts what was confirmed within the configured trust window (`settings.Configuration.trust`), so a quiet model
costs (almost) no requests.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kestrel import operator_metrics
from kestrel import settings as operator_settings
from kestrel.api import actions, crd, errors
from kestrel.handlers import state
from kestrel.reconcilers import run
from kestrel.runtime import resync, serial

Logger = logging.Logger | logging.LoggerAdapter[Any]
RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)
REGISTRY = resync.Registry()
_drift_check: dict[str, resync.Resync] = {}


def _drift_pass(body: dict[str, Any]) -> None:
    # Drift is checked an interval after the model's last pass, whatever ran it: a busy operator is not sent back
    # over models that its create and Deployment-event passes have just converged.
    configuration = state.config_()
    if not serial.passed_within(body, configuration.resync_interval):
        serial.reconcile(state.kube(), body, configuration.settings, trust=configuration.trust)


def _reconcile(body: kopf.Body, logger: Logger) -> None:
    try:
        serial.reconcile(state.kube(), dict(body), state.config_().settings, trust=0.0)
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


@kopf.on.update(
    *RESOURCE, id="answer-request", field=("metadata", "annotations", actions.CANARY_ACTION), new=kopf.PRESENT
)
def answer_request(*, body: kopf.Body, logger: Logger, **_: Any) -> None:
    """A person's request (`kestrel canary promote|abort`) is answered by a pass now, not at the next drift check."""
    _reconcile(body, logger)


@kopf.on.event(*RESOURCE)
async def remember(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    """Keep the newest body for the drift check (runtime/resync.py: not a Kopf timer, for memory's sake).

    Async, so it runs on Kopf's event loop: a sync handler would wait for a free pass thread on every event."""
    if type == "DELETED":
        namespace, name = str(body.meta.get("namespace")), str(body.meta.get("name"))
        REGISTRY.forget(namespace, name)
        operator_metrics.forget_model(namespace, name)
    else:
        REGISTRY.remember(dict(body))


def start_drift_check(configuration: operator_settings.Configuration) -> None:
    """Called by lifecycle.startup, after state.startup has made the client the passes use."""
    stop_drift_check()
    loop = resync.Resync(REGISTRY, _drift_pass, configuration.resync_interval, threads=configuration.side_threads)
    _drift_check["loop"] = loop
    loop.start()


def stop_drift_check() -> None:
    found = _drift_check.pop("loop", None)
    if found is not None:
        found.stop()


@kopf.on.delete(*RESOURCE)
def delete(*, body: kopf.Body, retry: int, logger: Logger, **_: Any) -> None:
    # Bounded inside: after a few refused attempts the engines are left behind with an Event, and deletion goes on.
    try:
        run.delete(state.kube(), dict(body), state.config_().settings, retry)
    except errors.TransientError as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error
    serial.forget(dict(body))
