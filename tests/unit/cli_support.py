"""A stand-in API server on loopback for the commands people run (`kestrel status`, `kestrel canary`), and the
kubeconfig that points at it: the commands run for real, through kube/kubeconfig.py and the Kubernetes client,
down to HTTP requests this server answers from a dict of stored objects and records."""

from __future__ import annotations

import copy
import http.server
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kestrel.api import crd

TOKEN = "kestrel-test-token"


class ApiServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # by REST path
        self.requests: list[dict[str, Any]] = []
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put_model(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self.objects[model_path(meta["namespace"], meta["name"])] = copy.deepcopy(body)


def model_path(namespace: str, name: str) -> str:
    return f"/apis/{crd.API_VERSION}/namespaces/{namespace}/{crd.PLURAL}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    api: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `api.requests` instead."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, Any]:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.api.requests.append(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "body": body,
            }
        )
        return path, body

    def do_GET(self) -> None:
        path, _ = self._record()
        found = self.api.objects.get(path)
        if found is None:
            self._answer(
                404, {"kind": "Status", "message": f'{crd.PLURAL}.{crd.GROUP} "{path.rsplit("/", 1)[-1]}" not found'}
            )
        else:
            self._answer(200, found)

    def do_PATCH(self) -> None:
        path, body = self._record()
        found = self.api.objects.get(path)
        if found is None:
            self._answer(404, {"kind": "Status", "message": "not found"})
            return
        assert self.headers.get("Content-Type") == "application/merge-patch+json"
        annotations = found["metadata"].setdefault("annotations", {})
        for key, value in body["metadata"]["annotations"].items():
            annotations[key] = value
        self._answer(200, found)


@pytest.fixture
def api(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    """The server, running, and a kubeconfig for it as ~/.kube/config (context namespace `vision`)."""
    server = ApiServer()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server.url}}],
        "users": [{"name": "tester", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "vision", "context": {"cluster": "test", "user": "tester", "namespace": "vision"}},
            {"name": "retail", "context": {"cluster": "test", "user": "tester", "namespace": "retail"}},
        ],
        "current-context": "vision",
    }
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)
