"""runtime.owned: which watch events of a Deployment run its owner's pass, and which are only remembered."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest

from kestrel.api import errors
from kestrel.kube import client, recent
from kestrel.runtime import owned, serial


def deployment(*, generation: int = 1, ready: int = 0, owner: str | None = "cams") -> dict[str, Any]:
    refs = [
        {"apiVersion": "kestrel.dev/v1alpha1", "kind": "ModelDeployment", "name": owner, "uid": "u", "controller": True}
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "cams-triton",
            "namespace": "vision",
            "generation": generation,
            "ownerReferences": refs if owner else [],
        },
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    ran: list[tuple[str, str]] = []

    def reconcile_named(kube: client.Kube, namespace: str, name: str, settings: Any, *, trust: float) -> object:
        ran.append((namespace, name))
        return object()

    monkeypatch.setattr(serial, "reconcile_named", reconcile_named)
    return ran


def kube_that_applied(body: dict[str, Any]) -> client.Kube:
    kube = client.Kube(api=None, known=recent.Recent(trust=300))  # type: ignore[arg-type]
    kube.known.record(body, manifest_digest="applied")
    return kube


def test_ready_pods_run_the_owners_pass(passes: list[tuple[str, str]]) -> None:
    kube = kube_that_applied(deployment(ready=0))
    assert owned.deployment_changed(kube, None, "MODIFIED", deployment(ready=1), trust=300)  # type: ignore[arg-type]
    assert passes == [("vision", "cams")]


def test_an_event_that_changes_nothing_reported_is_only_remembered(passes: list[tuple[str, str]]) -> None:
    kube = kube_that_applied(deployment(ready=1))
    changed = deployment(ready=1)
    changed["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    assert not owned.deployment_changed(kube, None, "MODIFIED", changed, trust=300)  # type: ignore[arg-type]
    assert passes == []
    remembered = kube.known.seen(recent.key_of(changed), since=0)
    assert remembered is not None and remembered["metadata"]["annotations"]


def test_a_hand_edit_of_the_spec_is_undone_at_once(passes: list[tuple[str, str]]) -> None:
    kube = kube_that_applied(deployment(generation=1, ready=1))
    assert owned.deployment_changed(kube, None, "MODIFIED", deployment(generation=2, ready=1), trust=300)  # type: ignore[arg-type]
    assert passes == [("vision", "cams")]
    assert kube.known.applied(recent.key_of(deployment()), "applied", since=0) is None  # the pass applies again


def test_a_deleted_deployment_is_forgotten_and_recreated(passes: list[tuple[str, str]]) -> None:
    kube = kube_that_applied(deployment(ready=1))
    assert owned.deployment_changed(kube, None, "DELETED", deployment(ready=1), trust=300)  # type: ignore[arg-type]
    assert passes == [("vision", "cams")]
    assert kube.known.seen(recent.key_of(deployment()), since=0) is None


def test_deployments_this_process_never_applied_or_nobody_owns_start_nothing(passes: list[tuple[str, str]]) -> None:
    kube = client.Kube(api=None, known=recent.Recent(trust=300))  # type: ignore[arg-type]
    assert not owned.deployment_changed(kube, None, None or "", deployment(ready=1), trust=300)  # type: ignore[arg-type]
    assert not owned.deployment_changed(kube, None, "MODIFIED", deployment(owner=None), trust=300)  # type: ignore[arg-type]
    assert passes == [] and len(kube.known) == 0


def test_only_a_controlling_model_deployment_is_the_owner() -> None:
    body = deployment()
    assert owned.owner(body) == "cams"
    body["metadata"]["ownerReferences"][0]["controller"] = False
    assert owned.owner(body) is None
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": True}
    ]
    assert owned.owner(body) is None


def test_pass_needed_names_the_owner_and_runs_nothing(passes: list[tuple[str, str]]) -> None:
    kube = kube_that_applied(deployment(ready=0))
    assert owned.pass_needed(kube, "MODIFIED", deployment(ready=1)) == ("vision", "cams")
    assert owned.pass_needed(kube, "MODIFIED", deployment(ready=1)) is None  # already remembered as ready
    assert passes == []


class HeldExecutor(concurrent.futures.Executor):
    """Runs nothing until `release`: the requests that pile up meanwhile are what the test counts."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.held.append((fn, args))
        return concurrent.futures.Future()

    def release(self) -> None:
        held, self.held = self.held, []
        for fn, args in held:
            fn(*args)


def test_events_while_a_pass_waits_add_no_second_pass() -> None:
    ran: list[tuple[str, str]] = []
    passes = owned.Passes(lambda namespace, name: ran.append((namespace, name)))
    executor = HeldExecutor()
    assert passes.request(executor, ("vision", "cams"))
    assert not passes.request(executor, ("vision", "cams"))
    assert passes.request(executor, ("vision", "other"))
    executor.release()
    assert ran == [("vision", "cams"), ("vision", "other")] and passes.waiting() == 0


def test_an_event_during_a_pass_asks_for_another() -> None:
    executor = HeldExecutor()
    ran: list[str] = []

    def run(namespace: str, name: str) -> None:
        ran.append(name)
        if len(ran) == 1:  # an event arrives while the first pass runs
            assert queue.request(executor, (namespace, name))

    queue = owned.Passes(run)
    queue.request(executor, ("vision", "cams"))
    executor.release()
    executor.release()
    assert ran == ["cams", "cams"]


def test_a_failed_pass_is_logged_and_the_model_can_ask_again(caplog: pytest.LogCaptureFixture) -> None:
    def run(namespace: str, name: str) -> None:
        raise errors.TransientError("the API server is busy", delay=1)

    passes = owned.Passes(run)
    executor = HeldExecutor()
    passes.request(executor, ("vision", "cams"))
    executor.release()
    assert "Did not pass over ModelDeployment vision/cams" in caplog.text
    assert passes.request(executor, ("vision", "cams"))
