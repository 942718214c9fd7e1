"""runtime.serial: passes over one model never overlap, and never start from a status older than the last
one this process wrote."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from kestrel.kube import client, recent
from kestrel.reconcilers import run
from kestrel.runtime import serial


def body(status: dict[str, Any] | None = None, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": "cams", "namespace": "vision", "uid": uid}, "status": status or {}}


class FakeKube(client.Kube):
    def __init__(self, stored: dict[str, Any] | None) -> None:
        super().__init__(api=None, known=recent.Recent(trust=300))  # type: ignore[arg-type]
        self.stored = stored
        self.fetched = 0

    def view(self, trust: float = 0.0) -> client.Kube:
        return self

    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.fetched += 1
        return self.stored


@pytest.fixture(autouse=True)
def clean() -> None:
    serial._locks.clear()
    serial._stored.clear()
    serial._passed.clear()


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """run.reconcile replaced: it records the body it got and 'writes' status {"pass": n}."""
    bodies: list[dict[str, Any]] = []
    active = threading.Semaphore(1)

    def reconcile(kube: client.Kube, found: dict[str, Any], settings: Any) -> Any:
        assert active.acquire(blocking=False), "two passes over one model overlapped"
        try:
            time.sleep(0.02)
            bodies.append(found)
            return SimpleNamespace(stored_status={"pass": len(bodies)})
        finally:
            active.release()

    monkeypatch.setattr(run, "reconcile", reconcile)
    return bodies


def test_the_first_pass_uses_the_body_it_was_given(seen: list[dict[str, Any]]) -> None:
    kube = FakeKube(None)
    serial.reconcile(kube, body(), None, trust=0)  # type: ignore[arg-type]
    assert kube.fetched == 0 and len(seen) == 1


def test_a_body_older_than_the_last_write_is_read_again(seen: list[dict[str, Any]]) -> None:
    kube = FakeKube(body({"pass": 1}))
    serial.reconcile(kube, body(), None, trust=0)  # type: ignore[arg-type]
    serial.reconcile(kube, body({"pass": 1}), None, trust=0)  # type: ignore[arg-type]
    assert kube.fetched == 0  # it carries the status written last
    kube.stored = body({"pass": 2})
    serial.reconcile(kube, body({}), None, trust=0)  # type: ignore[arg-type]  # a watch event from before the write
    assert kube.fetched == 1 and seen[-1]["status"] == {"pass": 2}


def test_a_model_deleted_meanwhile_is_not_passed_over(seen: list[dict[str, Any]]) -> None:
    kube = FakeKube(None)
    serial.reconcile(kube, body(), None, trust=0)  # type: ignore[arg-type]
    assert serial.reconcile(kube, body({"stale": True}), None, trust=0) is None  # type: ignore[arg-type]
    assert serial.reconcile_named(kube, "vision", "cams", None, trust=0) is None  # type: ignore[arg-type]
    assert len(seen) == 1


def test_concurrent_triggers_run_one_after_the_other(seen: list[dict[str, Any]]) -> None:
    kube = FakeKube(body({"pass": 0}))
    threads = [
        threading.Thread(target=serial.reconcile_named, args=(kube, "vision", "cams", None), kwargs={"trust": 0})
        for _ in range(4)
    ] + [threading.Thread(target=serial.reconcile, args=(kube, body(), None), kwargs={"trust": 0}) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8  # the fake asserts that none overlapped


def test_forget_drops_what_was_kept(seen: list[dict[str, Any]]) -> None:
    kube = FakeKube(None)
    serial.reconcile(kube, body(), None, trust=0)  # type: ignore[arg-type]
    serial.forget(body())
    assert serial._stored == {} and serial._locks == {}


def test_the_drift_check_knows_when_any_pass_last_finished(seen: list[dict[str, Any]]) -> None:
    assert not serial.passed_within(body(), 60)
    serial.reconcile(FakeKube(None), body(), None, trust=0)  # type: ignore[arg-type]
    assert serial.passed_within(body(), 60)
    assert not serial.passed_within(body(), 0)
    assert not serial.passed_within(body(uid="u2"), 60)  # another object under the same name
    serial.forget(body())
    assert not serial.passed_within(body(), 60)


def test_an_owned_objects_pass_uses_the_remembered_body_while_its_status_is_the_last_written(
    seen: list[dict[str, Any]],
) -> None:
    kube = FakeKube(body({"pass": 1}))
    serial.reconcile(kube, body(), None, trust=0)  # type: ignore[arg-type]  # stores {"pass": 1}
    remembered = {**body({"pass": 1}), "spec": {"from": "watch"}}
    serial.reconcile_named(kube, "vision", "cams", None, trust=0, remembered=remembered)  # type: ignore[arg-type]
    assert kube.fetched == 0 and seen[-1] is remembered

    # A remembered body from before the last write (status {"pass": 1}, the store now says 2) is read again.
    kube.stored = body({"pass": 2})
    serial.reconcile_named(kube, "vision", "cams", None, trust=0, remembered=remembered)  # type: ignore[arg-type]
    assert kube.fetched == 1 and seen[-1]["status"] == {"pass": 2}
    # As is one of a model this process never passed over (no status of its own to compare with).
    serial.reconcile_named(kube, "vision", "cams", None, trust=0, remembered=body({}, uid="u2"))  # type: ignore[arg-type]
    assert kube.fetched == 2
