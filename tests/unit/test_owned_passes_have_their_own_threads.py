"""handlers.owned: a pass that a Deployment event asks for runs on the owned passes' own threads, not in Kopf's
pool, where at 1,000 new models it waited behind every queued first pass (bench/scale.py, docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from kestrel.handlers import owned as owned_handlers
from kestrel.handlers import state
from kestrel.reconcilers import owned


def test_a_deployment_event_runs_its_owners_pass_on_the_owned_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    ran, threads = threading.Event(), []

    def run(namespace: str, name: str) -> None:
        threads.append((namespace, name, threading.current_thread().name))
        ran.set()

    monkeypatch.setattr(owned_handlers, "PASSES", owned.Passes(run))
    monkeypatch.setattr(owned, "pass_needed", lambda kube, event_type, body: ("vision", "cams"))
    monkeypatch.setattr(state, "kube", lambda: None)
    owned_handlers.start_owned_passes()
    try:
        body: Any = {}
        asyncio.run(owned_handlers.deployment(type="MODIFIED", body=body))
        assert ran.wait(10)
    finally:
        owned_handlers.stop_owned_passes()
    ((namespace, name, thread),) = threads
    assert (namespace, name) == ("vision", "cams")
    assert thread.startswith("kestrel-owned")
