"""kube.client views: an unchanged apply or a trusted read is answered without a request; nothing else is."""

from __future__ import annotations

import copy
from typing import Any

from kestrel.api import errors
from kestrel.kube import client, recent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingKube(client.Kube):
    """The real client with the HTTP call replaced: applies echo the body, reads answer from `stored`."""

    def __init__(self, known: recent.Recent) -> None:
        super().__init__(api=None, known=known)  # type: ignore[arg-type]
        self.requests: list[tuple[str, str]] = []
        self.stored: dict[str, dict[str, Any]] = {}

    def view(self, trust: float = 0.0) -> client.Kube:
        opened = super().view(trust)
        opened._request = self._request  # type: ignore[method-assign]
        return opened

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.requests.append((method, path))
        if method == "PATCH":
            return copy.deepcopy(kwargs["body"])
        if path not in self.stored:
            raise errors.NotFoundError(f"{path} not found")
        return copy.deepcopy(self.stored[path])


def service(port: int = 8001) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "cams", "namespace": "vision"},
        "spec": {"ports": [{"port": port}]},
    }


def job() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "cams-build", "namespace": "vision"}}


def setup() -> tuple[RecordingKube, Clock]:
    clock = Clock()
    return RecordingKube(recent.Recent(trust=300, clock=clock)), clock


def test_a_pass_that_trusts_nothing_applies_once_per_pass() -> None:
    kube, clock = setup()
    first = kube.view(0)
    first.apply(service())
    first.apply(service())  # the same manifest twice in one pass (a rollback re-applies, say)
    clock.now += 0.001
    kube.view(0).apply(service())
    assert len(kube.requests) == 2


def test_a_trusting_pass_skips_an_unchanged_apply_until_it_is_too_old() -> None:
    kube, clock = setup()
    kube.view(0).apply(service())
    clock.now += 100
    returned = kube.view(300).apply(service())
    assert len(kube.requests) == 1 and returned["spec"]["ports"] == [{"port": 8001}]
    kube.view(300).apply(service(port=9000))  # a changed manifest always goes out
    assert len(kube.requests) == 2
    clock.now += 301
    kube.view(300).apply(service(port=9000))  # too old to trust: drift is undone
    assert len(kube.requests) == 3


def test_kinds_whose_status_the_caller_reads_are_always_applied() -> None:
    kube, _ = setup()
    kube.view(300).apply(job())
    kube.view(300).apply(job())
    assert len(kube.requests) == 2


def test_cached_reads_use_what_was_confirmed_and_plain_reads_never_do() -> None:
    kube, clock = setup()
    path = "/api/v1/namespaces/vision/secrets/cams-api-key"
    kube.stored[path] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cams-api-key", "namespace": "vision"},
    }
    assert kube.view(0).get("v1", "Secret", "vision", "cams-api-key", cached=True) is not None
    clock.now += 10
    assert kube.view(300).get("v1", "Secret", "vision", "cams-api-key", cached=True) is not None
    assert len(kube.requests) == 1
    kube.view(300).get("v1", "Secret", "vision", "cams-api-key")
    assert len(kube.requests) == 2


def test_a_missing_object_is_asked_for_every_time() -> None:
    kube, _ = setup()
    for _ in range(2):
        assert kube.view(300).get("v1", "Secret", "vision", "kek", cached=True) is None
    assert len(kube.requests) == 2


def test_the_shared_client_trusts_nothing_remembered() -> None:
    kube, _ = setup()
    kube.view(0).apply(service())
    kube.apply(service())
    assert len(kube.requests) == 2


def test_a_deleted_object_is_forgotten() -> None:
    kube, _ = setup()
    kube.view(0).apply(service())
    kube.view(0).delete("v1", "Service", "vision", "cams", owner=None)
    kube.view(300).apply(service())
    assert [method for method, _ in kube.requests] == ["PATCH", "DELETE", "PATCH"]


def test_requests_are_counted_by_resource() -> None:
    assert client._resource_of("/api/v1/namespaces/vision/secrets/cams") == "secrets"
    assert client._resource_of("/apis/kestrel.dev/v1alpha1/namespaces/v/modeldeployments/m/status") == (
        "modeldeployments/status"
    )
    assert client._resource_of("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x") == (
        "customresourcedefinitions"
    )


def test_a_delete_confirmed_gone_is_not_sent_again_while_fresh_and_an_apply_brings_it_back() -> None:
    kube, clock = setup()
    binding = ("rbac.authorization.k8s.io/v1", "RoleBinding", "vision", "cams-api-key-reader")
    assert kube.view(0).delete(*binding, owner=None) is False  # not there: NotFound
    clock.now += 0.001
    assert kube.view(0).delete(*binding, owner=None) is False  # a pass that trusts nothing asks again
    clock.now += 100
    assert kube.view(300).delete(*binding, owner=None) is False  # a trusting pass does not
    assert len(kube.requests) == 2
    clock.now += 301
    kube.view(300).delete(*binding, owner=None)  # too old to trust: asked again
    assert len(kube.requests) == 3
    service_key = ("v1", "Service", "vision", "cams")
    kube.view(0).delete(*service_key, owner=None)
    clock.now += 1
    kube.view(300).apply(service())  # it exists again
    kube.view(300).delete(*service_key, owner=None)
    assert [method for method, _ in kube.requests[-3:]] == ["DELETE", "PATCH", "DELETE"]


def test_an_operator_wide_read_is_shared_by_passes_that_trust_nothing_else() -> None:
    kube, clock = setup()
    kube.stored["/api/v1/namespaces/kestrel-system/secrets/kestrel-ca"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kestrel-ca", "namespace": "kestrel-system"},
    }
    for _ in range(3):  # three spec-change passes within the window: one read
        clock.now += 3
        found = kube.view(0).get("v1", "Secret", "kestrel-system", "kestrel-ca", cached=True, trust=10)
        assert found is not None
    assert len(kube.requests) == 1
    kube.view(0).get("v1", "Secret", "kestrel-system", "kestrel-ca", cached=True)  # without trust: asked
    assert len(kube.requests) == 2
    clock.now += 11
    kube.view(0).get("v1", "Secret", "kestrel-system", "kestrel-ca", cached=True, trust=10)
    assert len(kube.requests) == 3
