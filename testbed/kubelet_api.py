"""The process kubelet's few API calls, as plain JSON over the `kubernetes` client's transport.

Raw paths and dicts rather than the generated models: a kubelet reads and writes whole objects (status,
Lease) and streams watches, and dicts keep that short and fully typed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config
from kubernetes.client import exceptions

Body = dict[str, Any]
REQUEST_TIMEOUT = 30.0


class ApiError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Api:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._streams: set[Any] = set()

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str) -> Api:
        return cls(config.new_client_from_config(config_file=kubeconfig))

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> Any:
        method, url, headers, payload, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self.api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
        except exceptions.ApiException as error:
            raise ApiError(error.status or 0, str(error.reason)) from error

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> Body | None:
        """One call; None for a 404 when `missing_ok`, ApiError for any other failure."""
        response = self._call(method, path, body=body, query=query, content_type=content_type)
        data = response.read()
        if missing_ok and response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise ApiError(response.status, data.decode(errors="replace")[:500])
        result: Body = json.loads(data) if data else {}
        return result

    def get(self, path: str) -> Body | None:
        return self.request("GET", path, missing_ok=True)

    def merge_patch(self, path: str, body: Body) -> Body | None:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json", missing_ok=True)

    def watch(self, path: str, query: dict[str, str], timeout_seconds: int) -> Iterator[Body]:
        """Watch events until the server ends the watch after `timeout_seconds` (which bounds a stop)."""
        query = {**query, "watch": "true", "timeoutSeconds": str(timeout_seconds)}
        response = self._call("GET", path, query=query, timeout=(5.0, timeout_seconds + 15.0))
        if response.status != 200:
            raise ApiError(response.status, response.read().decode(errors="replace")[:500])
        raw = response.response  # urllib3's response, not preloaded: events arrive as lines
        self._streams.add(raw)
        buffer = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event: Body = json.loads(line)
                        yield event
        finally:
            self._streams.discard(raw)
            raw.release_conn()

    def close_watches(self) -> None:
        """Interrupt the watches that other threads are reading (their loops then end)."""
        for raw in list(self._streams):
            raw.shutdown()

    # --- the objects a pod's volumes and environment read -------------------------------------------------

    def secret(self, namespace: str, name: str) -> Body | None:
        return self.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def config_map(self, namespace: str, name: str) -> Body | None:
        return self.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
