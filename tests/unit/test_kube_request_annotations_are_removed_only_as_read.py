"""kube.client: a person's request annotation is set with a merge patch, and removed with a JSON patch that first
tests the value the operator acted on, so a newer request made in between is kept, not dropped unseen.

The client's request path runs for real down to the HTTP call; the API server answering it applies merge and JSON
patches to one in-memory object and answers a failed `test` with 422, as kube-apiserver does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from kubernetes.client import exceptions

from kestrel.api import errors
from kestrel.kube import client, failures

PATH = "/apis/kestrel.dev/v1alpha1/namespaces/vision/modeldeployments/cams"
KEY = "canary.kestrel.dev/action"


@dataclasses.dataclass
class Response:
    status: int
    data: bytes
    reason: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def read(self) -> bytes:
        return self.data


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


class ApiServer:
    """Enough of kubernetes.client.ApiClient for Kube._call, over one stored ModelDeployment."""

    def __init__(self, annotations: dict[str, str] | None) -> None:
        self.object: dict[str, Any] | None = (
            {"metadata": {"name": "cams", "annotations": annotations or {}}} if annotations is not None else None
        )
        self.requests: list[tuple[str, str, str, Any]] = []

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[str, str, dict[str, str], Any, Any]:
        url = path + ("?" + "&".join(f"{k}={v}" for k, v in kwargs["query_params"]) if kwargs["query_params"] else "")
        return method, url, kwargs["header_params"], kwargs["body"], None

    def call_api(self, method: str, url: str, *, header_params: dict[str, str], body: Any, **_: Any) -> Response:
        content_type = header_params["Content-Type"]
        self.requests.append((method, url, content_type, copy.deepcopy(body)))
        if self.object is None or not url.startswith(PATH):
            return Response(404, b'{"message": "not found"}')
        annotations = self.object["metadata"]["annotations"]
        if content_type == "application/merge-patch+json":
            for key, value in body["metadata"]["annotations"].items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
        elif content_type == "application/json-patch+json":
            for operation in body:
                key = _pointer(operation["path"])[2]
                if operation["op"] == "test" and annotations.get(key) != operation["value"]:
                    return Response(422, json.dumps({"message": f"testing value {operation['path']} failed"}).encode())
            for operation in body:
                if operation["op"] == "remove":
                    del annotations[_pointer(operation["path"])[2]]
        return Response(200, json.dumps(self.object).encode())


def kube(server: ApiServer) -> client.Kube:
    return client.Kube(server)  # type: ignore[arg-type]


def test_a_request_is_set_by_a_merge_patch_of_the_annotation_alone() -> None:
    server = ApiServer({"team": "vision"})
    kube(server).annotate_model_deployment("vision", "cams", {KEY: "promote"})
    assert server.object is not None
    assert server.object["metadata"]["annotations"] == {"team": "vision", KEY: "promote"}
    ((method, url, content_type, body),) = server.requests
    assert (method, content_type) == ("PATCH", "application/merge-patch+json")
    assert body == {"metadata": {"annotations": {KEY: "promote"}}}
    assert url == f"{PATH}?fieldManager=kestrel"


def test_the_request_acted_on_is_removed() -> None:
    server = ApiServer({KEY: "promote", "team": "vision"})
    assert kube(server).remove_model_deployment_annotation("vision", "cams", KEY, "promote")
    assert server.object is not None
    assert server.object["metadata"]["annotations"] == {"team": "vision"}
    (_, _, content_type, body) = server.requests[0]
    assert content_type == "application/json-patch+json"
    # The key's "/" is escaped as JSON Pointer wants it (RFC 6901), or the path would name a nested field.
    assert body[0] == {"op": "test", "path": "/metadata/annotations/canary.kestrel.dev~1action", "value": "promote"}


def test_a_newer_request_made_in_between_is_kept() -> None:
    server = ApiServer({KEY: "abort"})  # the pass acted on "promote"; the person has since asked to abort
    assert not kube(server).remove_model_deployment_annotation("vision", "cams", KEY, "promote")
    assert server.object is not None
    assert server.object["metadata"]["annotations"] == {KEY: "abort"}


def test_a_request_already_gone_or_a_model_deleted_is_not_an_error() -> None:
    assert not kube(ApiServer({})).remove_model_deployment_annotation("vision", "cams", KEY, "promote")
    assert not kube(ApiServer(None)).remove_model_deployment_annotation("vision", "cams", KEY, "promote")


def test_annotating_a_missing_model_says_which() -> None:
    with pytest.raises(errors.NotFoundError, match="ModelDeployment vision/cams"):
        kube(ApiServer(None)).annotate_model_deployment("vision", "cams", {KEY: "abort"})


def test_a_422_is_an_invalid_error_and_still_a_cluster_error() -> None:
    refused = exceptions.ApiException(http_resp=Response(422, b'{"message": "testing value /x failed"}'))
    expected = pytest.raises(errors.InvalidError, match="Failed to patch it: testing value /x failed")
    with expected as caught, failures.translated("patch it"):
        raise refused
    assert isinstance(caught.value, errors.ClusterError)  # callers that catch every refusal still do
