"""A Service as a client in the cluster sees it, for the test bed's process kubelet: kube-proxy's part, played here.

Service IPs are not routable on this machine, so each request goes where kube-proxy would send a new connection:
to one of the Service's endpoints that the EndpointSlice controller lists as ready, through the local port the
process kubelet published for that pod. A pod being drained leaves the ready list first and keeps serving what
it already has, which is what makes a rollout lose no request in a cluster; the same holds here.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import threading
from typing import Any

from kubernetes import client

from kestrel import infer
from kestrel.manifests import names, transport
from testbed import kubelet_pods

Body = dict[str, Any]


class ServiceRouter:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, ca_file: pathlib.Path, api_key: str) -> None:
        self.discovery = client.DiscoveryV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.name = name
        self.ca_file = ca_file
        self.api_key = api_key
        self._clients: dict[tuple[str, str], infer.Client] = {}
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def ready_pods(self) -> list[str]:
        """The pods behind the Service's ready endpoints, as the EndpointSlice controller reports them."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={names.service(self.name)}"
        )
        found = []
        for endpoint_slice in slices.items:
            for endpoint in endpoint_slice.endpoints or []:
                ready = endpoint.conditions is not None and endpoint.conditions.ready
                if (
                    ready
                    and endpoint.target_ref is not None
                    and endpoint.target_ref.kind == "Pod"
                    and endpoint.target_ref.name
                ):
                    found.append(endpoint.target_ref.name)
        return sorted(found)

    def _client(self, pod_name: str) -> infer.Client:
        pod = self.core.read_namespaced_pod(pod_name, self.namespace)
        annotations = (pod.metadata.annotations if pod.metadata is not None else None) or {}
        ports = json.loads(annotations[kubelet_pods.PORTS_ANNOTATION])
        address = f"127.0.0.1:{ports[str(transport.GRPC_PORT)]}"
        key = (pod_name, address)
        with self._lock:
            if key not in self._clients:
                endpoint = infer.Endpoint(
                    address=address,
                    model=names.triton_model(self.name),
                    ca_file=self.ca_file,
                    server_name=f"{names.service(self.name)}.{self.namespace}.svc",
                    api_key=self.api_key,
                )
                self._clients[key] = infer.Client(endpoint)
            return self._clients[key]

    def detect(self, image: infer.Image, label: str = "image") -> tuple[str, infer.Result]:
        """One request to one ready endpoint (round robin); the pod that answered, and the answer."""
        pods = self.ready_pods()
        if not pods:
            raise infer.InferError(f"Service {names.service(self.name)} has no ready endpoint")
        pod = pods[next(self._turn) % len(pods)]
        return pod, self._client(pod).detect(image, label)

    def close(self) -> None:
        with self._lock:
            for opened in self._clients.values():
                opened.close()
            self._clients.clear()
