"""handlers.owned: a pass that a Deployment event asks for runs on the owned passes' own threads, not in Kopf's
pool, where at 1,000 new models it waited behind every queued first pass (bench/scale.py, docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading

import kopf
import pytest

from kestrel import settings as operator_settings
from kestrel.handlers import owned as owned_handlers
from kestrel.handlers import state
from kestrel.runtime import owned


def test_a_deployment_event_runs_its_owners_pass_on_the_owned_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    ran, threads = threading.Event(), []

    def run(namespace: str, name: str) -> None:
        threads.append((namespace, name, threading.current_thread().name))
        ran.set()

    monkeypatch.setattr(owned_handlers, "PASSES", owned.Passes(run))
    monkeypatch.setattr(owned, "pass_needed", lambda kube, event_type, body: ("vision", "cams"))
    monkeypatch.setattr(state, "kube", lambda: None)
    owned_handlers.start_owned_passes(
        operator_settings.Configuration(settings=operator_settings.Settings(engine_store="s3://engines"))
    )
    try:
        raw: kopf.RawBody = {"metadata": {"name": "cams-triton", "namespace": "vision", "uid": "u1"}}
        body = kopf.Body(raw)
        handled = owned_handlers.deployment(  # what Kopf passes an event handler
            type="MODIFIED",
            event={"type": "MODIFIED", "object": raw},
            body=body,
            meta=body.meta,
            spec=body.spec,
            status=body.status,
            annotations=body.metadata.annotations,
            labels=body.metadata.labels,
            resource=kopf.Resource("apps", "v1", "deployments"),
            uid="u1",
            name="cams-triton",
            namespace="vision",
            patch=kopf.Patch(),
            logger=logging.getLogger("kopf"),
            memo=kopf.Memo(),
        )
        assert inspect.iscoroutine(handled), "the handler runs on Kopf's event loop"
        asyncio.run(handled)
        assert ran.wait(10)
    finally:
        owned_handlers.stop_owned_passes()
    ((namespace, name, thread),) = threads
    assert (namespace, name) == ("vision", "cams")
    assert thread.startswith("kestrel-owned")
