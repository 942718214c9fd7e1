"""kube.client: a child (a manifest with a controller reference) is written and deleted only where the object of its
name is absent or carries the owner's uid; someone else's object of that name is neither changed nor deleted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kestrel.api import errors
from kestrel.kube import client, recent

OWNER = "0b8c9a3e-52f1-4d7e-8a60-1c2d3e4f5a6b"
SECRETS = "/api/v1/namespaces/vision/secrets"
TLS = f"{SECRETS}/web-tls"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ApiServer(client.Kube):
    """The real client over an in-memory API server: objects by path, every request recorded."""

    def __init__(self) -> None:
        super().__init__(api=None, known=recent.Recent(trust=300, clock=Clock()))  # type: ignore[arg-type]
        self.requests: list[tuple[str, str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}

    def view(self, trust: float = 0.0) -> client.Kube:
        opened = super().view(trust)
        opened._request = self._request  # type: ignore[method-assign]
        return opened

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: Any = kwargs.get("body")  # a JSON document, or None for a GET
        self.requests.append((method, path, copy.deepcopy(body)))
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.stored:
                raise errors.ConflictError(f"{path} already exists")
        if method in ("PATCH", "POST"):
            self.stored[path] = {**copy.deepcopy(body), "metadata": {"uid": "child-uid", **body["metadata"]}}
            return copy.deepcopy(self.stored[path])
        if path not in self.stored:
            raise errors.NotFoundError(f"{path} not found")
        if method == "DELETE":
            return self.stored.pop(path)
        return copy.deepcopy(self.stored[path])

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.requests]


def secret(name: str = "web-tls", owner: str | None = OWNER, data: str = "b3Vycw==") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "vision"}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "kestrel.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "web",
                "uid": owner,
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"tls.crt": data}}


def someone_elses(kube: ApiServer, path: str = TLS) -> dict[str, Any]:
    found = {**secret(owner=None, data="dGhlaXJz"), "metadata": {"name": path.rsplit("/", 1)[1], "uid": "theirs"}}
    found["metadata"]["namespace"] = "vision"
    kube.stored[path] = found
    return copy.deepcopy(found)


def test_a_child_is_not_applied_over_an_object_of_its_name_the_owner_does_not_own() -> None:
    kube = ApiServer()
    before = someone_elses(kube)
    with pytest.raises(errors.NameConflictError, match=r"Secret vision/web-tls .* rename the ModelDeployment"):
        kube.view(0).apply(secret())
    assert kube.methods() == ["GET"]
    assert kube.stored[TLS] == before


def test_a_new_child_is_read_once_then_written_without_reads() -> None:
    kube = ApiServer()
    kube.view(0).apply(secret())
    kube.view(0).apply(secret(data="bmV3"))  # a pass that trusts no content still knows whose the object is
    assert kube.methods() == ["GET", "PATCH", "PATCH"]


def test_an_object_the_owner_already_owns_is_written() -> None:
    kube = ApiServer()
    kube.stored[TLS] = secret()
    kube.view(0).apply(secret(data="bmV3"))
    assert kube.methods() == ["GET", "PATCH"]


def test_an_object_that_is_nobodys_child_is_applied_without_a_read() -> None:
    kube = ApiServer()
    someone_elses(kube)
    kube.view(0).apply(secret(owner=None))
    assert kube.methods() == ["PATCH"]


def test_a_create_that_finds_someone_elses_object_is_a_name_conflict_not_already_made() -> None:
    kube = ApiServer()
    someone_elses(kube)
    with pytest.raises(errors.NameConflictError):
        kube.view(0).create(secret())
    kube.stored[TLS] = secret()
    with pytest.raises(errors.ConflictError):  # the owner's own: an earlier pass made it
        kube.view(0).create(secret())


def test_a_delete_leaves_someone_elses_object_of_that_name_alone() -> None:
    kube = ApiServer()
    before = someone_elses(kube)
    assert kube.view(0).delete("v1", "Secret", "vision", "web-tls", owner=OWNER) is False
    assert kube.methods() == ["GET"]
    assert kube.stored[TLS] == before


def test_a_delete_of_the_owners_object_names_that_very_object() -> None:
    kube = ApiServer()
    kube.stored[TLS] = {**secret(), "metadata": {**secret()["metadata"], "uid": "ours"}}
    assert kube.view(0).delete("v1", "Secret", "vision", "web-tls", owner=OWNER) is True
    method, _, options = kube.requests[-1]
    assert method == "DELETE" and options["preconditions"] == {"uid": "ours"}


def test_after_a_delete_the_next_write_reads_again() -> None:
    kube = ApiServer()
    kube.view(0).apply(secret())
    kube.view(0).delete("v1", "Secret", "vision", "web-tls", owner=OWNER)
    someone_elses(kube)  # someone else took the name meanwhile
    with pytest.raises(errors.NameConflictError):
        kube.view(0).apply(secret())
