"""kube-proxy's part for an operator outside the pod network: Services and pod IPs reachable on loopback.

The test bed's Service and pod IPs do not route on this machine. This forwarder watches (polls) the Services,
EndpointSlices and pods of some namespaces (every namespace when none are named) and
- opens one loopback port per Service port; each new connection goes to one of the Service's endpoints that the
  EndpointSlice controller lists as ready (round robin), through the local port the process kubelet published
  for that pod (annotation `testbed.kestrel.dev/local-ports`), as kube-proxy would send it;
- maps each such pod's `podIP:containerPort` to its published local port (no forwarding needed);
- writes both as the JSON address map the operator reads (`KESTREL_ADDRESS_MAP`, kestrel/serving/addresses.py):
  `{"cams-triton.vision.svc:8001": "127.0.0.1:40123", "10.246.0.7:8002": "127.0.0.1:40999"}`.
TLS passes through untouched: the operator verifies the server's certificate against the Service's name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import pathlib
import socket
import threading
from collections.abc import Sequence
from typing import Any

from kubernetes import client

from testbed import kubelet_pods

log = logging.getLogger("testbed.service_proxy")
ServiceKey = tuple[str, str, int]  # namespace, Service name, Service port


class ServiceProxy:
    def __init__(
        self,
        api: client.ApiClient,
        map_file: pathlib.Path,
        namespaces: Sequence[str] = (),
        interval: float = 0.5,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.map_file = map_file
        self.namespaces = tuple(namespaces)
        self.interval = interval
        self._listeners: dict[ServiceKey, socket.socket] = {}
        self._backends: dict[ServiceKey, list[str]] = {}
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: dict[str, str] | None = None

    def start(self) -> ServiceProxy:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="service-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for listener in self._listeners.values():
                listener.close()
            self._listeners.clear()

    def __enter__(self) -> ServiceProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as error:  # the API server restarting, a namespace going: try again next tick
                log.warning("Refreshing the Service map failed: %s", error)

    def _list(self, api: Any, plural: str) -> list[Any]:
        if not self.namespaces:
            return list(getattr(api, f"list_{plural}_for_all_namespaces")().items)
        return [item for ns in self.namespaces for item in getattr(api, f"list_namespaced_{plural}")(ns).items]

    def refresh(self) -> dict[str, str]:
        """Read Services, EndpointSlices and pods once; open new listeners, route them, and write the map."""
        pods = self._list(self.core, "pod")
        local: dict[tuple[str, str], dict[int, int]] = {}
        mapping: dict[str, str] = {}
        for pod in pods:
            published = (pod.metadata.annotations or {}).get(kubelet_pods.PORTS_ANNOTATION)
            if not published:
                continue
            ports = {int(k): int(v) for k, v in json.loads(published).items()}
            local[(pod.metadata.namespace, pod.metadata.name)] = ports
            if pod.status and pod.status.pod_ip:
                for container_port, port in ports.items():
                    mapping[f"{pod.status.pod_ip}:{container_port}"] = f"127.0.0.1:{port}"
        slices = self._list(self.discovery, "endpoint_slice")
        services = self._list(self.core, "service")
        backends: dict[ServiceKey, list[str]] = {}
        for service in services:
            namespace, name = service.metadata.namespace, service.metadata.name
            mine = [s for s in slices if (s.metadata.labels or {}).get("kubernetes.io/service-name") == name]
            mine = [s for s in mine if s.metadata.namespace == namespace]
            for port in service.spec.ports or []:
                key = (namespace, name, port.port)
                backends[key] = self._ready_backends(mine, port.name, namespace, local)
                listener = self._listener(key)
                mapping[f"{name}.{namespace}.svc:{port.port}"] = f"127.0.0.1:{listener.getsockname()[1]}"
        with self._lock:
            self._backends = backends
        if mapping != self._written:
            temporary = self.map_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(mapping, indent=1, sort_keys=True))
            temporary.replace(self.map_file)  # the operator never reads half a file
            self._written = mapping
        return mapping

    @staticmethod
    def _ready_backends(
        slices: list[Any], port_name: str | None, namespace: str, local: dict[tuple[str, str], dict[int, int]]
    ) -> list[str]:
        found = []
        for endpoint_slice in slices:
            numbers = [p.port for p in endpoint_slice.ports or [] if p.name == port_name]
            if not numbers:
                continue
            for endpoint in endpoint_slice.endpoints or []:
                ready = endpoint.conditions is not None and endpoint.conditions.ready
                target = endpoint.target_ref
                if not ready or target is None or target.kind != "Pod":
                    continue
                published = local.get((namespace, target.name), {}).get(numbers[0])
                if published is not None:
                    found.append(f"127.0.0.1:{published}")
        return sorted(found)

    def _listener(self, key: ServiceKey) -> socket.socket:
        with self._lock:
            if key in self._listeners:
                return self._listeners[key]
            listener = socket.create_server(("127.0.0.1", 0))
            self._listeners[key] = listener
        threading.Thread(target=self._accept, args=(key, listener), name=f"proxy-{key[1]}", daemon=True).start()
        return listener

    def _accept(self, key: ServiceKey, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                backends = self._backends.get(key, [])
            if not backends:
                connection.close()  # no ready endpoint: refused, as a Service without endpoints rejects
                continue
            host, port = backends[next(self._turn) % len(backends)].rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                connection.close()
                continue
            upstream.settimeout(None)
            _Relay(connection, upstream).start()


class _Relay:
    """Bytes both ways between a client and an endpoint; each direction half-closes, the last one closes both."""

    def __init__(self, client_side: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client_side, upstream)
        self._open = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        a, b = self.sockets
        for source, sink in ((a, b), (b, a)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open -= 1
            done = self._open == 0
        if done:
            for end in self.sockets:
                end.close()
