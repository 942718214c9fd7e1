"""The drift check (runtime/resync.py): which models a sweep passes over, and a loop that survives failures."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from kestrel.api import errors
from kestrel.runtime import resync
from kestrel.security import audit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def body(name: str, uid: str = "u1", **metadata: Any) -> dict[str, Any]:
    managed = [
        {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {"f:model": {"f:imgsz": {}}}}},
        {"manager": "kestrel", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {"f:a": {}}}},
    ]
    meta = {"namespace": "ns", "name": name, "uid": uid, "managedFields": managed, **metadata}
    return {"apiVersion": "kestrel.dev/v1alpha1", "kind": "ModelDeployment", "metadata": meta, "status": {"a": 1}}


def test_a_model_is_due_one_interval_after_it_appeared_and_keeps_its_age_across_events() -> None:
    clock = Clock()
    registry = resync.Registry(clock)
    registry.remember(body("a"))
    clock.now += 5
    registry.remember(body("b"))
    assert [b["metadata"]["name"] for b in registry.due(5)] == ["a"]
    registry.remember({**body("a"), "status": {"a": 2}})  # a later event of the same object: same age, new body
    due = registry.due(5)
    assert [b["status"] for b in due] == [{"a": 2}]
    clock.now += 5
    assert sorted(b["metadata"]["name"] for b in registry.due(5)) == ["a", "b"]


def test_bodies_keep_only_the_outline_of_managed_fields_and_are_handed_out_as_copies() -> None:
    registry = resync.Registry(Clock())
    registry.remember(body("a"))
    first = registry.due(0)[0]
    assert first["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "kestrel", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ]
    assert audit.field_managers(first["metadata"]["managedFields"]) == ["kubectl"]
    first["status"]["a"] = 99
    assert registry.due(0)[0]["status"] == {"a": 1}


def test_deleted_recreated_and_terminating_models() -> None:
    clock = Clock()
    registry = resync.Registry(clock)
    registry.remember(body("gone"))
    registry.remember(body("leaving", deletionTimestamp="2026-11-28T00:00:00Z"))
    registry.remember(body("again"))
    clock.now += 10
    registry.forget("ns", "gone")
    registry.remember(body("again", uid="u2"))  # a new object under the old name starts its own interval
    assert registry.due(5) == []
    assert len(registry) == 2


def test_a_sweep_passes_over_each_due_model_and_outlives_failing_passes() -> None:
    clock = Clock()
    registry = resync.Registry(clock)
    for name in ("ok", "refused", "broken"):
        registry.remember(body(name))
    clock.now += 30
    seen: list[str] = []

    def run_pass(found: dict[str, Any]) -> None:
        name = found["metadata"]["name"]
        seen.append(name)
        if name == "refused":
            raise errors.TransientError("the API server is busy")
        if name == "broken":
            raise RuntimeError("a bug")

    checker = resync.Resync(registry, run_pass, interval=30, threads=2)
    assert checker.sweep() == 3
    assert sorted(seen) == ["broken", "ok", "refused"]


def test_the_loop_runs_every_interval_until_stopped_and_can_start_again() -> None:
    registry = resync.Registry()
    registry.remember(body("a"))
    passes = threading.Semaphore(0)
    checker = resync.Resync(registry, lambda found: passes.release(), interval=0.05, threads=1)
    for _ in range(2):
        checker.start()
        assert passes.acquire(timeout=5) and passes.acquire(timeout=5)
        checker.stop()
        while passes.acquire(blocking=False):
            pass
        time.sleep(0.15)
        assert not passes.acquire(blocking=False), "a stopped loop ran a pass"


def test_bodies_are_compact_json() -> None:
    registry = resync.Registry(Clock())
    registry.remember(body("a"))
    kept = registry._known[("ns", "a")].packed
    assert json.loads(kept)["metadata"]["name"] == "a" and b" " not in kept
