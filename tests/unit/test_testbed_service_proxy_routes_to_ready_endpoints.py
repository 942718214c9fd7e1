"""The test bed's stand-in for kube-proxy: a loopback port per Service port that relays each connection to a ready
endpoint's published local port, and the address map the operator reads. The API's lists are played by plain
objects here (what the EndpointSlice controller and the process kubelet would have written); the sockets are real.
"""

from __future__ import annotations

import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace as Obj
from typing import Any

import pytest

from testbed import kubelet_pods, service_proxy


class Echo:
    """A TCP server that answers each connection with its name and the bytes it got."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                data = connection.recv(1024)
                connection.sendall(self.name.encode() + b":" + data)


def _pod(name: str, ip: str, published: dict[int, int]) -> Obj:
    annotation = json.dumps({str(k): v for k, v in published.items()})
    return Obj(
        metadata=Obj(name=name, namespace="vision", annotations={kubelet_pods.PORTS_ANNOTATION: annotation}),
        status=Obj(pod_ip=ip),
    )


def _endpoint(pod: str, ready: bool) -> Obj:
    return Obj(conditions=Obj(ready=ready), target_ref=Obj(kind="Pod", name=pod))


class Lists:
    def __init__(self, pods: list[Obj], slices: list[Obj], services: list[Obj]) -> None:
        self.pods, self.slices, self.services = pods, slices, services

    def list_namespaced_pod(self, namespace: str, **_: Any) -> Obj:
        return Obj(items=[p for p in self.pods if p.metadata.namespace == namespace])

    def list_namespaced_endpoint_slice(self, namespace: str, **_: Any) -> Obj:
        return Obj(items=[s for s in self.slices if s.metadata.namespace == namespace])

    def list_namespaced_service(self, namespace: str, **_: Any) -> Obj:
        return Obj(items=[s for s in self.services if s.metadata.namespace == namespace])


@pytest.fixture
def echoes() -> Iterator[tuple[Echo, Echo]]:
    found = (Echo("ready"), Echo("draining"))
    yield found
    for echo in found:
        echo.server.close()


def _exchange(address: str) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"hello")
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(1024):
            received += chunk
        return received


def test_connections_reach_only_ready_endpoints_and_the_map_names_services_and_pods(
    echoes: tuple[Echo, Echo], tmp_path: pathlib.Path
) -> None:
    ready, draining = echoes
    pods = [_pod("cams-1", "10.246.0.1", {8001: ready.port}), _pod("cams-2", "10.246.0.2", {8001: draining.port})]
    slices = [
        Obj(
            metadata=Obj(namespace="vision", labels={"kubernetes.io/service-name": "cams-triton"}),
            ports=[Obj(name="grpc", port=8001)],
            endpoints=[_endpoint("cams-1", True), _endpoint("cams-2", False)],
        )
    ]
    services = [
        Obj(metadata=Obj(name="cams-triton", namespace="vision"), spec=Obj(ports=[Obj(name="grpc", port=8001)]))
    ]
    lists = Lists(pods, slices, services)
    proxy = service_proxy.ServiceProxy(Any, tmp_path / "map.json", ["vision"])  # type: ignore[arg-type]
    proxy.core, proxy.discovery = lists, lists  # type: ignore[assignment]
    with proxy:
        mapping = json.loads((tmp_path / "map.json").read_text())
        assert mapping["10.246.0.1:8001"] == f"127.0.0.1:{ready.port}"
        assert mapping["10.246.0.2:8001"] == f"127.0.0.1:{draining.port}"
        for _ in range(4):
            assert _exchange(mapping["cams-triton.vision.svc:8001"]) == b"ready:hello"
        # The draining pod becomes ready, the first one leaves: new connections follow.
        slices[0].endpoints = [_endpoint("cams-1", False), _endpoint("cams-2", True)]
        proxy.refresh()
        assert _exchange(mapping["cams-triton.vision.svc:8001"]) == b"draining:hello"
        assert json.loads((tmp_path / "map.json").read_text()) == mapping, "the Service keeps its local port"
