"""Kestrel's Kubernetes client: every API call the operator makes goes through `Kube`.

Child objects are written with server-side apply under the field manager `kestrel`, forced: Kestrel owns
the fields it sets, and a hand edit of one of them is drift to undo, not a conflict to stop at.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from typing import Any

from kubernetes import client, config
from kubernetes.client import exceptions

from kestrel import metrics
from kestrel.api import errors
from kestrel.kube import failures, resources

FIELD_MANAGER = "kestrel"
COMPONENT = "kestrel-operator"
Body = dict[str, Any]


def describe(body: Body) -> str:
    """`Kind namespace/name`, the way log lines and errors name an object."""
    meta = body.get("metadata", {})
    where = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
    return f"{body.get('kind')} {where}"


class Kube:
    """A thin, typed wrapper over the REST API for the kinds in `resources`."""

    def __init__(self, api: client.ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        """In a pod: its ServiceAccount. Elsewhere: the given kubeconfig, or $KUBECONFIG / ~/.kube/config."""
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()
            return cls(client.ApiClient())
        return cls(config.new_client_from_config(config_file=kubeconfig))

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        action: str,
    ) -> Body:
        metrics.API_REQUESTS.labels(method).inc()
        with failures.translated(action):
            method, url, headers, payload, _ = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, header_params=headers, body=payload, _request_timeout=30)
            data = response.read()
            if not 200 <= response.status < 300:
                raise exceptions.ApiException(http_resp=response)
        result: Body = json.loads(data) if data else {}
        return result

    def apply(self, body: Body, *, force: bool = True) -> Body:
        """Server-side apply of a whole object, as field manager `kestrel`; returns the object as stored."""
        resource = resources.lookup(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        query = [("fieldManager", self.field_manager)]
        if force:
            query.append(("force", "true"))
        return self._request(
            "PATCH",
            resource.path(meta.get("namespace"), meta["name"]),
            body=body,
            query=query,
            content_type="application/apply-patch+yaml",
            action=f"apply {describe(body)}",
        )

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Body | None:
        """The object, or None when it does not exist."""
        resource = resources.lookup(api_version, kind)
        try:
            return self._request("GET", resource.path(namespace, name), action=f"get {kind} {namespace}/{name}")
        except errors.NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None, *, labels: str | None = None) -> list[Body]:
        """Objects of a kind in a namespace (all namespaces for None), optionally by label selector."""
        resource = resources.lookup(api_version, kind)
        path = resource.path(namespace)
        query = [("labelSelector", labels)] if labels else []
        items: list[Body] = self._request("GET", path, query=query, action=f"list {kind}").get("items", [])
        return items

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        resource = resources.lookup(api_version, kind)
        try:
            self._request(
                "DELETE",
                resource.path(namespace, name),
                body={"propagationPolicy": "Background"},
                action=f"delete {kind} {namespace}/{name}",
            )
        except errors.NotFoundError:
            return False
        return True

    def patch_status(self, namespace: str, name: str, status: Body) -> Body:
        """Merge-patch a ModelDeployment's status subresource (the operator is its only writer)."""
        resource = resources.MODEL_DEPLOYMENT
        return self._request(
            "PATCH",
            resource.path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
            action=f"update status of {resource.kind} {namespace}/{name}",
        )

    def event(self, regarding: Body, *, type: str, reason: str, message: str, action: str) -> Body:
        """Record an Event about an object; the reason is the condition reason it reports."""
        meta = regarding["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "action": action,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return self._request(
            "POST",
            resources.lookup("v1", "Event").path(meta["namespace"]),
            body=body,
            action=f"record Event {reason} on {describe(regarding)}",
        )
